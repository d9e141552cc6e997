//! Small helpers over kubectl and stored objects.

use std::process::Output;

use serde_json::Value;

use super::cluster::ControlPlane;
use super::webhook::EXPECTED_ENV;

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Create a namespace routed to webhook instance `hook` (plus extra labels).
pub fn namespace(cp: &ControlPlane, name: &str, hook: Option<&str>, extra: &[(&str, &str)]) {
    let mut labels = serde_json::Map::new();
    if let Some(h) = hook {
        labels.insert("e2e.carto.com/webhook".into(), h.into());
    }
    for (k, v) in extra {
        labels.insert((*k).into(), (*v).into());
    }
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&ns.to_string()));
    assert!(
        out.status.success(),
        "create namespace {name}: {}",
        text(&out)
    );
}

/// `kubectl apply -n ns -f -` with extra args.
pub fn apply(cp: &ControlPlane, ns: &str, manifest: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apply", "-n", ns, "-f", "-"];
    args.extend_from_slice(extra);
    cp.kubectl(&args, Some(manifest))
}

/// Fetch one object as JSON.
pub fn get(cp: &ControlPlane, ns: &str, kind: &str, name: &str) -> Value {
    let out = cp.kubectl(&["get", "-n", ns, kind, name, "-o", "json"], None);
    assert!(
        out.status.success(),
        "get {kind} {ns}/{name}: {}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Does the object exist?
pub fn exists(cp: &ControlPlane, ns: &str, kind: &str, name: &str) -> bool {
    cp.kubectl(&["get", "-n", ns, kind, name, "-o", "name"], None)
        .status
        .success()
}

/// The objects of a YAML stream as a JSON List without namespaces (so it applies anywhere).
pub fn list_without_namespace(yaml: &str, keep: impl Fn(&Value) -> bool) -> String {
    let items: Vec<Value> = carto_wi_webhook::yaml::split_documents(yaml)
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| carto_wi_webhook::yaml::parse(d.text).unwrap())
        .filter(|v| keep(v))
        .map(|mut v| {
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("namespace");
            }
            v
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// The env of container `c` of a stored Deployment, as (name, literal value) pairs.
pub fn env_of(deploy: &Value, field: &str, c: usize) -> Vec<(String, Option<String>)> {
    deploy["spec"]["template"]["spec"][field][c]["env"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or("").to_owned(),
                        e["value"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Assert every managed variable is present exactly with the configured value.
pub fn assert_injected(deploy: &Value, field: &str, c: usize) {
    let env = env_of(deploy, field, c);
    for (k, v) in EXPECTED_ENV {
        let found: Vec<_> = env.iter().filter(|(n, _)| n == k).collect();
        assert!(
            !found.is_empty(),
            "{k} missing in {} container {c}: {env:?}",
            deploy["metadata"]["name"]
        );
        for (_, val) in found {
            assert_eq!(
                val.as_deref(),
                Some(v),
                "{k} in {}",
                deploy["metadata"]["name"]
            );
        }
    }
}

/// Assert no managed variable is present.
pub fn assert_not_injected(deploy: &Value, field: &str, c: usize) {
    let env = env_of(deploy, field, c);
    for (k, _) in EXPECTED_ENV {
        assert!(
            !env.iter().any(|(n, _)| n == k),
            "{k} unexpectedly in {}: {env:?}",
            deploy["metadata"]["name"]
        );
    }
}

/// A minimal target Deployment with the given containers' env (JSON arrays or null).
pub fn deployment(
    name: &str,
    sa: &str,
    containers: &[(&str, Value)],
    annotations: Value,
) -> String {
    let cs: Vec<Value> = containers
        .iter()
        .map(|(n, env)| {
            let mut c = serde_json::json!({"name": n, "image": "registry.example/carto/app:1"});
            if !env.is_null() {
                c["env"] = env.clone();
            }
            c
        })
        .collect();
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": sa, "containers": cs}
            }
        }
    })
    .to_string()
}
