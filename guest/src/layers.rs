//! The layering rule of the crate docs, checked on the sources: no module imports one above
//! it, across layers and inside a layer (the path scanners are `krypton-layering`'s, shared
//! with the host library's `layers` test).

use krypton_layering::{group_heads, names_after};
use std::path::Path;

/// The layers, lowest first: a module of layer `n` may name `crate::<m>` only for `m` of a
/// layer below `n` (or its own).
const LAYERS: [(&str, u8); 4] = [("types", 1), ("client", 2), ("ops", 3), ("formats", 4)];
/// The glue (layer 5) and test modules: no layer below may name them.
const GLUE: [&str; 5] = ["wasi_capabilities", "bindings", "glue", "layers", "tests"];

/// The order inside each layer: a file may name a sibling only of a lower rank.
const RANKS: [(&str, &[(&str, u8)]); 4] = [
    (
        "types",
        &[
            ("model", 0),
            ("identifiers", 1),
            ("json", 1),
            ("net", 1),
            ("text", 1),
            ("validate", 2),
            ("bundle", 3),
            ("mod", 9),
        ],
    ),
    (
        "client",
        &[
            ("endpoint", 0),
            ("capabilities", 1),
            ("errors", 1),
            ("signing", 1),
            ("call", 2),
            ("mod", 9),
        ],
    ),
    (
        "ops",
        &[
            ("common", 0),
            ("store", 0),
            ("key_cache", 0),
            ("keys", 1),
            ("azure", 1),
            ("aws", 1),
            ("cognito", 1),
            ("inventory", 1),
            ("arc", 1),
            ("air", 1),
            ("table", 2),
            ("provision", 3),
            ("mod", 9),
        ],
    ),
    (
        "formats",
        &[
            ("pem", 0),
            ("aziot", 1),
            ("aws_iot", 1),
            ("wireguard", 1),
            ("env", 1),
            ("mod", 9),
        ],
    ),
];

/// The code of `layer/file.rs` in one spelling (`krypton_layering::normalized`): whole-line
/// comments dropped, no white space around `::`, and every path that reaches the crate root
/// written from `crate::` (`super::` climbs from the file's module, the crate's own name).
fn normalized(text: &str, layer: &str, file: &str) -> String {
    let module: &[&str] = if file == "mod" {
        &[layer]
    } else {
        &[layer, file]
    };
    krypton_layering::normalized(text, "krypton_guest", module)
}

/// The crate-level modules a file's code names: `crate::x`, and the heads of `crate::{...}`.
fn crate_names(code: &str) -> Vec<&str> {
    let mut names = names_after(code, "crate::");
    names.extend(group_heads(code, "crate::{"));
    names
}

/// The names a file imports from its own layer: `super::x`, `super::{x, y}` and
/// `crate::<layer>::x` (and its groups).
fn sibling_names<'t>(code: &'t str, layer: &str) -> Vec<&'t str> {
    let mut names = names_after(code, "super::");
    names.extend(group_heads(code, "super::{"));
    names.extend(names_after(code, &format!("crate::{layer}::")));
    names.extend(group_heads(code, &format!("crate::{layer}::{{")));
    names
}

/// What is wrong in `text`, the code of `layer/file.rs` (layer `level`, rank `rank` in its
/// layer's order): every name of a higher layer, of the glue, or of a sibling of a rank not
/// below its own; and a module pulled in by path (`#[path]`, `include!`), which hides what it
/// imports.
fn faults_in(layer: &str, level: u8, file: &str, rank: u8, text: &str) -> Vec<String> {
    let ranks = RANKS.iter().find(|(l, _)| *l == layer).unwrap().1;
    let code = normalized(text, layer, file);
    let mut faults = Vec::new();
    for name in crate_names(&code) {
        let above = LAYERS.iter().any(|(l, n)| *l == name && *n > level);
        if above || GLUE.contains(&name) {
            faults.push(format!("{layer}/{file}.rs uses crate::{name}"));
        }
    }
    if file != "mod" {
        for name in sibling_names(&code, layer) {
            if let Some((_, r)) = ranks.iter().find(|(f, _)| *f == name)
                && *r >= rank
            {
                faults.push(format!("{layer}/{file}.rs uses its sibling {name}"));
            }
        }
    }
    for hidden in ["#[path", "include!"] {
        if code.contains(hidden) {
            faults.push(format!("{layer}/{file}.rs pulls code in with {hidden}"));
        }
    }
    faults
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    let mut faults = Vec::new();
    for (layer, level) in LAYERS {
        let ranks = RANKS.iter().find(|(l, _)| *l == layer).unwrap().1;
        let mut files: Vec<_> = std::fs::read_dir(src.join(layer))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            assert!(
                path.extension().is_some_and(|e| e == "rs"),
                "{} is not a file of its layer; give it a rank in layers.rs",
                path.display()
            );
            let file = path.file_stem().unwrap().to_str().unwrap().to_string();
            let rank = ranks
                .iter()
                .find(|(f, _)| *f == file)
                .unwrap_or_else(|| panic!("{layer}/{file}.rs has no rank in layers.rs"))
                .1;
            let text = std::fs::read_to_string(&path).unwrap();
            checked += 1;
            faults.extend(faults_in(layer, level, &file, rank, &text));
        }
    }
    assert!(checked >= 25, "only {checked} files checked");
    assert!(
        faults.is_empty(),
        "imports against the layers:\n{}",
        faults.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_from_above() {
    let text = "use crate::ops::table;\nuse super::{bundle, model};\nuse crate::types::validate;";
    assert_eq!(
        names_after(text, "crate::"),
        ["ops", "types"],
        "crate paths"
    );
    assert_eq!(
        sibling_names(text, "types"),
        ["bundle", "model", "validate"]
    );
}

#[test]
fn the_check_sees_every_spelling_of_an_upward_path() {
    // `types/json.rs` (layer 1, rank 1): each line alone names a module above it.
    for (line, fault) in [
        ("use crate::ops::table;", "types/json.rs uses crate::ops"),
        (
            "use super::super::ops::table;",
            "types/json.rs uses crate::ops",
        ),
        (
            "use crate::{client::Run, types::model};",
            "types/json.rs uses crate::client",
        ),
        (
            "use crate::{types::{model, text}, formats};",
            "types/json.rs uses crate::formats",
        ),
        (
            "use crate::formats::*;",
            "types/json.rs uses crate::formats",
        ),
        (
            "let s = crate::formats::render(&b);",
            "types/json.rs uses crate::formats",
        ),
        (
            "let s = crate ::\n    formats :: render(&b);",
            "types/json.rs uses crate::formats",
        ),
        (
            "let s = krypton_guest::ops::provision(r);",
            "types/json.rs uses crate::ops",
        ),
        (
            "use crate::bindings::exports;",
            "types/json.rs uses crate::bindings",
        ),
        (
            "use super::validate;",
            "types/json.rs uses its sibling validate",
        ),
        (
            "use super::{model, bundle};",
            "types/json.rs uses its sibling bundle",
        ),
        (
            "use crate::types::{validate::check};",
            "types/json.rs uses its sibling validate",
        ),
        (
            "#[path = \"../ops/table.rs\"]\nmod table;",
            "types/json.rs pulls code in with #[path",
        ),
        (
            "include!(\"../ops/table.rs\");",
            "types/json.rs pulls code in with include!",
        ),
    ] {
        assert_eq!(faults_in("types", 1, "json", 1, line), [fault], "{line}");
    }
    // `types/mod.rs`: `super::` is the crate root.
    assert_eq!(
        faults_in("types", 1, "mod", 9, "pub use super::ops::table;"),
        ["types/mod.rs uses crate::ops"]
    );
    // What is allowed stays allowed: lower layers, lower siblings, comments.
    for line in [
        "use crate::types::model;",
        "use super::{model};",
        "use super::super::types::model;",
        "// see crate::ops::table",
    ] {
        assert_eq!(
            faults_in("types", 1, "json", 1, line),
            Vec::<String>::new(),
            "{line}"
        );
    }
    assert_eq!(
        faults_in(
            "formats",
            4,
            "wireguard",
            1,
            "use crate::{ops::Bundle, client::Run};\nuse super::pem;"
        ),
        Vec::<String>::new()
    );
}
