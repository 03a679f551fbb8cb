//! Builds a WebAssembly component crate of this workspace from another crate's build script.
//!
//! The host embeds the provisioning component (`guest/`), the end-to-end tests load a test
//! component (`tests/components/hostile/`), and `guest/plugin` composes the provisioning
//! component with its adapters (`guest/adapters/`) into `krypton-cli.wasm` (the `compose`
//! feature, module `compose`); each build script calls [`Component::build`]:
//!
//! ```no_run
//! let wasm = krypton_build_support::Component {
//!     package: "krypton-guest",
//!     dir: "guest",
//!     prebuilt_env: Some("KRYPTON_GUEST_WASM"),
//!     inputs: &["wit"],
//! }
//! .build();
//! println!("cargo::rustc-env=KRYPTON_GUEST_WASM_PATH={}", wasm.display());
//! ```
//!
//! The component is built by a nested `cargo build --target wasm32-wasip2 --profile
//! guest-release --locked` in its own target directory, `<target>/guest-build/`: cargo locks a
//! build directory for the whole build, so the nested build cannot share the outer one. The
//! outer build's flags (`RUSTFLAGS`, `CARGO_ENCODED_RUSTFLAGS`, `CARGO_BUILD_TARGET`) and its
//! jobserver (`CARGO_MAKEFLAGS`) are removed from the nested build's environment. When the
//! `wasm32-wasip2` target is missing it is added with `rustup target add` first (rustup does not
//! add the targets listed in `rust-toolchain.toml` by itself when `RUSTUP_AUTO_INSTALL=0`).
//!
//! Reruns are driven by dep-info: after the nested build, every file listed in the dep-info file
//! cargo writes beside the artifact (`<crate>.d`, see "Dep-info files" in The Cargo Book's
//! "Build cache" chapter) is printed as `cargo::rerun-if-changed`, so a new or moved source file
//! is tracked without a hand-kept list. That list names the sources of the crate and of its
//! path dependencies and, through `wit-bindgen`'s `include_bytes!`, each WIT file it read.
//! Registry dependencies are left out of it by cargo (a change to them is a change to
//! `Cargo.lock`), and so are manifests and new files, so [`Component::build`] also watches the
//! workspace's `Cargo.toml` and `Cargo.lock`, the component's `Cargo.toml` and the extra
//! [`Component::inputs`] (the WIT directory, where a new file changes the contract without
//! touching a listed one).

#[cfg(feature = "compose")]
pub mod compose;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target components are built for: WASI 0.2, whose linker (`wasm-component-ld`,
/// shipped with rustc) writes a component rather than a core module.
pub const TARGET: &str = "wasm32-wasip2";

/// The Cargo profile components are built with (size-optimised; defined in the workspace's
/// `Cargo.toml`).
pub const PROFILE: &str = "guest-release";

/// Subdirectory of the workspace's target directory that holds the nested builds.
const BUILD_DIR: &str = "guest-build";

/// Environment variables of the outer build that must not reach the nested one: its flags and
/// target would apply to the component, and its jobserver belongs to the outer cargo.
const OUTER_ENV: [&str; 4] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
];

/// A component crate of this workspace, built for [`TARGET`] with [`PROFILE`].
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    /// The Cargo package name, as given to `cargo build --package` (`krypton-guest`). Its
    /// library must be a `cdylib`; the artifact is `<package with '-' as '_'>.wasm`.
    pub package: &'a str,
    /// The package's directory, relative to the workspace root (`guest`); its `Cargo.toml` is
    /// watched for reruns.
    pub dir: &'a str,
    /// An environment variable that, when set, names a prebuilt component file to use instead of
    /// building one (a relative path is taken from the calling package's directory, where cargo
    /// runs build scripts). `None`: always build.
    pub prebuilt_env: Option<&'a str>,
    /// Further files or directories, relative to the workspace root, whose change must rebuild
    /// the component (a directory is watched with everything in it, as cargo does for
    /// `rerun-if-changed`).
    pub inputs: &'a [&'a str],
}

impl Component<'_> {
    /// Builds the component (or takes the prebuilt one), copies it to `$OUT_DIR/<crate>.wasm`
    /// (only when its bytes changed, so that an unchanged component does not make the embedding
    /// crate recompile), prints the `cargo::rerun-if-changed` and `cargo::rerun-if-env-changed`
    /// directives described in the crate docs, and returns the copy's absolute path.
    ///
    /// # Panics
    ///
    /// As build scripts report failure: when it does not run inside a build script (`OUT_DIR`,
    /// `CARGO_MANIFEST_DIR` unset), when the workspace cannot be located, when the target is
    /// missing and `rustup target add` fails, when the nested build fails (its errors are
    /// printed above the panic), or when a file cannot be read or copied.
    pub fn build(&self) -> PathBuf {
        let out_dir = PathBuf::from(env("OUT_DIR"));
        let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
        let crate_name = self.package.replace('-', "_");
        let dest = out_dir.join(format!("{crate_name}.wasm"));

        if let Some(var) = self.prebuilt_env {
            println!("cargo::rerun-if-env-changed={var}");
            if let Some(prebuilt) = std::env::var_os(var) {
                // Build scripts run in their package's directory; make the path absolute so the
                // rerun directive names the same file.
                let prebuilt = manifest_dir.join(prebuilt);
                println!("cargo::rerun-if-changed={}", prebuilt.display());
                copy_if_changed(&prebuilt, &dest)
                    .unwrap_or_else(|e| panic!("{var}={}: {e}", prebuilt.display()));
                return dest;
            }
        }

        let root = workspace_root(&manifest_dir);
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| root.join(dir))
            .unwrap_or_else(|| root.join("target"))
            .join(BUILD_DIR);
        ensure_target(&target_dir);

        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut nested = Command::new(cargo);
        nested
            .current_dir(&root)
            .args(["build", "--package", self.package, "--target", TARGET])
            .args(["--profile", PROFILE, "--locked"])
            .env("CARGO_TARGET_DIR", &target_dir);
        for var in OUTER_ENV {
            nested.env_remove(var);
        }
        let status = nested
            .status()
            .unwrap_or_else(|e| panic!("running cargo to build {}: {e}", self.package));
        assert!(
            status.success(),
            "building the {} component for {TARGET} failed (see above)",
            self.package
        );

        let artifacts = target_dir.join(TARGET).join(PROFILE);
        let built = artifacts.join(format!("{crate_name}.wasm"));
        copy_if_changed(&built, &dest)
            .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));

        let dep_info = artifacts.join(format!("{crate_name}.d"));
        match fs::read_to_string(&dep_info) {
            Ok(text) => {
                for path in dep_info_paths(&text, &root) {
                    rerun_if_changed(&path);
                }
            }
            Err(e) => {
                // Cargo writes it with every build; without it, watch the whole package.
                println!(
                    "cargo::warning=no dep-info for {} ({}: {e}); watching {} instead",
                    self.package,
                    dep_info.display(),
                    self.dir
                );
                rerun_if_changed(&root.join(self.dir));
            }
        }
        for path in ["Cargo.toml", "Cargo.lock"] {
            rerun_if_changed(&root.join(path));
        }
        rerun_if_changed(&root.join(self.dir).join("Cargo.toml"));
        for input in self.inputs {
            rerun_if_changed(&root.join(input));
        }
        dest
    }
}

/// An environment variable cargo sets for build scripts.
fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: not run by cargo?"))
}

/// The workspace root, from `cargo locate-project --workspace` run in `manifest_dir`.
fn workspace_root(manifest_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(manifest_dir)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .expect("running `cargo locate-project --workspace`");
    assert!(
        output.status.success(),
        "`cargo locate-project --workspace` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    manifest
        .parent()
        .expect("the workspace manifest has a directory")
        .to_path_buf()
}

/// Adds [`TARGET`] with `rustup` when the compiler cargo uses (`$RUSTC`) has no standard library
/// for it. Two build scripts may get here at once; a lock file in `build_dir` keeps them from
/// running `rustup` side by side.
fn ensure_target(build_dir: &Path) {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let installed = || {
        Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_some_and(|dir| has_std(&dir))
    };
    if installed() {
        return;
    }
    fs::create_dir_all(build_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", build_dir.display()));
    let lock_path = build_dir.join(".rustup-target-add.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    if installed() {
        return;
    }
    println!("cargo::warning=the {TARGET} target is missing; running `rustup target add {TARGET}`");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        added && installed(),
        "the {TARGET} Rust target is not installed and `rustup target add {TARGET}` failed; \
         install it by hand and build again"
    );
}

/// Whether a target's library directory holds its standard library (`libstd-<hash>.rlib`).
fn has_std(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd"))
    })
}

/// Copies `from` to `to` unless `to` already holds the same bytes (keeping its mtime).
fn copy_if_changed(from: &Path, to: &Path) -> std::io::Result<()> {
    let bytes = fs::read(from)?;
    if fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(to, bytes)
}

/// Prints a `cargo::rerun-if-changed` directive. A path with a line break cannot be written as
/// one; it is reported instead, and then that input is not watched.
fn rerun_if_changed(path: &Path) {
    let text = path.display().to_string();
    if text.contains(['\n', '\r']) {
        println!("cargo::warning=cannot watch a path with a line break: {text:?}");
    } else {
        println!("cargo::rerun-if-changed={text}");
    }
}

/// The prerequisites of a dep-info file as cargo writes it: Makefile rules `TARGET: PATH PATH…`,
/// one per line, a space inside a path escaped as `\ `, and `#` comment lines. Relative paths
/// (cargo's `build.dep-info-basedir` setting) are taken from `base`. Each path once, in order.
fn dep_info_paths(text: &str, base: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(prerequisites) = after_rule_colon(line) else {
            continue;
        };
        for word in split_escaped(prerequisites) {
            let path = base.join(word);
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

/// What follows the colon that ends a rule's target: the first `:` followed by a space or the
/// end of the line (so a drive letter's `C:\` is not taken for it), not escaped.
fn after_rule_colon(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .find(|&i| {
            bytes[i] == b':'
                && (i == 0 || bytes[i - 1] != b'\\')
                && bytes.get(i + 1).is_none_or(|&next| next == b' ')
        })
        .map(|i| &line[i + 1..])
}

/// Splits at unescaped spaces, turning each `\ ` into a space.
fn split_escaped(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            ' ' | '\t' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_dep_info() {
        let text = "/w/target/guest-build/wasm32-wasip2/guest-release/krypton_guest.wasm: \
                    /w/guest/src/lib.rs /w/guest/src/flow.rs /w/wit/krypton.wit\n";
        assert_eq!(
            dep_info_paths(text, Path::new("/elsewhere")),
            [
                "/w/guest/src/lib.rs",
                "/w/guest/src/flow.rs",
                "/w/wit/krypton.wit"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn unescapes_spaces_and_skips_comments_and_empty_rules() {
        let text = "/a\\ b/out.wasm: /a\\ b/src/lib.rs /a\\ b/src/my\\ mod.rs\n\
                    # size:123 md5:abc\n\
                    /a\\ b/src/lib.rs:\n\
                    \n";
        assert_eq!(
            dep_info_paths(text, Path::new("/")),
            ["/a b/src/lib.rs", "/a b/src/my mod.rs"].map(PathBuf::from)
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_base_and_listed_once() {
        let text = "target/out.wasm: guest/src/lib.rs\nx.wasm: guest/src/lib.rs wit/a.wit\n";
        assert_eq!(
            dep_info_paths(text, Path::new("/root")),
            ["/root/guest/src/lib.rs", "/root/wit/a.wit"].map(PathBuf::from)
        );
    }

    #[test]
    fn a_drive_letter_is_not_the_rule_colon() {
        assert_eq!(
            after_rule_colon(r"C:\t\out.wasm: C:\src\lib.rs"),
            Some(r" C:\src\lib.rs")
        );
        assert_eq!(after_rule_colon("no rule here"), None);
    }

    #[test]
    fn copies_only_changed_bytes() {
        let dir =
            std::env::temp_dir().join(format!("krypton-build-support-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (from, to) = (dir.join("from.wasm"), dir.join("to.wasm"));
        fs::write(&from, b"\0asm one").unwrap();
        copy_if_changed(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"\0asm one");
        let before = fs::metadata(&to).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        copy_if_changed(&from, &to).unwrap();
        assert_eq!(fs::metadata(&to).unwrap().modified().unwrap(), before);
        fs::write(&from, b"\0asm two").unwrap();
        copy_if_changed(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"\0asm two");
        fs::remove_dir_all(&dir).unwrap();
    }
}
