//! What the reconciler leaves alone: namespaces the webhooks do not see, and a patch the API
//! server refuses for good (it is recorded, not retried in a loop).

use serde_json::{Value, json};

use super::cluster::ControlPlane;
use super::cluster_mode::*;
use super::kube::{apply, get, text};

const PATCH_REFUSED: &str = "WorkloadIdentityPatchRefused";
const ACTIONS: &str = "carto_wi_cluster_reconcile_actions_total";
const RECONCILES: &str = "carto_wi_cluster_reconciles_total";
const ERRORS: &str = "carto_wi_cluster_reconcile_errors_total";

fn set_config(cp: &ControlPlane, names: &Names, ns: &str, values: &WiValues) {
    let out = apply(cp, ns, &values.config_map(names), &[]);
    assert!(out.status.success(), "ConfigMap in {ns}: {}", text(&out));
}

/// Wait until `hook` has reconciled `n` more namespaces than `from` (full passes at --resync).
fn wait_reconciles(hook: &ClusterWebhook, from: f64, n: f64) {
    wait_until(&format!("{n} more reconciles"), || {
        match hook.metric(RECONCILES, &[]) {
            Some(v) if v >= from + n => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// One scope: with `--exclude-namespaces` naming one namespace and a short resync, an
/// uninjected CARTO install there, in kube-system and in the webhook's own namespace (neither
/// listed) stays byte-identical (same resourceVersions, no Workload Identity) across several full
/// passes, while the same install in an ordinary namespace converges in the same run.
pub fn cluster_excluded_namespaces_left_alone(cp: &ControlPlane) {
    let install = Install::prepare(cp, "cexc");
    install.bind(cp);
    let names = &install.names;
    let (legacy, app, system) = (names.ns("legacy"), names.ns("app"), names.system());
    let exclude = format!("--exclude-namespaces={legacy},{}", names.ns("unused"));
    let hook = ClusterWebhook::launch(&install, "cexc-0", install.port, &[&exclude, "--resync=2s"]);
    hook.wait_ready();
    install.wait_api_server_calls_webhook(cp);
    // Stored uninjected in the webhook's own namespace: the API server stops calling the webhook
    // there (as the chart's namespaceSelector never does).
    let unlabel = "e2e.carto.com/webhook-";
    let out = cp.kubectl(&["label", "namespace", &system, unlabel], None);
    assert!(out.status.success(), "{}", text(&out));
    for ns in [&legacy, &app] {
        unselected_namespace(cp, ns);
    }
    let left_alone = [legacy.as_str(), "kube-system", system.as_str()];
    for ns in left_alone.iter().copied().chain([app.as_str()]) {
        install_fixtures(cp, names, ns);
    }
    let before: Vec<_> = left_alone
        .iter()
        .map(|ns| versions(cp, names, ns))
        .collect();

    set_config(cp, names, &system, &ACME);
    wait_converged(cp, names, &app, &ACME);
    // Three more passes of the ordinary namespace: every excluded one was passed over as often.
    let reconciles = hook.metric(RECONCILES, &[]).unwrap_or(0.0);
    wait_reconciles(&hook, reconciles, 3.0);
    for (ns, before) in left_alone.iter().zip(&before) {
        assert_eq!(&versions(cp, names, ns), before, "{ns} was written");
        assert_untouched(cp, names, ns);
        let ours: Vec<Value> = events(cp, ns)
            .into_iter()
            .filter(|e| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("WorkloadIdentity"))
            })
            .collect();
        assert!(ours.is_empty(), "Events in {ns}: {ours:?}");
    }
    assert_eq!(
        hook.metric(
            "carto_wi_cluster_targets",
            &[("kind", "Deployment"), ("state", "compliant")]
        ),
        Some(TARGET_DEPLOYMENTS.len() as f64),
        "only the ordinary namespace's targets are counted: {}",
        hook.metrics()
    );
}

/// A target Deployment whose pod template annotations sit just under the API's 256 KiB limit.
fn padded_target(names: &Names, name: &str) -> String {
    let key = "pad.example.com/blob";
    let pad = "x".repeat(262_144 - key.len() - 16);
    let mut d: Value = serde_json::from_str(&super::kube::deployment(
        name,
        &names.backend(),
        &[("api", Value::Null)],
        json!({}),
    ))
    .unwrap();
    d["spec"]["template"]["metadata"]["annotations"] = json!({ key: pad });
    d.to_string()
}

/// A patch the API server refuses for good (the config-hash annotation would take the pod
/// template's annotations over their 256 KiB limit: 422) is recorded once (a Warning Event with
/// the API's answer, the `refused` action, no reconcile error) and not retried: the object keeps
/// its resourceVersion while the other targets of its namespace converge. A config change tries
/// it again, once.
pub fn cluster_refused_patch_recorded_not_retried(cp: &ControlPlane) {
    let (install, hook) = ClusterWebhook::up(cp, "cbig");
    let names = &install.names;
    let app = names.ns("app");
    unselected_namespace(cp, &app);
    install_fixtures(cp, names, &app);
    // Created, not applied: apply would copy the whole object into an annotation of its own.
    let out = cp.kubectl(
        &["create", "-n", &app, "-f", "-"],
        Some(&padded_target(names, "big-api")),
    );
    assert!(out.status.success(), "the padded target: {}", text(&out));
    let stored_rv = |name: &str| {
        get(cp, &app, "deployment", name)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let big_rv = stored_rv("big-api");
    let refused = || {
        hook.metric(ACTIONS, &[("kind", "Deployment"), ("action", "refused")])
            .unwrap_or(0.0)
    };

    set_config(cp, names, &names.system(), &ACME);
    let event = wait_event(cp, &app, PATCH_REFUSED, "Deployment", "big-api");
    assert_eq!(event["type"], "Warning", "{event}");
    let message = event["message"].as_str().unwrap_or("");
    assert!(
        message.contains("422") && message.contains("262144"),
        "the Event carries the API server's answer: {message}"
    );
    for d in TARGET_DEPLOYMENTS {
        wait_until(&format!("{d} patched"), || {
            let v = get(cp, &app, "deployment", d);
            match v["spec"]["template"]["metadata"]["annotations"].get(HASH_KEY) {
                Some(_) => Ok(()),
                None => Err(format!("{}", v["metadata"]["resourceVersion"])),
            }
        });
        super::kube::assert_injected(&get(cp, &app, "deployment", d), "containers", 0);
    }
    assert_eq!(refused(), 1.0, "{}", hook.metrics());
    // A retry with backoff would come within 1 + 2 + 4 s: nothing comes.
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert_eq!(refused(), 1.0, "tried again: {}", hook.metrics());
    assert_eq!(stored_rv("big-api"), big_rv, "big-api was not written");
    assert_eq!(hook.metric(ERRORS, &[("reason", "patch")]), Some(0.0));
    assert_eq!(
        events_on(cp, &app, PATCH_REFUSED, "Deployment", "big-api").len(),
        1,
        "one Event"
    );

    // The next config change tries it again, once, and says so with the new config-hash.
    set_config(cp, names, &names.system(), &ACME_V2);
    wait_until("the refused patch tried again", || match refused() {
        2.0 => Ok(()),
        v => Err(format!("{v}")),
    });
    wait_until("a second Event (new config-hash)", || {
        match events_on(cp, &app, PATCH_REFUSED, "Deployment", "big-api").len() {
            2 => Ok(()),
            n => Err(format!("{n} Events")),
        }
    });
    assert_eq!(stored_rv("big-api"), big_rv, "big-api was not written");
    hook.assert_running();
}
