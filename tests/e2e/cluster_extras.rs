//! Extra variables in cluster mode: the platform allows one (`--extra-env`), the cluster default
//! passes it through, the reconciler sets it on every existing target and records it; the config
//! drops it, and the reconciler takes it back out, leaving the user's own variables alone. A
//! ConfigMap with a variable the platform does not allow is refused at admission.

use serde_json::Value;

use super::cluster::ControlPlane;
use super::cluster_mode::*;
use super::kube::{apply, text};

const SYNC: &str = "WORKSPACE_SYNC_DATA_ENABLED";
const MANAGED: &str = "workload-identity.carto.com/managed-env";

/// The acme default with `extra` passed through.
fn config_with(names: &Names, extra: &[(&str, &str)]) -> String {
    let mut cm: Value = serde_json::from_str(&ACME.config_map(names)).unwrap();
    for (k, v) in extra {
        cm["data"][*k] = (*v).into();
    }
    cm.to_string()
}

/// How many containers of the targets of `ns` set `name` to `value`, and whether every target
/// records `name` as managed: `Ok` once all do (`present`) or none do (`!present`).
fn extra_state(cp: &ControlPlane, names: &Names, ns: &str, present: bool) -> Result<(), String> {
    for d in target_deployments(cp, names, ns) {
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let recorded = &d["spec"]["template"]["metadata"]["annotations"][MANAGED];
        if (recorded == SYNC) != present {
            return Err(format!("{name}: managed-env is {recorded}"));
        }
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let env = c["env"].as_array().cloned().unwrap_or_default();
            let set = env
                .iter()
                .any(|e| e["name"] == SYNC && e["value"] == "true");
            if set != present {
                return Err(format!("{name}/{}: {SYNC} set: {set}", c["name"]));
            }
        }
    }
    Ok(())
}

pub fn cluster_extra_allowed_injected_then_taken_back(cp: &ControlPlane) {
    let install = Install::prepare(cp, "cext");
    install.bind_allowing(cp, &[SYNC]);
    let hook = ClusterWebhook::launch(
        &install,
        "cext-0",
        install.port,
        &[&format!("--extra-env={SYNC}")],
    );
    hook.wait_ready();
    install.wait_api_server_calls_webhook(cp);
    let names = &install.names;
    let ns = names.ns("a");
    selected_namespace(cp, names, &ns, &[]);
    install_fixtures(cp, names, &ns);

    // A namespace ConfigMap passing through a variable the platform does not allow: refused.
    let stolen = config_with(names, &[("WORKSPACE_POSTGRES_PASSWORD", "stolen")]);
    let out = apply(cp, &ns, &stolen, &[]);
    assert!(!out.status.success(), "stored: {}", text(&out));
    assert!(
        text(&out).contains("WORKSPACE_POSTGRES_PASSWORD: not an allowed extra variable")
            && text(&out).contains("--extra-env"),
        "{}",
        text(&out)
    );

    // The default passes the allowed one through: every existing target gets it, recorded.
    let out = apply(
        cp,
        &names.system(),
        &config_with(names, &[(SYNC, "true")]),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the extra set on every target", || {
        extra_state(cp, names, &ns, true)
    });
    // The user adds a variable of their own next to it.
    let target = target_deployments(cp, names, &ns)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = cp.kubectl(
        &[
            "set",
            "env",
            "-n",
            &ns,
            &format!("deployment/{target}"),
            "WORKSPACE_MINE=kept",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));

    // The config drops it: the reconciler takes it back out of every target.
    let out = apply(cp, &names.system(), &ACME.config_map(names), &[]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the extra removed from every target", || {
        extra_state(cp, names, &ns, false)
    });
    wait_converged(cp, names, &ns, &ACME);
    let d = super::kube::get(cp, &ns, "deployment", &target);
    let mine = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "WORKSPACE_MINE" && e["value"] == "kept");
    assert!(mine, "the user's own variable stays: {d}");
    hook.assert_running();
}
