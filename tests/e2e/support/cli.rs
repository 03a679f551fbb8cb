//! Running the `krypton-host` binary: [`Cli`], a command line built step by step (the
//! fixture's `provision` starts one with the mock's endpoint, CA file and store), and [`Run`],
//! what one run gave back.

use serde_json::Value;
use std::path::Path;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_krypton-host");

/// One finished run: the exit code (-1 when killed by a signal), stdout and stderr.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one JSON value on stdout; panics, showing both streams, when stdout is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON value ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The JSON value on stdout, or `Null` when there is none.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }

    /// `(code, stdout, stderr)`, the shape of [`super::run_cli`].
    pub fn parts(self) -> (i32, String, String) {
        (self.code, self.stdout, self.stderr)
    }
}

/// A command line for the binary. `KRYPTON_STORE` and `KRYPTON_ENDPOINT` are removed from its
/// environment, and `RUST_LOG` unless [`Cli::log`] sets it.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: String,
    verbose: bool,
    args: Vec<String>,
    json: bool,
    log: Option<String>,
    env: Vec<(String, Option<String>)>,
}

/// A command line of `args` (the subcommand first).
pub fn cli<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Cli {
    Cli {
        bin: BIN.to_string(),
        verbose: false,
        args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
        json: false,
        log: None,
        env: Vec::new(),
    }
}

/// A path as a command-line word.
pub fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

impl Cli {
    /// Another binary with the same interface (the gateway build).
    pub fn bin(mut self, bin: &str) -> Cli {
        self.bin = bin.to_string();
        self
    }

    /// Append words.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Cli {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Append one word.
    pub fn arg(self, arg: impl AsRef<str>) -> Cli {
        self.args([arg])
    }

    /// `flag value`: the value of `flag` if it is already there, else both appended.
    pub fn set(mut self, flag: &str, value: impl AsRef<str>) -> Cli {
        let value = value.as_ref().to_string();
        match self.args.iter().position(|a| a == flag) {
            Some(at) => self.args[at + 1] = value,
            None => self.args.extend([flag.to_string(), value]),
        }
        self
    }

    /// `flag` and its value removed (nothing when absent).
    pub fn unset(mut self, flag: &str) -> Cli {
        if let Some(at) = self.args.iter().position(|a| a == flag) {
            self.args.drain(at..at + 2);
        }
        self
    }

    /// `--endpoint ENDPOINT`.
    pub fn endpoint(self, endpoint: &str) -> Cli {
        self.set("--endpoint", endpoint)
    }

    /// `--store DIR`.
    pub fn store(self, dir: &Path) -> Cli {
        self.set("--store", text(dir))
    }

    /// `--ca-file FILE`.
    pub fn ca(self, file: &Path) -> Cli {
        self.set("--ca-file", text(file))
    }

    /// `--param KEY=VALUE`.
    pub fn param(self, pair: &str) -> Cli {
        self.args(["--param", pair])
    }

    /// `--force`.
    pub fn force(self) -> Cli {
        self.arg("--force")
    }

    /// `--max-attempts N`.
    pub fn attempts(self, n: u32) -> Cli {
        self.set("--max-attempts", n.to_string())
    }

    /// `--poll-interval-ms MS`.
    pub fn poll_ms(self, ms: u32) -> Cli {
        self.set("--poll-interval-ms", ms.to_string())
    }

    /// `--json`, placed last.
    pub fn json(mut self) -> Cli {
        self.json = true;
        self
    }

    /// Without `--json` (the text output).
    pub fn text(mut self) -> Cli {
        self.json = false;
        self
    }

    /// `-v` before the subcommand.
    pub fn verbose(mut self) -> Cli {
        self.verbose = true;
        self
    }

    /// `RUST_LOG` set to `filter`.
    pub fn log(mut self, filter: &str) -> Cli {
        self.log = Some(filter.to_string());
        self
    }

    /// `KEY=VALUE` in the environment.
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_string(), Some(value.to_string())));
        self
    }

    /// `KEY` removed from the environment.
    pub fn env_remove(mut self, key: &str) -> Cli {
        self.env.push((key.to_string(), None));
        self
    }

    /// The words after the binary's name.
    pub fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        if self.verbose {
            words.push("-v".to_string());
        }
        words.extend(self.args.iter().cloned());
        if self.json {
            words.push("--json".to_string());
        }
        words
    }

    /// Run it to the end, failing the test when that takes longer than `limit` (a bound on a
    /// hang, not a speed target).
    pub async fn run_within(&self, limit: std::time::Duration) -> Run {
        tokio::time::timeout(limit, self.run())
            .await
            .unwrap_or_else(|_| panic!("`{}` did not finish in {limit:?}", self.words().join(" ")))
    }

    /// Run it to the end.
    pub async fn run(&self) -> Run {
        let mut command = tokio::process::Command::new(&self.bin);
        match &self.log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        command
            .args(self.words())
            .env_remove("KRYPTON_STORE")
            .env_remove("KRYPTON_ENDPOINT");
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let out = command.output().await.unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}
