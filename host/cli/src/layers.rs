//! The layering rule of the command crate, checked on its sources (the checker is
//! `krypton-layering`, as for the library): the output renders, `doctor` and the registry use
//! it, the daemon uses those, the commands use everything; inside a directory a file names only
//! siblings of a lower rank.

use krypton_layering::{Rules, assert_each_fault, assert_layered};
use std::path::Path;

/// The rooms of `krypton-host-cli`, lowest first, and the order of the files in each directory.
const RULES: Rules = Rules {
    crate_name: "krypton_host_cli",
    layers: &[
        ("output", 0),
        ("doctor", 1),
        ("registry", 1),
        ("daemon", 2),
        ("commands", 3),
    ],
    forbidden: &["layers", "tests"],
    ranks: &[
        ("doctor", &[("tests", 9)]),
        (
            "registry",
            &[
                ("source", 0),
                ("manifest", 0),
                ("client", 1),
                ("pull", 2),
                ("publish", 2),
                ("follow", 3),
                ("mod", 9),
            ],
        ),
        ("registry/follow", &[("tests", 9)]),
        (
            "daemon",
            &[("config", 0), ("renewal", 1), ("control", 1), ("mod", 9)],
        ),
        (
            "commands",
            &[
                ("print", 0),
                ("shared", 0),
                ("help", 0),
                ("logging", 0),
                ("malloc", 0),
                ("sim", 1),
                ("bench_load", 2),
                ("bench_swap", 2),
                ("compile", 2),
                ("demo", 2),
                ("doctor", 2),
                ("export", 2),
                ("mock", 2),
                ("provision", 2),
                ("publish", 2),
                ("reload", 2),
                ("run", 2),
                ("sign", 2),
                ("status", 2),
                ("wireguard_config", 2),
                ("mod", 9),
            ],
        ),
    ],
};

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_layered(&src, &RULES, 35);
}

#[test]
fn the_check_sees_an_upward_import() {
    let cases = [
        (
            "output.rs",
            "use crate::daemon::GatewayConfig;",
            "output.rs uses crate::daemon",
        ),
        (
            "registry/client.rs",
            "use super::super::commands::HostFailure;",
            "registry/client.rs uses crate::commands",
        ),
        (
            "commands/print.rs",
            "use super::provision::ProvisionArgs;",
            "commands/print.rs uses its sibling provision",
        ),
        (
            "daemon/config.rs",
            "use super::renewal::Health;",
            "daemon/config.rs uses its sibling renewal",
        ),
    ];
    assert_each_fault(&RULES, &cases);
}
