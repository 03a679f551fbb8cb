//! The layering rule of a crate, checked on its sources (a test helper, no dependencies).
//!
//! A crate declares its top-level modules with a layer each, lowest first, and for each
//! directory the rank of every file in it. Then, for every `.rs` file under `src/`:
//! * every path it names that reaches the crate root (`crate::x`, the heads of `crate::{x, y}`,
//!   `super::` paths that climb out of its directory, the crate's own name) must name a module
//!   of a lower layer than its own top-level module, or that module itself;
//! * every sibling it names (a file of the same directory) must have a lower rank than its own:
//!   capabilities of one rank cannot name each other, and a `mod.rs` (rank 9 by convention)
//!   may name everything in its directory;
//! * no code is pulled in by path (`#[path]`, `include!`), which would hide what it imports.
//!
//! Whole-line comments, the unit-test module at the end of a file and `tests.rs` files are
//! skipped, so docs may
//! link anywhere and tests may set up what they need; the files named in `forbidden` (the
//! checker's own test) are not checked. The host library's
//! `layers` test and its own tests drive it; see [`check`].

use std::path::Path;

/// The rules of one crate.
pub struct Rules<'a> {
    /// The crate's name as code spells it (`krypton_host`): its paths count as `crate::`.
    pub crate_name: &'a str,
    /// Every top-level module (a file `src/x.rs` or a directory `src/x/`) with its layer.
    pub layers: &'a [(&'a str, u8)],
    /// Names no module may use (the test modules, the crate root's glue).
    pub forbidden: &'a [&'a str],
    /// For each directory under `src` (`capability`, `capability/http`), the rank of each of
    /// its files (`mod` included).
    pub ranks: &'a [(&'a str, &'a [(&'a str, u8)])],
}

/// Every `prefix<name>` in `text`, `name` being the identifier that follows.
pub fn names_after<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
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

/// The first segment of every item of each `prefix{...}` group in `text` (`crate::{ops::x,
/// types::{a, b}}` gives `ops`, `types`), nested groups skipped.
pub fn group_heads<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    let mut heads = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let body = &text[i + prefix.len()..];
        let (mut depth, mut item_start) = (0usize, 0usize);
        for (j, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    heads.push(&body[item_start..j]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    heads.push(&body[item_start..j]);
                    item_start = j + 1;
                }
                _ => {}
            }
        }
    }
    heads
        .into_iter()
        .map(|item| {
            let item = item.trim();
            let end = item
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(item.len());
            &item[..end]
        })
        .filter(|head| !head.is_empty())
        .collect()
}

/// The code of a file in one spelling: whole-line comments dropped, no white space around
/// `::`, and every path written from `crate::`. `module` is the file's module path
/// (`["capability", "http", "policy"]`; a `mod.rs` is its directory's module): each `super::`
/// climbs one step from it, and `crate_name::` is `crate::`.
pub fn normalized(text: &str, crate_name: &str, module: &[&str]) -> String {
    let code: String = text
        .lines()
        .take_while(|l| !is_test_module_start(l))
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(i) = rest.find("::") {
        out.push_str(rest[..i].trim_end());
        out.push_str("::");
        rest = rest[i + 2..].trim_start();
    }
    out.push_str(rest);
    let mut out = out.replace(&format!("{crate_name}::"), "crate::");
    // The longest chains first: `super::super::` from `a::b::c` is `crate::a::`.
    for up in (1..=module.len()).rev() {
        let from = "super::".repeat(up);
        let base = &module[..module.len() - up];
        let to: String = std::iter::once("crate::".to_string())
            .chain(base.iter().map(|m| format!("{m}::")))
            .collect();
        out = out.replace(&from, &to);
    }
    out
}

/// Whether `line` opens the file's unit-test module (`#[cfg(test)]`, `#[cfg(all(test, …))]`):
/// the test module comes last (clippy's `items_after_test_module`), is not part of the crate
/// the layers describe, and may reach any module to set a test up.
fn is_test_module_start(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(all(test")
}

/// The names `code` (normalized) uses right after `prefix` (`crate::` or `crate::dir::`):
/// `prefix x` and the heads of `prefix{x, y}`.
fn used_after<'t>(code: &'t str, prefix: &str) -> Vec<&'t str> {
    let mut names = names_after(code, prefix);
    names.extend(group_heads(code, &format!("{prefix}{{")));
    names
}

/// What is wrong in `text`, the code of the file `rel` (`capability/http/policy.rs`, relative
/// to `src`), under `rules`. Errors are the fault lines, one per fault.
pub fn faults_in(rules: &Rules, rel: &str, text: &str) -> Vec<String> {
    let rel_path = rel.trim_end_matches(".rs");
    let parts: Vec<&str> = rel_path.split('/').collect();
    let (dirs, stem) = parts.split_at(parts.len() - 1);
    let stem = stem[0];
    let module: Vec<&str> = if stem == "mod" || stem == "lib" {
        dirs.to_vec()
    } else {
        parts.clone()
    };
    let code = normalized(text, rules.crate_name, &module);
    let mut faults = Vec::new();
    let top = module.first().copied().unwrap_or("");
    let level_of = |name: &str| rules.layers.iter().find(|(m, _)| *m == name).map(|l| l.1);
    let own = level_of(top);
    for name in used_after(&code, "crate::") {
        if rules.forbidden.contains(&name) {
            faults.push(format!("{rel} uses crate::{name}"));
            continue;
        }
        if let (Some(own), Some(theirs)) = (own, level_of(name))
            && name != top
            && theirs >= own
        {
            faults.push(format!("{rel} uses crate::{name}"));
        }
    }
    let dir = dirs.join("/");
    if stem != "mod" && !dirs.is_empty() {
        let ranks = rules.ranks.iter().find(|(d, _)| *d == dir).map(|r| r.1);
        let rank_of = |name: &str| {
            ranks
                .and_then(|r| r.iter().find(|(f, _)| *f == name))
                .map(|r| r.1)
        };
        if let Some(mine) = rank_of(stem) {
            let prefix = format!("crate::{}::", dirs.join("::"));
            for name in used_after(&code, &prefix) {
                if let Some(theirs) = rank_of(name)
                    && theirs >= mine
                    && name != stem
                {
                    faults.push(format!("{rel} uses its sibling {name}"));
                }
            }
        }
    }
    for hidden in ["#[path", "include!("] {
        if code.contains(hidden) {
            faults.push(format!("{rel} pulls code in with {hidden}"));
        }
    }
    faults
}

/// Check every `.rs` file under `src` against `rules`. Returns the files checked and the
/// faults. A file in a directory without ranks, or missing from its directory's ranks, is a
/// fault too (a new file must be placed).
pub fn check(src: &Path, rules: &Rules) -> (usize, Vec<String>) {
    let mut files = Vec::new();
    walk(src, src, &mut files);
    files.sort();
    let mut faults = Vec::new();
    for rel in &files {
        let text = std::fs::read_to_string(src.join(rel)).expect("reading a source file");
        let parts: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
        if parts.len() > 1 {
            let dir = parts[..parts.len() - 1].join("/");
            let stem = parts[parts.len() - 1];
            let placed = rules
                .ranks
                .iter()
                .find(|(d, _)| *d == dir)
                .is_some_and(|(_, r)| r.iter().any(|(f, _)| *f == stem));
            if !placed {
                faults.push(format!("{rel} has no rank in the layering rules"));
            }
        } else if parts[0] != "lib" && parts[0] != "main" {
            let top = parts[0];
            if !rules.layers.iter().any(|(m, _)| *m == top) && !rules.forbidden.contains(&top) {
                faults.push(format!("{rel} has no layer in the layering rules"));
            }
        }
        let top = parts[0];
        // A `tests.rs` is a unit-test module in a file of its own: test code, as the test
        // module at the end of a file is.
        let is_test_file = parts.last() == Some(&"tests");
        if !rules.forbidden.contains(&top) && !is_test_file {
            faults.extend(faults_in(rules, rel, &text));
        }
    }
    (files.len(), faults)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("reading a source directory")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Check every file under `src` ([`check`]) and panic with the faults, one per line, when there
/// are any, or when fewer than `at_least` files were read (a `src` that moved would otherwise
/// pass with nothing checked).
pub fn assert_layered(src: &Path, rules: &Rules, at_least: usize) {
    let (checked, faults) = check(src, rules);
    assert!(checked >= at_least, "only {checked} files checked");
    assert!(
        faults.is_empty(),
        "imports against the layers:\n{}",
        faults.join("\n")
    );
}

/// Panic unless each `(file, code, fault)` of `cases` gives exactly that one fault under `rules`:
/// the proof that a rule sees what it must.
pub fn assert_each_fault(rules: &Rules, cases: &[(&str, &str, &str)]) {
    for (file, code, fault) in cases {
        assert_eq!(faults_in(rules, file, code), [*fault], "{file}: {code}");
    }
}
