//! What the chart's webhook configurations never hold up, on the real API server: the release's
//! own objects (so the webhook can always be installed, upgraded and removed), objects being
//! deleted, and the cluster default ConfigMap's entry while the webhook is down; and what they
//! still enforce: an invalid default ConfigMap is refused with every problem while the webhook
//! runs, a target write is refused while it is down (validating `Fail`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::chart::{
    ACME_VALUES, HELMS, Helm, chart_dir, find, helm, list, objects, run_rendered_container,
    template, wait_ca_bundles,
};
use super::cluster::ControlPlane;
use super::cluster_mode::{CONVERGE, ClusterWebhook, must};
use super::kube::{apply, deployment, exists, get, stderr, text};
use super::process::{free_port, wait_for};

/// The entries of the ValidatingWebhookConfiguration, by name.
const VALIDATE: &str = "validate.workload-identity.carto.com";
const VALIDATE_DEFAULT: &str = "validate-default-config.workload-identity.carto.com";

/// Names of one test release, all its own: its webhooks see only its ServiceAccount and config
/// names, so other scenarios running at the same time are never sent to them.
struct Release {
    name: String,
    ns: String,
    backend: String,
    config: String,
}

impl Release {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ns: format!("{name}-system"),
            backend: format!("{name}-backend"),
            config: format!("{name}-config"),
        }
    }

    /// The objects' name (`cwi.fullname`: the release name does not hold the chart's).
    fn fullname(&self) -> String {
        format!("{}-carto-wi-webhook", self.name)
    }

    /// Chart values: the acme configuration, these names, the webhooks calling `port` on
    /// loopback, then `extra`.
    fn values(&self, port: u16, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = ACME_VALUES.iter().map(|s| (*s).to_owned()).collect();
        for set in [
            format!("webhook.url=https://127.0.0.1:{port}"),
            format!("config.name={}", self.config),
            format!("policy.serviceAccount={}", self.backend),
            "config.gkeClusterProject=acme-gke-prod".to_owned(),
        ] {
            v.extend(["--set".to_owned(), set]);
        }
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A new value for each write, so every `touch` really changes the object.
static TOUCHES: AtomicU64 = AtomicU64::new(0);

/// `kubectl annotate --overwrite` of one object: the write an upgrade or the webhook itself makes.
fn touch(cp: &ControlPlane, ns: &str, object: &str) -> std::process::Output {
    cp.kubectl(
        &[
            "annotate",
            "--overwrite",
            "-n",
            ns,
            object,
            &format!(
                "e2e.carto.com/touched={}",
                TOUCHES.fetch_add(1, Ordering::Relaxed)
            ),
        ],
        None,
    )
}

/// The webhook configurations of the chart with `webhook.failurePolicy.defaultConfig`=`policy`.
fn apply_validating(cp: &ControlPlane, r: &Release, port: u16, policy: &str) {
    let set = format!("webhook.failurePolicy.defaultConfig={policy}");
    let values = r.values(port, &["--set", &set]);
    let objs = objects(&template(cp, &r.name, &r.ns, &strs(&values)).unwrap());
    let vwc = find(&objs, "ValidatingWebhookConfiguration");
    let entry = vwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == VALIDATE_DEFAULT)
        .expect("the default ConfigMap's entry");
    assert_eq!(entry["failurePolicy"], policy);
    must(
        cp.kubectl(&["apply", "-f", "-"], Some(&vwc.to_string())),
        "apply the ValidatingWebhookConfiguration",
    );
}

/// The default ConfigMap of the release, invalid four ways (as the webhook's own scenario).
fn invalid_default(r: &Release) -> String {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": r.config},
        "data": {
            "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP": "acme-analytics.carto_workflows_temp",
            "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT": " acme-gke-prod",
            "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL": "carto-wi@acme-analytics",
            "WORKSPACE_WORKLOAD_IDENTITY_CONECTION_OWNER_ID": "auth0|x"
        }
    })
    .to_string()
}

/// The chart's objects with the webhook running them: an invalid `kubectl apply` of the cluster
/// default ConfigMap (release namespace) is refused naming every problem and stores nothing, a
/// valid one passes, another ConfigMap there is never sent. With the webhook stopped and the
/// default ConfigMap's entry made `Fail`, the webhook's own Deployment, Secret, Lease,
/// ServiceAccount, Service and other ConfigMaps in that namespace are still written (they are
/// never sent), while the default ConfigMap is refused (the entry is live); with the chart's
/// `Ignore` it is written too, so `helm upgrade` never waits on a webhook that is down.
pub fn chart_default_config_validated_own_objects_never_sent(cp: &ControlPlane) {
    let r = Release::new("chartcfg");
    let port = free_port();
    let values = r.values(port, &[]);
    let objs = objects(&template(cp, &r.name, &r.ns, &strs(&values)).unwrap());
    must(
        cp.kubectl(&["create", "namespace", &r.ns], None),
        "create the release namespace",
    );
    must(
        cp.kubectl(&["apply", "-f", "-"], Some(&list(objs.clone()))),
        "apply the chart's objects",
    );
    let sa = find(&objs, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = run_rendered_container(cp, find(&objs, "Deployment"), &r.ns, &sa, port);
    hook.wait_ready();
    // The caBundle reaches all three entries (the default ConfigMap's is the third).
    wait_ca_bundles(cp, &r.fullname());
    default_config_checked(cp, &r);
    let own = own_objects_never_sent(cp, &r, &sa, &hook);
    hook.stop();
    own_objects_written_while_down(cp, &r, port, &own);
}

/// An invalid edit of the default ConfigMap is refused naming every problem and stores nothing;
/// a valid one passes.
fn default_config_checked(cp: &ControlPlane, r: &Release) {
    let before = get(cp, &r.ns, "configmap", &r.config)["data"].clone();
    let out = apply(cp, &r.ns, &invalid_default(r), &[]);
    assert!(
        !out.status.success(),
        "an invalid default ConfigMap must be refused: {}",
        text(&out)
    );
    let err = stderr(&out);
    for needle in [
        VALIDATE_DEFAULT,
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
    assert_eq!(
        get(cp, &r.ns, "configmap", &r.config)["data"],
        before,
        "nothing stored"
    );
    let mut valid = before.clone();
    valid["WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT"] = json!("acme-gke-billing");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": r.config}, "data": valid});
    must(apply(cp, &r.ns, &cm.to_string(), &[]), "a valid edit");
}

/// Writes to the webhook's own objects and another ConfigMap of the release namespace pass, and
/// none reaches the webhook. Returns those objects.
fn own_objects_never_sent(
    cp: &ControlPlane,
    r: &Release,
    sa: &str,
    hook: &ClusterWebhook,
) -> Vec<String> {
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}});
    must(
        apply(cp, &r.ns, &other.to_string(), &[]),
        "another ConfigMap",
    );
    wait_for("the webhook's Lease", CONVERGE, || {
        exists(cp, &r.ns, "lease", &r.fullname()).then_some(())
    });
    let own = vec![
        format!("deployment/{}", r.fullname()),
        format!("secret/{}-tls", r.fullname()),
        format!("lease/{}", r.fullname()),
        format!("serviceaccount/{sa}"),
        format!("service/{}", r.fullname()),
        "configmap/unrelated".to_owned(),
    ];
    for object in &own {
        must(touch(cp, &r.ns, object), object);
    }
    // Of all these writes (and the webhook's own, of its Secret and Lease), only the two edits
    // of the default ConfigMap reached the webhook.
    let reviews = reviews_by_kind(&hook.metrics());
    assert_eq!(reviews, [("ConfigMap".to_owned(), 2.0)], "{reviews:?}");
    own
}

/// With the webhook stopped and the default ConfigMap's entry `Fail`, the webhook's own objects
/// are still written and the default ConfigMap is refused; with the chart's `Ignore` it passes.
fn own_objects_written_while_down(cp: &ControlPlane, r: &Release, port: u16, own: &[String]) {
    apply_validating(cp, r, port, "Fail");
    for object in own {
        let out = touch(cp, &r.ns, object);
        assert!(
            out.status.success(),
            "{object} written with the webhook down: {}",
            text(&out)
        );
    }
    let default = format!("configmap/{}", r.config);
    let out = touch(cp, &r.ns, &default);
    assert!(
        !out.status.success()
            && stderr(&out).contains(&format!("failed calling webhook \"{VALIDATE_DEFAULT}\"")),
        "with Fail and the webhook down the default ConfigMap waits on it: {}",
        text(&out)
    );
    apply_validating(cp, r, port, "Ignore");
    must(touch(cp, &r.ns, &default), "the chart's Ignore: written");
    must(
        cp.kubectl(
            &[
                "delete",
                "mutatingwebhookconfiguration,validatingwebhookconfiguration",
                &r.fullname(),
            ],
            None,
        ),
        "remove the configurations",
    );
}

/// The reviews the webhook answered, summed by kind (kinds with none left out).
fn reviews_by_kind(metrics: &str) -> Vec<(String, f64)> {
    let mut by_kind: Vec<(String, f64)> = Vec::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("carto_wi_admission_requests_total{"))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let kind = series
            .split("kind=\"")
            .nth(1)
            .and_then(|k| k.split('"').next())
            .unwrap_or("")
            .to_owned();
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += value,
            None => by_kind.push((kind, value)),
        }
    }
    by_kind.retain(|(_, n)| *n > 0.0);
    by_kind
}

/// A target Deployment (running as `sa`) with a finalizer, created before any webhook.
fn held_deployment(name: &str, sa: &str) -> String {
    let mut d: Value =
        serde_json::from_str(&deployment(name, sa, &[("app", Value::Null)], json!({}))).unwrap();
    d["metadata"]["finalizers"] = json!(["e2e.carto.com/hold"]);
    d.to_string()
}

/// With each Helm major, against the real API server and no webhook process at all (the first
/// install, a crash loop): `helm install` (the chart's validating webhook `Fail`), then a target
/// Deployment with a finalizer is deleted and its finalizer removed, so it is gone, while a new
/// target Deployment is refused (the webhook is really down and `Fail` applies); `helm upgrade`
/// with a changed configuration and `helm uninstall` pass.
pub fn chart_helm_cycle_and_deletion_with_webhook_down(cp: &ControlPlane) {
    for h in HELMS {
        helm_cycle_webhook_down(cp, h);
    }
}

fn helm_cycle_webhook_down(cp: &ControlPlane, h: Helm) {
    let r = Release::new(&format!("down-{}", h.bin));
    let targets = format!("{}-carto", r.name);
    let dead = free_port();
    let m = h.major;
    must(
        cp.kubectl(&["create", "namespace", &targets], None),
        "create the CARTO namespace",
    );
    must(
        apply(cp, &targets, &held_deployment("held", &r.backend), &[]),
        "a held target Deployment",
    );
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let values = r.values(dead, &[]);
    let run = |verb: &[&str], extra: &[&str]| {
        let args = [verb, &[chart, "-n", &r.ns][..], &strs(&values), extra].concat();
        let out = helm(cp, h, &args);
        assert!(out.status.success(), "{m} {verb:?}: {}", text(&out));
    };
    run(&["install", &r.name], &["--create-namespace"]);
    assert_validating_policies(cp, &r, m);
    deletion_never_waits(cp, &r, &targets, m);
    run(
        &["upgrade", &r.name],
        &["--set", "config.billingProject=acme-gke-billing"],
    );
    let cm = get(cp, &r.ns, "configmap", &r.config);
    assert_eq!(
        cm["data"]["WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT"], "acme-gke-billing",
        "{m}: the upgrade stored the new configuration"
    );
    let out = helm(cp, h, &["uninstall", &r.name, "-n", &r.ns]);
    assert!(out.status.success(), "{m} uninstall: {}", text(&out));
    for k in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let left = cp.kubectl(&["get", k, &r.fullname(), "-o", "name"], None);
        assert!(!left.status.success(), "{m}: {k} left after uninstall");
    }
    assert!(!exists(cp, &r.ns, "deployment", &r.fullname()), "{m}");
}

/// The installed validating entries: the main one `Fail`, the default ConfigMap's `Ignore`.
fn assert_validating_policies(cp: &ControlPlane, r: &Release, m: &str) {
    let vwc: Value = serde_json::from_str(&must(
        cp.kubectl(
            &[
                "get",
                "validatingwebhookconfiguration",
                &r.fullname(),
                "-o",
                "json",
            ],
            None,
        ),
        "get the ValidatingWebhookConfiguration",
    ))
    .unwrap();
    let policies: Vec<(&Value, &Value)> = vwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (&w["name"], &w["failurePolicy"]))
        .collect();
    assert_eq!(
        policies,
        [
            (&json!(VALIDATE), &json!("Fail")),
            (&json!(VALIDATE_DEFAULT), &json!("Ignore"))
        ],
        "{m}"
    );
}

/// No webhook answers: a new target Deployment is refused (validating `Fail`), while the held
/// one is deleted, its finalizer removed, and gone.
fn deletion_never_waits(cp: &ControlPlane, r: &Release, targets: &str, m: &str) {
    let out = apply(
        cp,
        targets,
        &deployment("new", &r.backend, &[("app", Value::Null)], json!({})),
        &[],
    );
    assert!(
        !out.status.success()
            && stderr(&out).contains(&format!("failed calling webhook \"{VALIDATE}\"")),
        "{m}: a target write is refused while the webhook is down: {}",
        text(&out)
    );
    assert!(!exists(cp, targets, "deployment", "new"), "{m}");
    must(
        cp.kubectl(
            &[
                "delete",
                "-n",
                targets,
                "deployment",
                "held",
                "--wait=false",
            ],
            None,
        ),
        "delete the held Deployment",
    );
    let held = get(cp, targets, "deployment", "held");
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "{m}: {held}"
    );
    let out = cp.kubectl(
        &[
            "patch",
            "-n",
            targets,
            "deployment",
            "held",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{m}: removing the finalizer of a Deployment being deleted must not wait on the webhook: {}",
        text(&out)
    );
    wait_for(&format!("{m}: the held Deployment gone"), CONVERGE, || {
        (!exists(cp, targets, "deployment", "held")).then_some(())
    });
}
