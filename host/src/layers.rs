//! The layering rule of the crate docs, checked on the sources: no module names one of a layer
//! above it, no capability names another, and inside each directory a file names only siblings
//! of a lower rank (the checker is `krypton-layering`).

use krypton_layering::{Rules, assert_each_fault, assert_layered, faults_in};
use std::path::Path;

/// The rules of this crate: the layers of the crate docs' table, lowest first, and the order
/// of the files inside each directory (`mod` names everything below it).
const RULES: Rules = Rules {
    crate_name: "krypton_host",
    layers: &[
        ("files", 0),
        ("bindings", 1),
        ("sandbox", 1),
        ("signing", 2),
        ("options", 2),
        ("capability", 3),
        ("engine", 4),
        ("component", 5),
    ],
    forbidden: &["layers", "tests"],
    ranks: &[
        ("files", &[("tests", 9)]),
        ("signing", &[("tests", 9)]),
        (
            "capability",
            &[("http", 0), ("store", 0), ("uicc", 0), ("mod", 9)],
        ),
        (
            "capability/http",
            &[
                ("origin", 0),
                ("errors", 0),
                ("body", 1),
                ("policy", 2),
                ("hook", 3),
                ("mod", 9),
                ("tests", 9),
            ],
        ),
        (
            "engine",
            &[("kind", 0), ("cache", 1), ("state", 1), ("mod", 9)],
        ),
        (
            "component",
            &[
                ("precompiled", 0),
                ("targets", 0),
                ("facts", 1),
                ("loader", 2),
                ("lifecycle", 3),
                ("mod", 9),
            ],
        ),
    ],
};

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_layered(&src, &RULES, 20);
}

#[test]
fn the_check_sees_an_upward_import_in_every_spelling() {
    let cases = [
        (
            "capability/store.rs",
            "use crate::engine::HostState;",
            "capability/store.rs uses crate::engine",
        ),
        (
            "capability/store.rs",
            "use super::super::engine::Runtime;",
            "capability/store.rs uses crate::engine",
        ),
        (
            "capability/http/hook.rs",
            "use super::super::super::component::Loaded;",
            "capability/http/hook.rs uses crate::component",
        ),
        (
            "capability/uicc.rs",
            "use super::store::StoreCtx;",
            "capability/uicc.rs uses its sibling store",
        ),
        (
            "capability/uicc.rs",
            "use crate::{sandbox::LimitTrip, engine::Runtime};",
            "capability/uicc.rs uses crate::engine",
        ),
        (
            "engine/state.rs",
            "let k = krypton_host::component::DEFAULT_COMPONENT;",
            "engine/state.rs uses crate::component",
        ),
        (
            "engine/kind.rs",
            "use super::state::HostState;",
            "engine/kind.rs uses its sibling state",
        ),
        (
            "capability/http/origin.rs",
            "use super::policy::OutboundPolicy;",
            "capability/http/origin.rs uses its sibling policy",
        ),
        (
            "sandbox.rs",
            "use crate::capability::http;",
            "sandbox.rs uses crate::capability",
        ),
        (
            "files.rs",
            "#[path = \"engine/mod.rs\"]\nmod e;",
            "files.rs pulls code in with #[path",
        ),
    ];
    assert_each_fault(&RULES, &cases);
    // What is allowed stays allowed: lower layers, lower siblings, its own module, comments.
    for (file, line) in [
        ("capability/store.rs", "use crate::sandbox::LimitTrip;"),
        (
            "capability/http/hook.rs",
            "use super::policy::OutboundPolicy;",
        ),
        ("capability/http/mod.rs", "pub use hook::OutboundCall;"),
        (
            "engine/mod.rs",
            "use crate::capability::store::SecretStore;",
        ),
        ("component/lifecycle.rs", "use super::loader::Loaded;"),
        ("engine/state.rs", "// see crate::component::load"),
    ] {
        assert_eq!(
            faults_in(&RULES, file, line),
            Vec::<String>::new(),
            "{file}: {line}"
        );
    }
}
