//! The offline commands through the library: `check_config_map`, `check_env_file`,
//! `review_stream`, and the inputs a new user would try.

use carto_wi_webhook::config::{ConfigEntry, config_from_object};
use carto_wi_webhook::offline::{
    self, OutputFormat, check_config_map, check_env_file, review_stream,
};
use carto_wi_webhook::settings::Settings;
use serde_json::Value;

use crate::common::*;

fn valid() -> ConfigEntry {
    ConfigEntry::from_result(config_from_object(
        &fixture_objects("configmap-valid.yaml")[0],
        &allowed(),
    ))
}

fn review(input: &str) -> offline::ReviewReport {
    review_stream(input, valid(), &settings(), "default", OutputFormat::Yaml)
}

static ALLOWED: std::sync::LazyLock<carto_wi_webhook::config::ExtraEnvAllowlist> =
    std::sync::LazyLock::new(allowed);

/// What `check` runs against: `namespace`, `service_account`, the tests' allowlist.
fn cx<'a>(namespace: Option<&'a str>, service_account: &'a str) -> offline::CheckContext<'a> {
    offline::CheckContext {
        namespace,
        service_account,
        allowed: &ALLOWED,
    }
}

const BINDING: &str = "gcloud iam service-accounts add-iam-policy-binding carto-wi@acme-analytics.iam.gserviceaccount.com --role roles/iam.workloadIdentityUser --member \"serviceAccount:acme-gke-prod.svc.id.goog[carto/carto-common-backend]\"";

#[test]
fn check_valid_config_map_prints_the_binding() {
    let r = check_config_map(&fixture("configmap-valid.yaml"), cx(None, SA));
    assert!(r.ok, "{}", r.text);
    assert!(r.text.contains("is valid (config-hash "), "{}", r.text);
    assert!(r.text.contains(BINDING), "{}", r.text);
    // The namespace comes from the ConfigMap; no placeholder hint then.
    assert!(!r.text.contains("NAMESPACE"), "{}", r.text);
    for (k, v) in acme_env() {
        assert!(r.text.contains(&format!("{k}={v}")), "{}", r.text);
    }
    // --namespace and --service-account win.
    let r = check_config_map(&fixture("configmap-valid.yaml"), cx(Some("prod"), "my-sa"));
    assert!(r.text.contains("svc.id.goog[prod/my-sa]"), "{}", r.text);
}

#[test]
fn check_invalid_config_map_names_every_problem() {
    let r = check_config_map(&fixture("configmap-invalid.yaml"), cx(None, SA));
    assert!(!r.ok);
    assert!(r.text.contains("is invalid (4 problems)"), "{}", r.text);
    assert!(
        r.text
            .contains(&format!("{OWNER_ID}: required key is missing")),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(&format!(
            "{SA_EMAIL}: \"carto-wi@acme-analytics.iam.gserviceaccount\""
        )),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("did you mean GKE_CLUSTER_PROJECT?"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("leading or trailing whitespace"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("gcloud"), "{}", r.text);
}

#[test]
fn check_env_file_without_namespace_uses_a_placeholder() {
    let r = check_env_file(&fixture("config.env"), cx(None, SA));
    assert!(r.ok, "{}", r.text);
    assert!(
        r.text.contains("warning: GKE_CLUSTER_PROJECT not set"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("svc.id.goog[NAMESPACE/carto-common-backend]"),
        "{}",
        r.text
    );
    assert!(r.text.contains("replace NAMESPACE"), "{}", r.text);
    assert!(
        r.text.contains("WORKSPACE_SYNC_DATA_ENABLED=true"),
        "{}",
        r.text
    );
    let bad = check_env_file(
        "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT=x\nnot a pair\n",
        cx(Some("carto"), SA),
    );
    assert!(!bad.ok);
    assert!(bad.text.contains("line 2"), "{}", bad.text);
}

#[test]
fn check_what_new_users_feed_it() {
    let cases: [(&str, &str); 8] = [
        ("", "no ConfigMap"),
        ("# just a comment\n", "no ConfigMap"),
        (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: carto-workload-identity\nstringData:\n  a: b\n",
            "no ConfigMap",
        ),
        ("{{ not yaml", "error"),
        ("\u{0}\u{1}binary", "error"),
        ("- a\n- b\n", "no ConfigMap"),
        ("kind: ConfigMap\ndata: [1, 2]\n", "data must be a map"),
        (
            "kind: ConfigMap\nmetadata: {name: a}\n---\nkind: ConfigMap\nmetadata: {name: b}\n",
            "none is named",
        ),
    ];
    for (input, want) in cases {
        let r = check_config_map(input, cx(None, SA));
        assert!(!r.ok, "{input:?}");
        assert!(r.text.contains(want), "{input:?}: {}", r.text);
    }
}

#[test]
fn check_accepts_crlf_and_a_kubectl_list() {
    let crlf = fixture("configmap-valid.yaml").replace('\n', "\r\n");
    let r = check_config_map(&crlf, cx(None, SA));
    assert!(r.ok, "{}", r.text);
    assert!(r.text.contains(BINDING), "{}", r.text);
    // `kubectl get configmap -l ... -o yaml` gives a List.
    let list = format!(
        "apiVersion: v1\nkind: List\nmetadata: {{}}\nitems:\n{}",
        fixture("configmap-valid.yaml")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .enumerate()
            .map(|(i, l)| if i == 0 {
                format!("- {l}\n")
            } else {
                format!("  {l}\n")
            })
            .collect::<String>()
    );
    let r = check_config_map(&list, cx(None, SA));
    assert!(r.ok, "{}", r.text);
    assert!(r.text.contains(BINDING), "{}", r.text);
}

#[test]
fn review_reads_a_multi_document_stream() {
    let input = format!(
        "{}---\n{}",
        fixture("carto-manual-wi.yaml"),
        fixture("configmap-valid.yaml")
    );
    // The manual procedure's result is already right except for the config hash stamps.
    let r = review(&input);
    assert_eq!(r.errors, 0, "{}", r.stderr);
    assert_eq!(r.denied, 0, "{}", r.stderr);
    assert_eq!(r.patched, 3, "{}", r.stderr);
}

#[test]
fn review_denials_are_reported() {
    let input = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: carto-common-backend\n  annotations:\n    iam.gke.io/gcp-service-account: not-an-email\n---\n";
    let r = review(input);
    // Mutation replaces the bad annotation, so validation then passes...
    assert_eq!(r.denied, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not-an-email"), "{}", r.stderr);
    // ...but an opted-out object keeps it, and a config map in the stream is validated.
    let input = format!("{}---\n{input}", fixture("configmap-invalid.yaml"));
    let r = review(&input);
    assert_eq!(r.denied, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("denied: ConfigMap carto/carto-workload-identity"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("4 problems"), "{}", r.stderr);
}

#[test]
fn review_uses_a_config_map_in_the_stream_for_its_namespace() {
    let team_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: carto-workload-identity\n  namespace: team\ndata:\n  WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP: team-project.temp\n  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: team-project\n  WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: team-sa@team-project.iam.gserviceaccount.com\n  WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: auth0|team\n  GKE_CLUSTER_PROJECT: team-project\n";
    let sa = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: carto-common-backend\n  namespace: {ns}\n"
        )
    };
    let r = review(&format!("{team_cm}---\n{}---\n{}", sa("team"), sa("carto")));
    assert_eq!(r.patched, 2, "{}", r.stderr);
    let docs: Vec<&str> = r.stdout.split("---\n").collect();
    assert!(
        docs[1].contains("team-sa@team-project.iam.gserviceaccount.com"),
        "{}",
        docs[1]
    );
    assert!(docs[2].contains(EMAIL_V), "{}", docs[2]);
}

#[test]
fn review_namespace_default_applies_to_objects_without_one() {
    let input = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: carto-common-backend\n";
    let r = review_stream(input, valid(), &settings(), "prod", OutputFormat::Patch);
    let line: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(line["namespace"], "prod");
    // The object itself is not given a namespace in YAML output.
    let r = review_stream(input, valid(), &settings(), "prod", OutputFormat::Yaml);
    assert!(!r.stdout.contains("namespace"), "{}", r.stdout);
}

#[test]
fn review_what_new_users_feed_it() {
    // Empty input and comment-only documents: nothing to do, no error.
    for input in [
        "",
        "\n",
        "# nothing here\n",
        "---\n---\n",
        "# a\n---\n# b\n",
    ] {
        let r = review(input);
        assert_eq!(
            (r.errors, r.denied, r.patched),
            (0, 0, 0),
            "{input:?}: {}",
            r.stderr
        );
        assert_eq!(
            r.stdout.trim_end(),
            input
                .trim_end()
                .trim_start_matches("---\n")
                .trim_end_matches("---"),
            "{input:?}"
        );
    }
    // Garbage: an error naming the line, never a panic; the document is echoed.
    for input in [
        "{{ not yaml\n",
        "just a string\n",
        "- a\n- b\n",
        "apiVersion: v1\n",
        "kind: Deployment\n",
        "~\n",
        "[1, 2",
    ] {
        let r = review(input);
        assert_eq!(r.errors, 1, "{input:?}: {}", r.stderr);
        assert!(r.stderr.contains("line 1"), "{input:?}: {}", r.stderr);
    }
    // A later broken document names its own line.
    let r =
        review("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n---\nkey: [unclosed\n");
    assert_eq!(r.errors, 1);
    assert!(r.stderr.contains("line 6"), "{}", r.stderr);
}

#[test]
fn review_a_kubectl_list() {
    let list = "apiVersion: v1\nkind: List\nmetadata: {}\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: carto-common-backend\n    namespace: carto\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: other\n";
    let r = review(list);
    assert_eq!(r.patched, 1, "{}", r.stderr);
    assert_eq!(r.errors, 0, "{}", r.stderr);
    let out = carto_wi_webhook::yaml::parse(&r.stdout).unwrap();
    assert_eq!(out["kind"], "List");
    assert_eq!(out["items"][0]["metadata"]["annotations"][GCP_SA], EMAIL_V);
    assert!(out["items"][1]["metadata"].get("annotations").is_none());
    let again = review(&r.stdout);
    assert_eq!(again.stdout, r.stdout);
    assert_eq!(again.patched, 0);
}

#[test]
fn review_keeps_crlf_documents_it_does_not_change() {
    let crlf = fixture("carto-plain.yaml").replace('\n', "\r\n");
    let r = review(&crlf);
    assert_eq!(r.errors, 0, "{}", r.stderr);
    assert_eq!(r.patched, 11, "{}", r.stderr);
    // An untouched object is echoed with its CRLF endings.
    assert!(
        r.stdout.contains("  name: carto-notifier\r\n"),
        "CRLF kept for untouched documents"
    );
    let again = review(&r.stdout);
    assert_eq!(again.patched, 0, "{}", again.stderr);
    assert_eq!(again.stdout, r.stdout);
}

#[test]
fn review_with_settings() {
    let input = fixture("carto-plain.yaml");
    let s = Settings {
        deployments: vec![
            "carto-workspace-api".into(),
            "carto-workspace-subscriber".into(),
        ],
        ..settings()
    };
    let r = review_stream(&input, valid(), &s, "default", OutputFormat::Patch);
    let names: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "carto-common-backend",
            "carto-workspace-api",
            "carto-workspace-subscriber"
        ]
    );
}
