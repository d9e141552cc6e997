//! `plan` and `status` against the real API server, while the reconciler runs: for each change,
//! what `plan -o json` printed is exactly what the reconciler then changed (the same objects,
//! the same env and annotation changes), and nothing else changed.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use carto_wi_webhook::plan::diff;
use serde_json::{Value, json};

use super::cluster::ControlPlane;
use super::cluster_mode::*;
use super::kube::{apply, text};

/// (namespace, kind, name) → the object as stored.
type Objects = BTreeMap<(String, String, String), Value>;

/// Run the binary's `plan`/`status` as an operator with the admin kubeconfig.
fn run(cp: &ControlPlane, names: &Names, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carto-wi-webhook"));
    cmd.args(args)
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .arg(format!("--webhook-namespace={}", names.system()))
        .arg(format!("--config-map={}", names.config()))
        .arg(format!("--service-account={}", names.backend()));
    for v in [
        "KUBECONFIG",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(v);
    }
    cmd.output().expect("run carto-wi-webhook")
}

/// `plan -o json -f` of `config_map` (with its namespace) written to a file; exit code and JSON.
fn plan(
    cp: &ControlPlane,
    install: &Install,
    ns: &str,
    values: &Value,
    delete: bool,
) -> (i32, Value) {
    let names = &install.names;
    let mut cm = values.clone();
    cm["metadata"]["namespace"] = json!(ns);
    let file = install.dir.join(format!("plan-{ns}.json"));
    std::fs::write(&file, cm.to_string()).unwrap();
    let file = file.display().to_string();
    let mut args = vec!["plan", "-o", "json", "-A", "-f", &file];
    if delete {
        args.push("--delete");
    }
    let out = run(cp, names, &args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plan printed no JSON ({e}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), json)
}

fn status_code(cp: &ControlPlane, names: &Names, ns: &str) -> i32 {
    let out = run(cp, names, &["status", "-n", ns]);
    out.status.code().unwrap_or(-1)
}

/// Every ServiceAccount and Deployment of `namespaces`.
fn objects(cp: &ControlPlane, namespaces: &[&String]) -> Objects {
    let mut all = Objects::new();
    for ns in namespaces {
        let out = cp.kubectl(
            &["get", "serviceaccounts,deployments", "-n", ns, "-o", "json"],
            None,
        );
        let list: Value = serde_json::from_str(&must(out, "list objects")).unwrap();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let key = (
                ns.to_string(),
                item["kind"].as_str().unwrap_or("").to_owned(),
                item["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            );
            all.insert(key, item);
        }
    }
    all
}

/// What really changed between two reads, as `plan` words changes.
fn real_changes(before: &Objects, after: &Objects) -> BTreeMap<(String, String, String), Value> {
    before
        .iter()
        .filter_map(|(k, b)| {
            let c = diff::changes(b, &after[k]);
            (!c.is_empty()).then(|| (k.clone(), serde_json::to_value(c).unwrap()))
        })
        .collect()
}

/// The changes `plan` printed, keyed the same way.
fn planned(plan: &Value) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    for ns in plan["namespaces"].as_array().into_iter().flatten() {
        for o in ns["objects"].as_array().into_iter().flatten() {
            let key = (
                ns["namespace"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
                o["name"].as_str().unwrap().to_owned(),
            );
            out.insert(key, o["changes"].clone());
        }
    }
    out
}

fn sources(plan: &Value) -> Vec<(String, String, String)> {
    plan["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["namespace"].as_str().unwrap().to_owned(),
                n["sourceBefore"].as_str().unwrap().to_owned(),
                n["sourceAfter"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn config_map(names: &Names, values: &WiValues) -> Value {
    serde_json::from_str(&values.config_map(names)).unwrap()
}

/// Default edited, an override added, the override removed, an invalid config, a namespace
/// opting out: each previewed, applied, converged, and compared.
pub fn cluster_plan_preview_is_what_the_reconciler_does(cp: &ControlPlane) {
    let (install, _hook) = ClusterWebhook::up(cp, "cplan");
    let names = &install.names;
    let [a, b, bad, own, out] = ["a", "b", "bad", "own", "out"].map(|s| names.ns(s));
    for ns in [&a, &b, &own] {
        selected_namespace(cp, names, ns, &[]);
    }
    selected_namespace(cp, names, &out, &[OPT_OUT]);
    // The webhooks do not see `bad` (an invalid ConfigMap can be stored there); the reconciler does.
    unselected_namespace(cp, &bad);
    let all = [&a, &b, &bad, &own, &out];
    for ns in all {
        install_fixtures(cp, names, ns);
    }
    let set = |ns: &str, values: &WiValues| {
        let o = apply(cp, ns, &values.config_map(names), &[]);
        assert!(o.status.success(), "ConfigMap in {ns}: {}", text(&o));
    };
    set(&own, &TEAM);
    set(&names.system(), &ACME);
    for (ns, v) in [(&a, &ACME), (&b, &ACME), (&bad, &ACME), (&own, &TEAM)] {
        wait_converged(cp, names, ns, v);
    }
    assert_eq!(status_code(cp, names, &a), 0, "converged: status is green");

    // 1. The default edited.
    let before = objects(cp, &all);
    let (code, p) = plan(
        cp,
        &install,
        &names.system(),
        &config_map(names, &ACME_V2),
        false,
    );
    assert_eq!(code, 2, "{p}");
    let on_default = |ns: &String| (ns.clone(), "default".into(), "default".into());
    assert_eq!(
        sources(&p),
        [on_default(&a), on_default(&b), on_default(&bad)]
    );
    let binding = ACME_V2.gcloud(&a, &names.backend());
    assert_eq!(p["namespaces"][0]["iamBindings"], json!([binding]));
    set(&names.system(), &ACME_V2);
    wait_converged(cp, names, &a, &ACME_V2);
    wait_converged(cp, names, &b, &ACME_V2);
    wait_converged(cp, names, &bad, &ACME_V2);
    assert_eq!(planned(&p), real_changes(&before, &objects(cp, &all)));
    assert_eq!(planned(&p).len(), 12, "3 ServiceAccounts and 9 Deployments");

    // 2. An override added in b.
    let before = objects(cp, &all);
    let (code, p) = plan(cp, &install, &b, &config_map(names, &TEAM), false);
    assert_eq!(code, 2, "{p}");
    assert_eq!(sources(&p), [(b.clone(), "default".into(), "own".into())]);
    set(&b, &TEAM);
    wait_converged(cp, names, &b, &TEAM);
    assert_eq!(planned(&p), real_changes(&before, &objects(cp, &all)));

    // 3. The override removed again.
    let before = objects(cp, &all);
    let (code, p) = plan(cp, &install, &b, &config_map(names, &TEAM), true);
    assert_eq!(code, 2, "{p}");
    assert_eq!(sources(&p), [(b.clone(), "own".into(), "default".into())]);
    let del = cp.kubectl(&["delete", "configmap", &names.config(), "-n", &b], None);
    assert!(del.status.success(), "{}", text(&del));
    wait_converged(cp, names, &b, &ACME_V2);
    assert_eq!(planned(&p), real_changes(&before, &objects(cp, &all)));

    // 4. An invalid config: the problems as `check` words them, exit 1, nothing would change
    // (the validating webhook refuses to store it).
    let mut invalid = config_map(names, &ACME);
    invalid["data"]["WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL"] = json!("not-an-email");
    let (code, p) = plan(cp, &install, &a, &invalid, false);
    assert_eq!(code, 1, "{p}");
    assert!(
        p["problems"][0]
            .as_str()
            .unwrap()
            .contains("WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL"),
        "{p}"
    );
    assert_eq!(
        sources(&p),
        [(a.clone(), "default".into(), "invalid".into())]
    );
    assert!(planned(&p).is_empty());
    // Stored where the webhooks do not look: reported by the reconciler, nothing written, and
    // `status` fails for that namespace only.
    let before = objects(cp, &all);
    let (code, p) = plan(cp, &install, &bad, &invalid, false);
    assert_eq!(code, 1, "{p}");
    assert_eq!(
        sources(&p),
        [(bad.clone(), "default".into(), "invalid".into())]
    );
    let mut stored = invalid.clone();
    stored["metadata"]["namespace"] = json!(bad);
    let o = apply(cp, &bad, &stored.to_string(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    wait_event(cp, &bad, "InvalidConfig", "ConfigMap", &names.config());
    assert_eq!(planned(&p), real_changes(&before, &objects(cp, &all)));
    assert_eq!(
        status_code(cp, names, &bad),
        1,
        "an invalid config fails status"
    );
    assert_eq!(status_code(cp, names, &b), 0);

    // 5. a opts out, then the default is edited: a is left alone, b changes.
    let label = format!("{}={}", OPT_OUT.0, OPT_OUT.1);
    let l = cp.kubectl(&["label", "namespace", &a, &label], None);
    assert!(l.status.success(), "{}", text(&l));
    let before = objects(cp, &all);
    let (code, p) = plan(
        cp,
        &install,
        &names.system(),
        &config_map(names, &ACME),
        false,
    );
    assert_eq!(code, 2, "{p}");
    assert_eq!(sources(&p), [on_default(&b)]);
    set(&names.system(), &ACME);
    wait_converged(cp, names, &b, &ACME);
    // A namespace opting out is never written: give the reconciler the time to (not) do it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(planned(&p), real_changes(&before, &objects(cp, &all)));
    assert_eq!(status_code(cp, names, &b), 0);

    assert_eq!(status_code(cp, names, &own), 0);
}
