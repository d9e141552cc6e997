//! The `carto-wi-webhook` binary as a user runs it: exit codes, stdin, output formats, help,
//! and the inputs a new user would try. Never a panic.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_carto-wi-webhook");
const EMAIL: &str = "carto-wi@acme-analytics.iam.gserviceaccount.com";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_bytes(args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    // Feed stdin from a thread (no pipe deadlock), ignoring a broken pipe: a command that
    // refuses its arguments exits without reading it.
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    let o = Out {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    };
    assert!(!o.stderr.contains("panicked"), "panic: {}", o.stderr);
    o
}

fn run(args: &[&str], stdin: Option<&str>) -> Out {
    run_bytes(args, stdin.map(str::as_bytes))
}

fn path(name: &str) -> String {
    fixture(name).to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- check

#[test]
fn check_invalid_exits_1_and_names_every_problem() {
    let o = run(&["check", "-f", &path("configmap-invalid.yaml")], None);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains("WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: required key is missing"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: \"carto-wi@acme-analytics.iam.gserviceaccount\""), "{}", o.stdout);
    assert!(
        o.stdout.contains("did you mean GKE_CLUSTER_PROJECT?"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("leading or trailing whitespace"),
        "{}",
        o.stdout
    );
}

#[test]
fn check_valid_exits_0_and_prints_the_iam_binding() {
    let o = run(&["check", "-f", &path("configmap-valid.yaml")], None);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains(&format!(
        "gcloud iam service-accounts add-iam-policy-binding {EMAIL} --role roles/iam.workloadIdentityUser --member \"serviceAccount:acme-gke-prod.svc.id.goog[carto/carto-common-backend]\""
    )), "{}", o.stdout);
    // Flags override the namespace and the ServiceAccount in the binding.
    let o = run(
        &[
            "check",
            "-f",
            &path("configmap-valid.yaml"),
            "-n",
            "prod",
            "--service-account",
            "backend",
        ],
        None,
    );
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.contains("svc.id.goog[prod/backend]"),
        "{}",
        o.stdout
    );
}

#[test]
fn check_reads_standard_input() {
    let o = run(
        &["check", "-f", "-"],
        Some(&fixture_text("configmap-valid.yaml")),
    );
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("add-iam-policy-binding"), "{}", o.stdout);
    let o = run(
        &["check", "-f", "-"],
        Some(&fixture_text("configmap-invalid.yaml")),
    );
    assert_eq!(o.code, 1);
}

#[test]
fn check_env_file() {
    let o = run(
        &[
            "check",
            "--env-file",
            &path("config.env"),
            "--namespace",
            "carto",
            "--extra-env",
            "WORKSPACE_SYNC_DATA_ENABLED",
        ],
        None,
    );
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("WORKSPACE_SYNC_DATA_ENABLED=true"),
        "{}",
        o.stdout
    );
    // The same file where the platform allows no extra variable: an error naming the flag.
    let refused = run(&["check", "--env-file", &path("config.env")], None);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused
            .stdout
            .contains("WORKSPACE_SYNC_DATA_ENABLED: not an allowed extra variable")
            && refused.stdout.contains("--extra-env"),
        "{}",
        refused.stdout
    );
    // A name that is not a pass-through key is refused as a flag value.
    let bad = run(
        &[
            "check",
            "--env-file",
            &path("config.env"),
            "--extra-env",
            "HOME",
        ],
        None,
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("not a pass-through variable name"),
        "{}",
        bad.stderr
    );
    assert!(
        o.stdout.contains("svc.id.goog[carto/carto-common-backend]"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("GKE_CLUSTER_PROJECT not set"),
        "{}",
        o.stdout
    );
    let o = run(
        &["check", "--env-file", "-"],
        Some("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT=acme-gke-prod\n"),
    );
    assert_eq!(o.code, 1);
    assert!(o.stdout.contains("3 problems"), "{}", o.stdout);
}

#[test]
fn check_usage_errors() {
    // Neither or both inputs.
    let o = run(&["check"], None);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("--filename") || o.stderr.contains("--env-file"),
        "{}",
        o.stderr
    );
    let o = run(
        &[
            "check",
            "-f",
            &path("configmap-valid.yaml"),
            "--env-file",
            &path("config.env"),
        ],
        None,
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    // A namespace that cannot exist.
    let o = run(
        &[
            "check",
            "-f",
            &path("configmap-valid.yaml"),
            "-n",
            "Not_A_Namespace",
        ],
        None,
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("not a Kubernetes object name"),
        "{}",
        o.stderr
    );
}

#[test]
fn check_unreadable_input_exits_2() {
    let o = run(&["check", "-f", "/nonexistent/cm.yaml"], None);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("cannot read /nonexistent/cm.yaml"),
        "{}",
        o.stderr
    );
    let o = run_bytes(&["check", "-f", "-"], Some(b"\xff\xfe\x00garbage"));
    assert_eq!(o.code, 2, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("standard input"), "{}", o.stderr);
}

#[test]
fn check_what_new_users_try() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: carto-workload-identity\nstringData:\n  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: acme-gke-prod\n";
    let cases = [
        ("", "no ConfigMap found"),
        ("# only a comment\n", "no ConfigMap found"),
        (secret, "no ConfigMap found"),
        ("this is: [not yaml\n", "at line 1,"),
        ("hello\n", "no ConfigMap found"),
    ];
    for (input, want) in cases {
        let o = run(&["check", "-f", "-"], Some(input));
        assert_eq!(o.code, 1, "{input:?}: {}{}", o.stdout, o.stderr);
        assert!(o.stdout.contains(want), "{input:?}: {}", o.stdout);
    }
    // CRLF line endings.
    let o = run(
        &["check", "-f", "-"],
        Some(&fixture_text("configmap-valid.yaml").replace('\n', "\r\n")),
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    // A kubectl List holding the ConfigMap.
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: carto-workload-identity\n    namespace: carto\n  data:\n{}",
        fixture_text("configmap-valid.yaml")
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("  n"))
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let o = run(&["check", "-f", "-"], Some(&list));
    assert_eq!(o.code, 0, "{list}\n{}", o.stdout);
    assert!(
        o.stdout.contains("svc.id.goog[carto/carto-common-backend]"),
        "{}",
        o.stdout
    );
}

#[test]
fn check_names_bad_pass_through_keys_and_invisible_characters() {
    let cm = format!(
        "{}  \"WORKSPACE_A B\": \"1\"\n  \"WORKSPACE_\": \"1\"\n  WORKSPACE_HIDDEN: \"on\\u200bline\"\n  WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: \"auth0|\\u202eabc\"\n",
        fixture_text("configmap-valid.yaml")
            .lines()
            .filter(|l| !l.contains("OWNER_ID"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let o = run(&["check", "-f", "-"], Some(&cm));
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("(4 problems)"), "{}", o.stdout);
    for want in [
        "- \"WORKSPACE_A B\": not a valid pass-through key",
        "- \"WORKSPACE_\": not a valid pass-through key",
        "e.g. WORKSPACE_SYNC_DATA_ENABLED",
        "- WORKSPACE_HIDDEN: the value holds the control or invisible character U+200B at character 3",
        "- WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: the value holds the control or invisible character U+202E at character 7",
    ] {
        assert!(o.stdout.contains(want), "{want}\n{}", o.stdout);
    }
    assert!(!o.stdout.contains(['\u{200b}', '\u{202e}']), "{}", o.stdout);
    // The same from an env file.
    let env = format!(
        "{}WORKSPACE_A B=1\nWORKSPACE_TAB=\"a\tb\"\n",
        fixture_text("config.env")
    );
    let o = run(&["check", "--env-file", "-"], Some(&env));
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("\"WORKSPACE_A B\""), "{}", o.stdout);
    assert!(o.stdout.contains("U+0009 at character 2"), "{}", o.stdout);
}

#[test]
fn two_config_maps_of_that_name_are_an_error_naming_both() {
    let valid = fixture_text("configmap-valid.yaml");
    let second_line = valid.lines().count() + 2;
    let two = format!("{valid}---\n{valid}");
    let o = run(&["check", "-f", "-"], Some(&two));
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let want = format!("the document at line 1 and the document at line {second_line}");
    assert!(o.stdout.contains("2 ConfigMaps named"), "{}", o.stdout);
    assert!(o.stdout.contains(&want), "{}", o.stdout);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("two.yaml");
    std::fs::write(&config, &two).unwrap();
    let config = config.to_str().unwrap();
    let o = run(
        &[
            "review",
            "-f",
            &path("carto-plain.yaml"),
            "--config",
            config,
        ],
        None,
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--config"), "{}", o.stderr);
    assert!(o.stderr.contains(&want), "{}", o.stderr);
    assert!(o.stdout.is_empty());
}

#[test]
fn yaml_limits_are_named_in_words() {
    let deep = format!(
        "{}  X: {}1{}\n",
        fixture_text("configmap-valid.yaml"),
        "[".repeat(80),
        "]".repeat(80)
    );
    let o = run(&["check", "-f", "-"], Some(&deep));
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains("nested deeper than 64 levels at line 13,"),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("budget"), "{}", o.stdout);
}

#[test]
fn serve_refuses_a_config_file_over_1_mib() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("big.yaml");
    let padding = format!("# {}\n", "x".repeat(1000)).repeat(1100);
    std::fs::write(
        &config,
        fixture_text("configmap-valid.yaml") + padding.as_str(),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let o = run(
        &[
            "serve",
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("--config {config}")),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("larger than the 1 MiB limit"),
        "{}",
        o.stderr
    );
}

// ---------------------------------------------------------------- review

fn review_stdin(input: &str, extra: &[&str]) -> Out {
    let cfg = path("configmap-valid.yaml");
    let mut args = vec!["review", "-f", "-", "--config", cfg.as_str()];
    args.extend_from_slice(extra);
    run(&args, Some(input))
}

#[test]
fn review_stdin_stream_patches_targets_and_echoes_the_rest() {
    let input = fixture_text("carto-plain.yaml");
    let o = review_stdin(&input, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("reviewed: 11 patched, 0 denied, 0 unreadable"),
        "{}",
        o.stderr
    );
    let docs_in: Vec<&str> = input.split("\n---\n").collect();
    let docs_out: Vec<&str> = o.stdout.split("\n---\n").collect();
    assert_eq!(docs_in.len(), docs_out.len());
    let mut changed = 0;
    for (a, b) in docs_in.iter().zip(&docs_out) {
        if a != b {
            changed += 1;
            assert!(
                b.contains("kind: ServiceAccount")
                    || b.contains("serviceAccountName: carto-common-backend"),
                "only targets change:\n{b}"
            );
            assert!(b.contains("workload-identity.carto.com/config-hash"), "{b}");
        }
    }
    assert_eq!(changed, 11);
    assert_eq!(
        o.stdout
            .matches("value: carto-wi@acme-analytics.iam.gserviceaccount.com")
            .count(),
        11
    );
}

#[test]
fn review_of_its_own_output_changes_nothing() {
    let first = review_stdin(&fixture_text("carto-plain.yaml"), &[]);
    assert_eq!(first.code, 0);
    let second = review_stdin(&first.stdout, &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.stdout, first.stdout);
    assert!(
        second.stderr.contains("reviewed: 0 patched"),
        "{}",
        second.stderr
    );
    // Through a file too.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("out.yaml");
    std::fs::write(&f, &first.stdout).unwrap();
    let third = run(
        &[
            "review",
            "-f",
            f.to_str().unwrap(),
            "--config",
            &path("configmap-valid.yaml"),
        ],
        None,
    );
    assert_eq!(third.stdout, first.stdout);
}

#[test]
fn review_output_patch_emits_json_lines() {
    let o = review_stdin(&fixture_text("carto-plain.yaml"), &["--output", "patch"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 11);
    for l in &lines {
        assert!(
            l["kind"].is_string() && l["name"].is_string() && l["namespace"] == "carto",
            "{l}"
        );
        assert!(l["patch"].as_array().is_some_and(|p| !p.is_empty()), "{l}");
    }
    let o = review_stdin(
        &fixture_text("carto-plain.yaml"),
        &["-o", "patch", "--deployments", "carto-workspace-api"],
    );
    assert_eq!(o.stdout.lines().count(), 2, "{}", o.stdout);
}

#[test]
fn review_exits_1_when_something_would_be_denied() {
    let input = format!(
        "{}---\n{}",
        fixture_text("configmap-invalid.yaml"),
        fixture_text("carto-manual-wi.yaml")
    );
    let o = review_stdin(&input, &[]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("denied: ConfigMap carto/carto-workload-identity"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("GKE_CLUSTER_PROJET"), "{}", o.stderr);
    // The invalid namespace config means the carto objects get no injection, only a warning.
    assert!(o.stderr.contains("is invalid"), "{}", o.stderr);
    // With --enforcement warn the same stream passes, with warnings.
    let o = review_stdin(&input, &["--enforcement", "warn"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("warning:"), "{}", o.stderr);
}

#[test]
fn review_require_config_denies_in_namespaces_without_one() {
    // The --config file is the default for every namespace, so a broken namespace ConfigMap
    // is what leaves a namespace without a usable config.
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: carto-workload-identity\n  namespace: team\ndata: {}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: carto-common-backend\n  namespace: team\n";
    let o = review_stdin(broken, &["--require-config"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("denied: ServiceAccount team/carto-common-backend"),
        "{}",
        o.stderr
    );
}

#[test]
fn review_unreadable_input_exits_2() {
    let cfg = path("configmap-valid.yaml");
    let o = run(
        &["review", "-f", "/nonexistent.yaml", "--config", &cfg],
        None,
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("cannot read /nonexistent.yaml"),
        "{}",
        o.stderr
    );
    let o = run(
        &[
            "review",
            "-f",
            &path("carto-plain.yaml"),
            "--config",
            "/nonexistent.yaml",
        ],
        None,
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--config"), "{}", o.stderr);
    // Both from standard input cannot work: said so, instead of reviewing an empty stream.
    let o = run(
        &["review", "-f", "-", "--config", "-"],
        Some(&fixture_text("configmap-valid.yaml")),
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("cannot both read standard input"),
        "{}",
        o.stderr
    );
    assert!(o.stdout.is_empty());
    let o = run_bytes(
        &["review", "-f", "-", "--config", &cfg],
        Some(b"\xff\xfe binary"),
    );
    assert_eq!(o.code, 2);
    // A document that is not YAML: reported with its line, the rest still reviewed.
    let input = format!(
        "{}---\nkey: [unclosed\n",
        fixture_text("carto-manual-wi.yaml")
    );
    let o = review_stdin(&input, &[]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("error: document at line"), "{}", o.stderr);
    assert!(o.stderr.contains("3 patched"), "{}", o.stderr);
}

#[test]
fn review_with_an_invalid_config_lists_its_problems() {
    let o = run(
        &[
            "review",
            "-f",
            &path("carto-plain.yaml"),
            "--config",
            &path("configmap-invalid.yaml"),
        ],
        None,
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("the ConfigMap is invalid (4 problems)"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("CONNECTION_OWNER_ID"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    // A --config that holds no ConfigMap.
    let o = run(
        &[
            "review",
            "-f",
            &path("carto-plain.yaml"),
            "--config",
            &path("config.env"),
        ],
        None,
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no ConfigMap found"), "{}", o.stderr);
}

#[test]
fn review_what_new_users_try() {
    // Empty input, comments only: nothing to do.
    for input in ["", "# nothing\n", "---\n"] {
        let o = review_stdin(input, &[]);
        assert_eq!(o.code, 0, "{input:?}: {}", o.stderr);
        assert!(
            o.stderr
                .contains("reviewed: 0 patched, 0 denied, 0 unreadable"),
            "{}",
            o.stderr
        );
    }
    // Garbage.
    for input in ["hello world\n", "{{ .Values.x }}\n", "\t- a: [\n"] {
        let o = review_stdin(input, &[]);
        assert_eq!(o.code, 2, "{input:?}: {}", o.stderr);
        assert!(
            o.stderr.contains("error: document at line 1"),
            "{input:?}: {}",
            o.stderr
        );
    }
    // A Secret and a kubectl List are just objects: echoed, or patched inside.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  a: b\n";
    let o = review_stdin(secret, &[]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout, secret);
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: carto-common-backend\n    namespace: carto\n";
    let o = review_stdin(list, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(EMAIL), "{}", o.stdout);
    // CRLF input.
    let o = review_stdin(&fixture_text("carto-plain.yaml").replace('\n', "\r\n"), &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("reviewed: 11 patched"), "{}", o.stderr);
    // --namespace for objects that name none.
    let sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: carto-common-backend\n";
    let o = review_stdin(sa, &["-o", "patch", "-n", "analytics"]);
    assert!(
        o.stdout.contains("\"namespace\":\"analytics\""),
        "{}",
        o.stdout
    );
    // A bad enforcement value is a usage error.
    let o = review_stdin(sa, &["--enforcement", "strict"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("deny, warn, audit"), "{}", o.stderr);
}

// ---------------------------------------------------------------- version and help

#[test]
fn version() {
    let o = run(&["version"], None);
    assert_eq!(o.code, 0);
    assert_eq!(
        o.stdout,
        format!("carto-wi-webhook {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = run(&["--version"], None);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_works_for_every_subcommand() {
    let o = run(&["--help"], None);
    assert_eq!(o.code, 0);
    for sub in [
        "serve", "check", "review", "certs", "plan", "status", "version",
    ] {
        assert!(o.stdout.contains(sub), "{sub} missing from:\n{}", o.stdout);
    }
    let expect: [(&str, &[&str]); 7] = [
        (
            "plan",
            &[
                "--filename",
                "--delete",
                "--kubeconfig",
                "--webhook-namespace",
                "--all-namespaces",
                "--output",
                "--extra-env",
                "--object-opt-out",
                "--exclude-namespaces",
            ],
        ),
        (
            "status",
            &[
                "--kubeconfig",
                "--namespace",
                "--all-namespaces",
                "--output",
            ],
        ),
        (
            "check",
            &[
                "--filename",
                "--env-file",
                "--namespace",
                "--service-account",
            ],
        ),
        (
            "review",
            &[
                "--filename",
                "--config",
                "--namespace",
                "--output",
                "--deployments",
                "--include-init-containers",
                "--enforcement",
                "--require-config",
            ],
        ),
        ("serve", &["Usage"]),
        ("certs", &["Usage"]),
        ("version", &["Usage"]),
    ];
    for (sub, flags) in expect {
        for form in [vec![sub, "--help"], vec!["help", sub]] {
            let o = run(&form, None);
            assert_eq!(o.code, 0, "{form:?}: {}", o.stderr);
            for f in flags {
                assert!(o.stdout.contains(f), "{form:?} lacks {f}:\n{}", o.stdout);
            }
        }
    }
    // No subcommand: usage on stderr, exit 2.
    let o = run(&[], None);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("Usage"), "{}", o.stderr);
}

// ---------------------------------------------------------------- edge-case Deployments

#[test]
fn review_edge_case_deployments() {
    let input = fixture_text("edge-deployments.yaml");
    // Without --object-opt-out, the opted-out object and the skipped sidecar are injected too.
    let strict = review_stdin(&input, &[]);
    assert!(
        strict.stderr.contains("reviewed: 4 patched"),
        "{}",
        strict.stderr
    );
    assert!(
        strict.stderr.contains("is ignored") && strict.stderr.contains("--object-opt-out"),
        "{}",
        strict.stderr
    );
    let o = review_stdin(&input, &["--object-opt-out"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("reviewed: 3 patched, 0 denied, 0 unreadable"),
        "{}",
        o.stderr
    );
    // The replacements are warned about, naming the container and the old values.
    assert!(o.stderr.contains("\"old-billing-project\""), "{}", o.stderr);
    assert!(o.stderr.contains("was valueFrom"), "{}", o.stderr);
    let docs: Vec<&str> = o.stdout.split("\n---\n").collect();
    let doc = |name: &str| {
        *docs
            .iter()
            .find(|d| d.contains(&format!("name: {name}\n")))
            .unwrap()
    };
    // Opted out: byte for byte.
    let opted_in = input
        .split("\n---\n")
        .find(|d| d.contains("name: edge-opted-out\n"))
        .unwrap();
    assert_eq!(doc("edge-opted-out"), opted_in);
    // Deprecated serviceAccount: injected, template metadata created.
    assert!(doc("edge-deprecated-sa").contains(EMAIL));
    assert!(doc("edge-deprecated-sa").contains("workload-identity.carto.com/config-hash"));
    // Drift: no valueFrom left, every billing entry has the configured value, proxy skipped.
    let drift = doc("edge-drift");
    assert!(!drift.contains("valueFrom:"), "{drift}");
    assert!(!drift.contains("old-billing-project"), "{drift}");
    assert_eq!(drift.matches("value: acme-gke-prod").count(), 2, "{drift}");
    assert!(
        drift.contains("env: null"),
        "the skipped sidecar keeps env: null\n{drift}"
    );
    // Init containers: off by default, on with the flag.
    assert!(
        !doc("edge-init").contains("migrate\n        env"),
        "{}",
        doc("edge-init")
    );
    let o2 = review_stdin(
        &input,
        &[
            "--object-opt-out",
            "--include-init-containers",
            "-o",
            "patch",
        ],
    );
    assert!(
        o2.stdout
            .contains("/spec/template/spec/initContainers/0/env"),
        "{}",
        o2.stdout
    );
    // And the output is a fixed point.
    let again = review_stdin(&o.stdout, &["--object-opt-out"]);
    assert_eq!(again.stdout, o.stdout);
    assert!(
        again.stderr.contains("reviewed: 0 patched"),
        "{}",
        again.stderr
    );
}

#[test]
fn oversized_inputs_are_refused_unread_naming_the_flag() {
    let big = format!("# {}\n", "x".repeat(1024 * 1024 + 1));
    let o = run(&["check", "-f", "-"], Some(&big));
    assert_eq!(o.code, 2, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr
            .contains("--filename: standard input is larger than the 1048576 byte limit"),
        "{}",
        o.stderr
    );
    let o = run(
        &["review", "-f", &path("carto-plain.yaml"), "--config", "-"],
        Some(&big),
    );
    assert_eq!(o.code, 2, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("--config: standard input is larger than"),
        "{}",
        o.stderr
    );
}

// ---------------------------------------------------------------- plan, status, kubectl plugin

/// The control plane's kubectl (built and cached by tests/controlplane/build.sh).
fn kubectl() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/controlplane/build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/controlplane/build.sh");
    assert!(out.status.success(), "tests/controlplane/build.sh failed");
    let dir = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(dir.lines().last().expect("the bin dir").trim()).join("kubectl")
}

#[test]
fn installed_as_kubectl_carto_wi_it_answers_kubectl_carto_wi() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-carto_wi");
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    let kubectl = kubectl();
    let through_kubectl = |args: &[&str]| {
        let out = Command::new(&kubectl)
            .args(args)
            .env_clear()
            .env("PATH", dir.path())
            .env("HOME", dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, list, err) = through_kubectl(&["plugin", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(list.contains(&plugin.display().to_string()), "{list}");
    let (code, help, err) = through_kubectl(&["carto-wi", "status", "--help"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(help.contains("Usage: kubectl carto-wi status"), "{help}");
    assert!(help.contains("--all-namespaces"), "{help}");
    let direct = Command::new(&plugin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&direct.stdout);
    assert!(direct.status.success());
    for sub in ["plan", "status"] {
        assert!(
            help.contains(&format!("  {sub} ")),
            "{sub} missing from:\n{help}"
        );
    }
}

#[test]
fn plan_and_status_without_a_cluster_exit_1_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "not: [a kubeconfig").unwrap();
    let flag = format!("--kubeconfig={}", kubeconfig.display());
    let o = run(&["status", &flag], None);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.starts_with("error: --kubeconfig "), "{}", o.stderr);
    let o = run(&["plan", "-f", &path("configmap-valid.yaml"), &flag], None);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.starts_with("error: --kubeconfig "), "{}", o.stderr);
    // The file is read and checked before the cluster is.
    let no_ns = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: carto-workload-identity}\n";
    let o = run(&["plan", "-f", "-", &flag], Some(no_ns));
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("set metadata.namespace"), "{}", o.stderr);
    let o = run(&["plan", "-f", "-", "-n", "a", "-A", &flag], Some(no_ns));
    assert_eq!(o.code, 2, "-n and -A conflict: {}", o.stderr);
}
