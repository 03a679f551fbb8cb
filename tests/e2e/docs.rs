//! The guides in `docs/` run, so that a guide cannot drift from the CLI. Each guide's ```` ```sh
//! ```` blocks run in order, each as its own `bash -euo pipefail` script, in one private
//! directory per guide, with the `krypton-host` under test first on `PATH` and a mock Krypton
//! started for the guide (`krypton-host mock`). A ```` ```text ```` block right after a runnable
//! block is the output it shows: each of its non-empty lines must match a whole output line
//! (stdout and stderr), in order, `...` standing for any text (a line `...` alone: any lines,
//! or none). ```` ```sh no-run ```` blocks are shown
//! only (a real gateway's `systemctl`, `apt-get`, hardware, `cargo` builds). The convention is
//! written for readers at the top of `docs/README.md`.
//!
//! What a block finds (the same as docs/README.md says):
//! - `KRYPTON_ENDPOINT` (the mock's `https://127.0.0.1:PORT`), `KRYPTON_CA_FILE` (its CA) and
//!   `KRYPTON_STORE` (`./store`, not yet created);
//! - in the directory: `krypton_guest.wasm` (the component, as `cargo guest` builds it) and
//!   `gateway.example.toml` (the repository's);
//! - `KRYPTON_REGISTRY` (`127.0.0.1:PORT` of Debian's `docker-registry`) for a guide that names
//!   it.
//!
//! A block gets at most [`BLOCK_TIMEOUT`]; when it ends, whatever it left running in its process
//! group is killed, so a background process (a daemon, a mock) lives within one block.
//! `KRYPTON_DOCS_SHOW=1` prints every block's output (with `--nocapture`), for writing a guide.

use super::registry_support::{TestRegistry, registry_tools_present};
use super::support::BIN;
use krypton_host::component::DEFAULT_COMPONENT;
use serde_json::Value;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The guides, each run by its own test below. `every_guide_is_listed` fails when a file in
/// `docs/` is missing here.
const GUIDES: [&str; 13] = [
    "README.md",
    "gateway.md",
    "gateway-build.md",
    "daemon.md",
    "fleet.md",
    "sim-mode.md",
    "exports.md",
    "mock.md",
    "testing.md",
    "other-runtimes.md",
    "reference.md",
    "sandbox.md",
    "layout.md",
];

/// The longest a block may run (a debug build compiles the component on first use; a daemon
/// block waits for a pass and for its stop).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(240);

/// One fenced block of a guide.
#[derive(Debug)]
struct Block {
    /// Line of the opening fence (1-based).
    line: usize,
    /// The fence's info string (`sh`, `sh no-run`, `text`, `toml`, ...).
    info: String,
    /// The block's text.
    body: String,
}

/// A runnable block and the output it shows, if any.
#[derive(Debug)]
struct Step {
    line: usize,
    script: String,
    expect: Option<String>,
}

/// The repository's root: the first directory above this package holding `docs/`.
fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("docs").is_dir() || !dir.join("Cargo.lock").is_file() {
        assert!(dir.pop(), "no docs/ above {}", env!("CARGO_MANIFEST_DIR"));
    }
    dir
}

/// The fenced blocks of `markdown`. Panics on an unclosed fence.
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                open = Some(Block {
                    line: index + 1,
                    info: line.trim_start().trim_start_matches('`').trim().to_string(),
                    body: String::new(),
                });
            }
            (Some(_), true) => blocks.push(open.take().unwrap()),
            (Some(block), false) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, false) => {}
        }
    }
    assert!(
        open.is_none(),
        "unclosed fence at line {}",
        open.unwrap().line
    );
    blocks
}

/// The runnable steps of a guide. A shell block must say whether it runs (`sh`) or not
/// (`sh no-run`): any other shell-like info string fails, so that no block escapes the runner
/// by its spelling.
fn steps(guide: &str, markdown: &str) -> Result<(Vec<Step>, usize), String> {
    let blocks = fenced_blocks(markdown);
    let mut steps: Vec<Step> = Vec::new();
    let mut no_run = 0;
    let mut previous_ran = false;
    for block in blocks {
        let ran = match block.info.as_str() {
            "sh" => {
                steps.push(Step {
                    line: block.line,
                    script: block.body,
                    expect: None,
                });
                true
            }
            "sh no-run" => {
                no_run += 1;
                false
            }
            "text" if previous_ran => {
                let step = steps.last_mut().unwrap();
                step.expect = Some(block.body);
                false
            }
            "text" | "toml" | "ini" | "json" => false,
            other => {
                return Err(format!(
                    "docs/{guide}:{}: fence `{other}`: write `sh` (runs), `sh no-run`, `text`, `toml`, `ini` or `json`",
                    block.line
                ));
            }
        };
        previous_ran = ran;
    }
    Ok((steps, no_run))
}

/// Whether `line` matches `pattern` whole, where `...` stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == line;
    }
    if line.len() < first.len() + last.len() || !line.starts_with(first) || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The expected lines that no output line matches in order (empty: all found). Output lines
/// that match no expected line are skipped.
fn missing_lines(expect: &str, output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
    let mut at = 0;
    let mut missing = Vec::new();
    // Output lines between two expected lines are skipped, so a line `...` alone (any lines,
    // or none) needs no pattern of its own.
    let patterns = expect.lines().map(str::trim_end);
    for pattern in patterns.filter(|l| !l.is_empty() && *l != "...") {
        match lines[at..].iter().position(|l| matches(pattern, l)) {
            Some(found) => at += found + 1,
            None => missing.push(pattern.to_string()),
        }
    }
    missing
}

/// A `krypton-host mock` child, killed on drop.
struct MockProcess {
    child: std::process::Child,
    endpoint: String,
    ca_file: String,
}

impl MockProcess {
    fn start() -> MockProcess {
        let mut child = Command::new(BIN)
            .arg("mock")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("krypton-host mock printed {line:?}: {e}")
        });
        MockProcess {
            endpoint: started["endpoint"].as_str().unwrap().to_string(),
            ca_file: started["caFile"].as_str().unwrap().to_string(),
            child,
        }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kill what is left in process group `pgid` (nothing left is fine).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Run one step in `dir` with `env`; panics with the guide's line, the script and its output
/// when it fails, outlives [`BLOCK_TIMEOUT`] or does not show its expected output.
fn run_step(guide: &str, step: &Step, dir: &Path, logs: &Path, env: &[(&str, String)]) {
    let script = logs.join(format!("block-{}.sh", step.line));
    std::fs::write(&script, &step.script).unwrap();
    let out_path = logs.join(format!("block-{}.out", step.line));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail"])
        .arg(&script)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let pgid = child.id();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > BLOCK_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    kill_group(pgid);
    if status.is_none() {
        let _ = child.wait();
    }
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let context = format!(
        "docs/{guide}:{} ({:.1} s)\n--- block ---\n{}--- output ---\n{output}",
        step.line,
        started.elapsed().as_secs_f64(),
        step.script
    );
    match status {
        None => panic!("timed out after {BLOCK_TIMEOUT:?}: {context}"),
        Some(status) if !status.success() => panic!("{status}: {context}"),
        Some(_) => {}
    }
    if let Some(expect) = &step.expect {
        let missing = missing_lines(expect, &output);
        assert!(
            missing.is_empty(),
            "expected output not shown: {missing:#?}\n{context}"
        );
    }
    eprintln!(
        "docs/{guide}:{} ok ({:.1} s)",
        step.line,
        started.elapsed().as_secs_f64()
    );
    if std::env::var_os("KRYPTON_DOCS_SHOW").is_some() {
        eprintln!("{context}");
    }
}

/// Run every runnable block of `docs/<guide>` in order.
fn run_guide(guide: &str) {
    let markdown = std::fs::read_to_string(repo_root().join("docs").join(guide)).unwrap();
    let (steps, no_run) = steps(guide, &markdown).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("docs/{guide}: {} blocks run, {no_run} no-run", steps.len());
    if steps.is_empty() {
        return;
    }
    // The guides read JSON with jq, as a reader's script would; CI installs it (`.ci/run`).
    if markdown.contains("jq ") {
        let found = Command::new("jq").arg("--version").output().is_ok();
        assert!(found, "docs/{guide} needs jq: apt-get install jq");
    }
    let registry = if markdown.contains("$KRYPTON_REGISTRY") {
        if !registry_tools_present(true) {
            return;
        }
        Some(TestRegistry::start())
    } else {
        None
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("krypton_guest.wasm"), DEFAULT_COMPONENT).unwrap();
    std::fs::copy(
        repo_root().join("gateway.example.toml"),
        dir.path().join("gateway.example.toml"),
    )
    .unwrap();
    let mock = MockProcess::start();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let mut env = vec![
        (
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        ("KRYPTON_ENDPOINT", mock.endpoint.clone()),
        ("KRYPTON_CA_FILE", mock.ca_file.clone()),
        (
            "KRYPTON_STORE",
            dir.path().join("store").display().to_string(),
        ),
    ];
    if let Some(registry) = &registry {
        env.push(("KRYPTON_REGISTRY", registry.addr.clone()));
    }
    for step in &steps {
        run_step(guide, step, dir.path(), logs.path(), &env);
    }
}

#[test]
fn every_guide_is_listed() {
    let mut found: Vec<String> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = GUIDES.iter().map(|g| g.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "docs/*.md against GUIDES in tests/e2e/docs.rs"
    );
}

#[test]
fn the_runner_reads_fences_and_matches_output_as_documented() {
    let guide = "```sh\necho one\n```\n\n```text\no...e\n```\n```sh no-run\nsystemctl x\n```\n```toml\na = 1\n```\n```sh\ntrue\n```\n";
    let (found, no_run) = steps("t.md", guide).unwrap();
    assert_eq!(no_run, 1);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].line, 1);
    assert_eq!(found[0].script, "echo one\n");
    assert_eq!(found[0].expect.as_deref(), Some("o...e\n"));
    assert_eq!(found[1].line, 14);
    assert_eq!(found[1].expect, None);
    assert!(matches(
        "wrote ... (... bytes, mode 0600)",
        "wrote a/b (27 bytes, mode 0600)"
    ));
    assert!(!matches(
        "wrote ... (... bytes, mode 0600)",
        "wrote a/b (27 bytes, mode 0644)"
    ));
    assert!(matches("...ok", "all ok"));
    assert!(matches("a...b...c", "a-b-c"));
    assert!(!matches("a...a", "a"));
    assert!(!matches("ok", "ok then"));
    assert_eq!(missing_lines("b\na\n", "a\nb\n"), vec!["a".to_string()]);
    assert!(missing_lines("a\n\nb\n", "a\nx\nb\n").is_empty());
    assert!(missing_lines("...\nb\n...\n", "b\n").is_empty());
    assert_eq!(
        steps("t.md", "text\n```bash\nls\n```\n").unwrap_err(),
        "docs/t.md:2: fence `bash`: write `sh` (runs), `sh no-run`, `text`, `toml`, `ini` or `json`"
    );
    assert!(
        steps("t.md", "```\nls\n```\n").is_err(),
        "a bare fence must be refused"
    );
}

#[test]
fn readme() {
    run_guide("README.md");
}

/// The repository's README: its blocks follow the same convention.
#[test]
fn root_readme() {
    run_guide("../README.md");
}

#[test]
fn gateway() {
    run_guide("gateway.md");
}

#[test]
fn gateway_build() {
    run_guide("gateway-build.md");
}

#[test]
fn daemon() {
    run_guide("daemon.md");
}

#[test]
fn fleet() {
    run_guide("fleet.md");
}

#[test]
fn sim_mode() {
    run_guide("sim-mode.md");
}

#[test]
fn exports() {
    run_guide("exports.md");
}

#[test]
fn mock() {
    run_guide("mock.md");
}

#[test]
fn testing() {
    run_guide("testing.md");
}

#[test]
fn other_runtimes() {
    run_guide("other-runtimes.md");
}

#[test]
fn reference() {
    run_guide("reference.md");
}

#[test]
fn sandbox() {
    run_guide("sandbox.md");
}

#[test]
fn layout() {
    run_guide("layout.md");
}
