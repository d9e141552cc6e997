//! The bounded fuzzing run of the test command: every fuzz target of fuzz/ is built with
//! cargo-fuzz (stable toolchain, no sanitizer) and run from its committed corpus for a fixed
//! number of inputs (about 30 s each here). A crash, a failed assertion inside a target or a hang
//! fails the test with the input that caused it. The long run is `bench/fuzz.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A fuzz target, its dictionary and the number of inputs of the bounded run (sized to take
/// about 30 s on the 2-core CI machine; libFuzzer's rates are in CONTRIBUTING.md "Fuzzing").
struct Target {
    name: &'static str,
    dict: &'static str,
    runs: u32,
}

const ADMISSION: Target = Target {
    name: "admission",
    dict: "admission.dict",
    runs: 200_000,
};
const CONFIG: Target = Target {
    name: "config",
    dict: "yaml.dict",
    runs: 100_000,
};
const REVIEW: Target = Target {
    name: "review",
    dict: "yaml.dict",
    runs: 25_000,
};

/// The same flags as `bench/fuzz.sh`, so the build is shared.
const BUILD_FLAGS: &[&str] = &["--sanitizer", "none", "--release"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fuzz build's own target directory, next to the main build's.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("fuzz")
}

/// Cargo, without the variables `cargo test` sets for this package: build scripts (ring's) watch
/// some of them (`CARGO_PKG_NAME`...), so they would make the fuzz build differ from
/// `bench/fuzz.sh`'s and rebuild everything each time.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    const SET_BY_CARGO_TEST: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_BIN_",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| SET_BY_CARGO_TEST.iter().any(|p| k.starts_with(p)))
        {
            c.env_remove(k);
        }
    }
    c
}

fn show(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Build every target once (the tests run in parallel and share it).
fn build() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let found = cargo().args(["fuzz", "--version"]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(
                "cargo-fuzz is not installed: run `cargo install cargo-fuzz --locked` \
                        (tests/setup.sh does, into $CARGO_HOME/bin)"
                    .into(),
            );
        }
        let out = cargo()
            .args(["fuzz", "build"])
            .args(BUILD_FLAGS)
            .arg("--target-dir")
            .arg(target_dir())
            .output()
            .map_err(|e| format!("cannot run cargo fuzz build: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("cargo fuzz build failed:\n{}", show(&out)))
        }
    })
}

/// Run `t` for its bounded number of inputs; new inputs go to a scratch corpus so the committed
/// one stays as it is.
fn run(t: &Target) {
    if let Err(e) = build() {
        panic!("{e}");
    }
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let (corpus, crashes) = (
        scratch.path().join("corpus"),
        scratch.path().join("crashes"),
    );
    for d in [&corpus, &crashes] {
        std::fs::create_dir(d).expect("a scratch directory");
    }
    let fuzz = root().join("fuzz");
    let out = cargo()
        .args(["fuzz", "run"])
        .args(BUILD_FLAGS)
        .arg("--target-dir")
        .arg(target_dir())
        .arg(t.name)
        .arg(&corpus)
        .arg(fuzz.join("corpus").join(t.name))
        .arg("--")
        .arg(format!("-runs={}", t.runs))
        .arg(format!("-dict={}", fuzz.join(t.dict).display()))
        .arg(format!("-artifact_prefix={}/", crashes.display()))
        .arg("-timeout=60")
        .arg("-print_final_stats=1")
        .output()
        .expect("cargo fuzz run starts");
    if !out.status.success() {
        let _kept = scratch.keep();
        let artifacts: Vec<String> = std::fs::read_dir(&crashes)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap_or_default();
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
                format!("{}:\n{shown}", p.display())
            })
            .collect();
        panic!(
            "fuzz target {} failed; reproduce with `cd fuzz && cargo fuzz run {} -s none <input>`\n\
             {}\n--- input(s):\n{}",
            t.name,
            t.name,
            show(&out),
            artifacts.join("\n")
        );
    }
    let done = format!("Done {} runs", t.runs);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&done),
        "fuzz target {} did not report {done:?}:\n{}",
        t.name,
        show(&out)
    );
}

#[test]
fn admission_webhooks_from_raw_bytes() {
    run(&ADMISSION);
}

#[test]
fn config_map_and_env_file_parsers() {
    run(&CONFIG);
}

#[test]
fn review_yaml_stream() {
    run(&REVIEW);
}
