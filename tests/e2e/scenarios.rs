//! The scenarios: each asserts what the real API server stored or answered.

use std::time::Duration;

use serde_json::{Value, json};

use super::cluster::ControlPlane;
use super::kube::*;
use super::webhook::{CONFIG, EXPECTED_ENV, Webhook};

const PLAIN: &str = include_str!("../fixtures/carto-plain.yaml");
const SA: &str = "carto-common-backend";
const HASH_KEY: &str = "workload-identity.carto.com/config-hash";

fn kinds(v: &Value, allowed: &[&str]) -> bool {
    allowed.contains(&v["kind"].as_str().unwrap_or(""))
}

fn deployments(cp: &ControlPlane, ns: &str) -> Vec<Value> {
    let out = cp.kubectl(&["get", "deployments", "-n", ns, "-o", "json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"].as_array().unwrap().clone()
}

fn runs_as_target(d: &Value) -> bool {
    d["spec"]["template"]["spec"]["serviceAccountName"] == SA
}

/// The CARTO plain install through `kubectl apply`: every carto-common-backend Deployment gets the
/// variables and the config-hash, the ServiceAccount the annotation, and the other Deployments
/// are stored exactly as in a namespace the webhook does not see. Re-applying changes nothing.
pub fn plain_install_and_reapply(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "plain", CONFIG, &[]);
    hook.install(cp, "Fail");
    namespace(cp, "plain", Some("plain"), &[]);
    namespace(cp, "plain-reference", None, &[]);
    let manifest = list_without_namespace(PLAIN, |v| {
        kinds(v, &["ServiceAccount", "ConfigMap", "Service", "Deployment"])
    });
    for ns in ["plain", "plain-reference"] {
        let out = apply(cp, ns, &manifest, &[]);
        assert!(
            out.status.success(),
            "apply plain install in {ns}: {}",
            text(&out)
        );
    }
    let sa = get(cp, "plain", "serviceaccount", SA);
    assert_eq!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "carto-wi@acme-analytics.iam.gserviceaccount.com"
    );
    let reference = get(cp, "plain-reference", "serviceaccount", SA);
    assert!(
        reference["metadata"]["annotations"]
            .get("iam.gke.io/gcp-service-account")
            .is_none()
    );

    let injected = deployments(cp, "plain");
    let untouched = deployments(cp, "plain-reference");
    assert_eq!(injected.len(), 14);
    let targets = injected.iter().filter(|d| runs_as_target(d)).count();
    assert_eq!(targets, 10, "10 of the 14 CARTO Deployments run as {SA}");
    for d in &injected {
        let name = d["metadata"]["name"].as_str().unwrap();
        let twin = untouched
            .iter()
            .find(|r| r["metadata"]["name"] == name)
            .unwrap();
        if runs_as_target(d) {
            for c in 0..d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len()
            {
                assert_injected(d, "containers", c);
            }
            assert_eq!(
                d["spec"]["template"]["metadata"]["annotations"][HASH_KEY]
                    .as_str()
                    .map(str::len),
                Some(12),
                "{name} carries the config hash"
            );
            // The init container is left alone without --include-init-containers.
            if let Some(inits) = d["spec"]["template"]["spec"]["initContainers"].as_array() {
                for i in 0..inits.len() {
                    assert_not_injected(d, "initContainers", i);
                }
            }
        } else {
            assert_eq!(
                d["spec"], twin["spec"],
                "{name} is stored exactly as without the webhook"
            );
            // kubectl's last-applied record names the namespace; everything else must match.
            let without_record = |v: &Value| {
                let mut a = v["metadata"]["annotations"].clone();
                if let Some(m) = a.as_object_mut() {
                    m.remove("kubectl.kubernetes.io/last-applied-configuration");
                }
                a
            };
            assert_eq!(
                without_record(d),
                without_record(twin),
                "{name} annotations"
            );
            assert_eq!(
                d["metadata"]["labels"], twin["metadata"]["labels"],
                "{name} labels"
            );
        }
    }

    // Re-apply: the patch is idempotent through the real server, so nothing is written.
    let before: Vec<(Value, Value)> = injected
        .iter()
        .map(|d| {
            (
                d["metadata"]["resourceVersion"].clone(),
                d["metadata"]["generation"].clone(),
            )
        })
        .collect();
    let out = apply(cp, "plain", &manifest, &[]);
    assert!(out.status.success(), "re-apply: {}", text(&out));
    let after: Vec<(Value, Value)> = deployments(cp, "plain")
        .iter()
        .map(|d| {
            (
                d["metadata"]["resourceVersion"].clone(),
                d["metadata"]["generation"].clone(),
            )
        })
        .collect();
    assert_eq!(
        before, after,
        "re-applying the same manifests changes no Deployment"
    );
    // kubectl itself reports "configured" for the chart's `env: null` / `initContainers: null`
    // fields (it sends a patch that the server resolves to a no-op, webhook or not): the stored
    // resourceVersions above are the evidence that nothing was written.
    let sa_after = get(cp, "plain", "serviceaccount", SA);
    assert_eq!(
        sa_after["metadata"]["resourceVersion"],
        sa["metadata"]["resourceVersion"]
    );
}

/// `kubectl apply --dry-run=server` shows the mutation and stores nothing.
pub fn dry_run_shows_mutation_and_stores_nothing(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "dryrun", CONFIG, &[]);
    hook.install(cp, "Fail");
    namespace(cp, "dryrun", Some("dryrun"), &[]);
    let manifest = list_without_namespace(PLAIN, |v| {
        kinds(v, &["Deployment"]) && v["metadata"]["name"] == "carto-workspace-api"
    });
    let out = apply(cp, "dryrun", &manifest, &["--dry-run=server", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = if shown["kind"] == "List" {
        shown["items"][0].clone()
    } else {
        shown
    };
    assert_injected(&d, "containers", 0);
    assert!(!exists(cp, "dryrun", "deployment", "carto-workspace-api"));
}

/// An incomplete and malformed ConfigMap is refused, and the message lists every problem.
pub fn invalid_configmap_refused_with_every_problem(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "badconfig", CONFIG, &[]);
    hook.install(cp, "Fail");
    namespace(cp, "badconfig", Some("badconfig"), &[]);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity"},
        "data": {
            "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP": "acme-analytics.carto_workflows_temp",
            "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT": " acme-gke-prod",
            "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL": "carto-wi@acme-analytics",
            "WORKSPACE_WORKLOAD_IDENTITY_CONECTION_OWNER_ID": "auth0|x"
        }
    });
    let out = apply(cp, "badconfig", &cm.to_string(), &[]);
    assert!(
        !out.status.success(),
        "an invalid ConfigMap must be refused: {}",
        text(&out)
    );
    let err = stderr(&out);
    for needle in [
        "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
        "leading or trailing whitespace",
        "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL",
        "iam.gserviceaccount.com",
        "WORKSPACE_WORKLOAD_IDENTITY_CONECTION_OWNER_ID: unknown key; did you mean WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
        "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: required key is missing",
        "4 problems",
    ] {
        assert!(err.contains(needle), "message lacks {needle:?}:\n{err}");
    }
    assert!(!exists(
        cp,
        "badconfig",
        "configmap",
        "carto-workload-identity"
    ));
    // A valid one is accepted.
    let out = apply(cp, "badconfig", CONFIG, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

fn partial_env() -> Value {
    json!([
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT", "value": "hand-set-project"},
        {"name": "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP", "value": "acme-analytics.carto_workflows_temp"}
    ])
}

/// A hand-written partial set is completed by mutation (kubectl prints the override warning);
/// with the mutating webhook removed it is refused (deny) or allowed with warnings (warn).
pub fn partial_env_completed_refused_or_warned(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "partial", CONFIG, &[]);
    hook.install(cp, "Fail");
    namespace(cp, "partial", Some("partial"), &[]);
    let out = apply(
        cp,
        "partial",
        &deployment("api", SA, &[("api", partial_env())], json!({})),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Warning:")
            && err.contains("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT was \"hand-set-project\""),
        "kubectl shows the override warning:\n{err}"
    );
    let d = get(cp, "partial", "deployment", "api");
    assert_injected(&d, "containers", 0);
    let env = env_of(&d, "containers", 0);
    assert_eq!(
        env[0],
        ("LOG_LEVEL".into(), Some("info".into())),
        "other variables stay first, untouched"
    );
    assert_eq!(env.len(), 5);

    hook.remove_mutating(cp);
    let out = wait_refused(cp, "partial", "api2");
    let err = stderr(&out);
    assert!(err.contains("denied the request"), "{err}");
    for needle in [
        "missing WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL, WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
        "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT is \"hand-set-project\"",
    ] {
        assert!(err.contains(needle), "denial lacks {needle:?}:\n{err}");
    }
    assert!(!exists(cp, "partial", "deployment", "api2"));

    let warn = Webhook::start(cp, "warnmode", CONFIG, &["--enforcement=warn"]);
    warn.install(cp, "Fail");
    warn.remove_mutating(cp);
    namespace(cp, "warnmode", Some("warnmode"), &[]);
    let out = apply(
        cp,
        "warnmode",
        &deployment("api", SA, &[("api", partial_env())], json!({})),
        &[],
    );
    assert!(out.status.success(), "warn mode allows: {}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Warning:") && err.contains("sets only some Workload Identity variables"),
        "{err}"
    );
    let d = get(cp, "warnmode", "deployment", "api");
    assert_eq!(
        env_of(&d, "containers", 0).len(),
        3,
        "stored as sent: no mutation"
    );
}

/// Removing a webhook configuration takes a moment to reach the API server's informer.
fn wait_refused(cp: &ControlPlane, ns: &str, name: &str) -> std::process::Output {
    let manifest = deployment(name, SA, &[("api", partial_env())], json!({}));
    super::process::wait_for(
        "validation without mutation",
        Duration::from_secs(30),
        || {
            let out = apply(cp, ns, &manifest, &["--dry-run=server"]);
            (!out.status.success()).then_some(())
        },
    );
    apply(cp, ns, &manifest, &[])
}

/// Opted-out namespaces are not touched; skipped containers keep their env (the platform allows
/// object opt-out here).
pub fn opt_out_namespace_and_skipped_container(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "optout", CONFIG, &["--object-opt-out"]);
    hook.install(cp, "Fail");
    namespace(cp, "optout-on", Some("optout"), &[]);
    namespace(
        cp,
        "optout-off",
        Some("optout"),
        &[("workload-identity.carto.com/inject", "false")],
    );
    let router = list_without_namespace(PLAIN, |v| {
        v["metadata"]["name"] == "carto-router" && kinds(v, &["Deployment"])
    });
    let out = apply(cp, "optout-off", &router, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let d = get(cp, "optout-off", "deployment", "carto-router");
    assert_not_injected(&d, "containers", 0);
    assert_not_injected(&d, "containers", 1);

    let mut skipped: Value = serde_json::from_str(&router).unwrap();
    skipped["items"][0]["metadata"]["annotations"] =
        json!({"workload-identity.carto.com/skip-containers": "router-metrics"});
    let out = apply(cp, "optout-on", &skipped.to_string(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let d = get(cp, "optout-on", "deployment", "carto-router");
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let http = names.iter().position(|n| *n == "router-http").unwrap();
    let metrics = names.iter().position(|n| *n == "router-metrics").unwrap();
    assert_injected(&d, "containers", http);
    assert_not_injected(&d, "containers", metrics);
}

/// Webhook down: unrelated writes still succeed (match conditions keep the API server from
/// calling it); target objects follow the failure policy (Fail: refused).
pub fn webhook_down_failure_policy(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "down", CONFIG, &[]);
    hook.install(cp, "Fail");
    namespace(cp, "down", Some("down"), &[]);
    let out = apply(
        cp,
        "down",
        &deployment("before", SA, &[("api", Value::Null)], json!({})),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(hook.stop(), Some(0), "SIGTERM drains and exits 0");

    let other_cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}, "data": {"a": "b"}});
    let out = apply(cp, "down", &other_cm.to_string(), &[]);
    assert!(
        out.status.success(),
        "unrelated ConfigMap while the webhook is down: {}",
        text(&out)
    );
    let out = apply(
        cp,
        "down",
        &deployment("web", "default", &[("web", Value::Null)], json!({})),
        &[],
    );
    assert!(
        out.status.success(),
        "non-target Deployment while the webhook is down: {}",
        text(&out)
    );
    let other_sa =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "someone-else"}});
    let out = apply(cp, "down", &other_sa.to_string(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let out = apply(
        cp,
        "down",
        &deployment("after", SA, &[("api", Value::Null)], json!({})),
        &[],
    );
    assert!(
        !out.status.success(),
        "failurePolicy Fail refuses targets while the webhook is down"
    );
    assert!(
        stderr(&out).contains("failed calling webhook"),
        "{}",
        text(&out)
    );
    assert!(!exists(cp, "down", "deployment", "after"));
}

/// The serving certificate is replaced on disk while the API server keeps calling: no admission
/// fails, and the webhook reports the reload.
pub fn certificate_rotation_under_load(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "rotate", CONFIG, &["--reload-interval=200ms"]);
    hook.install(cp, "Fail");
    namespace(cp, "rotate", Some("rotate"), &[]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let rotator = s.spawn(|| {
            for i in 0..3 {
                std::thread::sleep(Duration::from_millis(700));
                let next =
                    hook.ca
                        .server(&hook.dir, &format!("next-{i}"), &["localhost", "127.0.0.1"]);
                // Replace atomically, key first then certificate, as a Secret volume update would.
                let tmp_key = hook.dir.join("tls.key.tmp");
                let tmp_cert = hook.dir.join("tls.crt.tmp");
                std::fs::copy(&next.key, &tmp_key).unwrap();
                std::fs::copy(&next.cert, &tmp_cert).unwrap();
                std::fs::rename(&tmp_key, &hook.key).unwrap();
                std::fs::rename(&tmp_cert, &hook.cert).unwrap();
            }
            std::thread::sleep(Duration::from_millis(700));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            n += 1;
            let out = apply(
                cp,
                "rotate",
                &deployment(&format!("d{n}"), SA, &[("api", Value::Null)], json!({})),
                &["--dry-run=server", "-o", "json"],
            );
            assert!(
                out.status.success(),
                "admission {n} failed during rotation: {}",
                text(&out)
            );
            let d: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_injected(&d, "containers", 0);
        }
        rotator.join().unwrap();
        assert!(n >= 5, "only {n} admissions ran during rotation");
    });
    let metrics = hook.metrics();
    let reloads: f64 = metrics
        .lines()
        .find(|l| l.starts_with("carto_wi_tls_reloads_total") && l.contains("success"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        reloads >= 1.0,
        "the webhook reloaded its certificate:\n{metrics}"
    );
}

/// UPDATEs through `kubectl scale` and `kubectl patch` keep the injected values; a patch that
/// changes one is put back by mutation, with a warning.
pub fn updates_keep_injected_values(cp: &ControlPlane) {
    let hook = Webhook::start(cp, "update", CONFIG, &[]);
    hook.install(cp, "Fail");
    namespace(cp, "update", Some("update"), &[]);
    let out = apply(
        cp,
        "update",
        &deployment("api", SA, &[("api", Value::Null)], json!({})),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = cp.kubectl(
        &["scale", "-n", "update", "deployment/api", "--replicas=3"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let d = get(cp, "update", "deployment", "api");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_injected(&d, "containers", 0);

    let out = cp.kubectl(
        &[
            "patch",
            "-n",
            "update",
            "deployment/api",
            "--type=merge",
            "-p",
            r#"{"spec":{"template":{"metadata":{"labels":{"tier":"backend"}}}}}"#,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let d = get(cp, "update", "deployment", "api");
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["tier"],
        "backend"
    );
    assert_injected(&d, "containers", 0);

    let idx = env_of(&d, "containers", 0)
        .iter()
        .position(|(n, _)| n == EXPECTED_ENV[1].0)
        .unwrap();
    let patch = json!([{"op": "replace", "path": format!("/spec/template/spec/containers/0/env/{idx}/value"), "value": "someone-elses-project"}]);
    let out = cp.kubectl(
        &[
            "patch",
            "-n",
            "update",
            "deployment/api",
            "--type=json",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("Warning:"), "{}", text(&out));
    let d = get(cp, "update", "deployment", "api");
    assert_injected(&d, "containers", 0);
}
