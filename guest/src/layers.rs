//! The layering rule of the crate docs, checked on the sources: no module imports one above
//! it, across layers and inside a layer.

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

/// Every `prefix<name>` in `text`, `name` being the identifier that follows.
fn names_after<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The names a file imports from its own layer: `super::x`, `super::{x, y}` and
/// `crate::<layer>::x`.
fn sibling_names<'t>(text: &'t str, layer: &str) -> Vec<&'t str> {
    let mut names = names_after(text, "super::");
    names.extend(names_after(text, &format!("crate::{layer}::")));
    for (i, _) in text.match_indices("super::{") {
        let list = &text[i + "super::{".len()..];
        let list = &list[..list.find('}').unwrap_or(list.len())];
        names.extend(list.split(',').map(|n| n.trim()).filter(|n| !n.is_empty()));
    }
    names
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
            let file = path.file_stem().unwrap().to_str().unwrap().to_string();
            let rank = ranks
                .iter()
                .find(|(f, _)| *f == file)
                .unwrap_or_else(|| panic!("{layer}/{file}.rs has no rank in layers.rs"))
                .1;
            // Code only: a comment may point a reader anywhere.
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            checked += 1;
            for name in names_after(&text, "crate::") {
                let above = LAYERS.iter().any(|(l, n)| *l == name && *n > level);
                if above || GLUE.contains(&name) {
                    faults.push(format!("{layer}/{file}.rs uses crate::{name}"));
                }
            }
            for name in sibling_names(&text, layer) {
                if let Some((_, r)) = ranks.iter().find(|(f, _)| *f == name)
                    && *r >= rank
                    && file != "mod"
                {
                    faults.push(format!("{layer}/{file}.rs uses its sibling {name}"));
                }
            }
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
        ["validate", "bundle", "model"]
    );
}
