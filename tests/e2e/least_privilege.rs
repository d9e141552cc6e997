//! The chart's ValidatingAdmissionPolicy on the real API server. The chart's RBAC, policy and
//! binding are applied and every request is made with a token of the webhook's ServiceAccount:
//! each change outside what the webhook manages is refused with the policy's message, the writes
//! the webhook makes (the core's own patches guarded by resourceVersion, a caBundle rotation)
//! pass, and the same forbidden change made by another user (the admin) is not refused.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::chart::{list, objects, template, token_kubeconfig};
use super::cluster::ControlPlane;
use super::cluster_mode::{ACME, ACME_V2, GSA_KEY, HASH_KEY, WiValues, must};
use super::kube::{env_of, get, text};
use super::pki::Ca;
use super::process::wait_for;

const RELEASE: &str = "lp";
const SYSTEM: &str = "lp-system";
const CARTO: &str = "lp-carto";
const BACKEND: &str = "lp-backend";
/// The release's objects (ServiceAccount, policy, webhook configurations) are named so.
const WEBHOOK: &str = "lp-carto-wi-webhook";
const EXTRA: &str = "WORKSPACE_SYNC_DATA_ENABLED";
const MANAGED_ENV: &str = "workload-identity.carto.com/managed-env";
/// The API server compiles a new policy before enforcing it.
const ACTIVATION: Duration = Duration::from_secs(60);
const MUTATING: &str = "mutatingwebhookconfiguration";
const VALIDATING: &str = "validatingwebhookconfiguration";

/// The target: an unmanaged env entry by value, one by reference, a volume, security contexts,
/// an init container and a second container.
fn target_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "labels": {"app": "app"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}, "annotations": {"team.example/owner": "data"}},
                "spec": {
                    "serviceAccountName": BACKEND,
                    "securityContext": {"runAsNonRoot": true},
                    "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}],
                    "initContainers": [{"name": "init", "image": "registry.example/carto/init:1"}],
                    "containers": [
                        {"name": "app", "image": "registry.example/carto/app:1",
                         "securityContext": {"runAsUser": 1000},
                         "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}],
                         "env": [
                            {"name": "WORKSPACE_POSTGRES_HOST", "value": "db.internal"},
                            {"name": "WORKSPACE_POSTGRES_PASSWORD",
                             "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                            {"name": "LOG_LEVEL", "value": "info"}]},
                        {"name": "sidecar", "image": "registry.example/carto/sidecar:1"}
                    ]
                }
            }
        }
    })
}

struct Setup<'a> {
    cp: &'a ControlPlane,
    dir: PathBuf,
    /// Authenticates as the webhook's ServiceAccount.
    kubeconfig: PathBuf,
}

impl<'a> Setup<'a> {
    /// The chart rendered with an allowlisted extra variable and applied whole; the CARTO
    /// namespace is left out of the webhooks (no webhook process runs here), so only the policy
    /// judges its writes.
    fn install(cp: &'a ControlPlane) -> Self {
        let args = [
            "--set",
            &format!("policy.serviceAccount={BACKEND}"),
            "--set",
            &format!("policy.extraEnvAllowed={{{EXTRA}}}"),
            "--set",
            &format!("webhook.excludeNamespaces={{{CARTO}}}"),
        ];
        let stream = template(cp, RELEASE, SYSTEM, &args).unwrap();
        let objs = objects(&stream);
        for k in [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(objs.iter().any(|o| o["kind"] == k), "{k} rendered");
        }
        for ns in [SYSTEM, CARTO] {
            must(cp.kubectl(&["create", "namespace", ns], None), "namespace");
        }
        must(
            cp.kubectl(&["apply", "-f", "-"], Some(&list(objs))),
            "apply the chart's objects",
        );
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": BACKEND, "labels": {"team": "data"}}});
        let carto = list(vec![sa, target_deployment()]);
        must(
            cp.kubectl(&["apply", "-n", CARTO, "-f", "-"], Some(&carto)),
            "apply the target ServiceAccount and Deployment",
        );
        let token = must(
            cp.kubectl(
                &["create", "token", WEBHOOK, "-n", SYSTEM, "--duration=1h"],
                None,
            ),
            "create a token",
        );
        let dir = cp.dir.join("least-privilege");
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, token_kubeconfig(cp, token.trim())).unwrap();
        Self {
            cp,
            dir,
            kubeconfig,
        }
    }

    fn as_webhook(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(self.cp.bin.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::null());
        for v in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env_remove(v);
        }
        cmd.output().expect("run kubectl")
    }

    /// `kubectl patch` as the webhook (`ns` empty: a cluster-scoped object).
    fn patch(&self, kind: &str, name: &str, ns: &str, ty: &str, patch: &Value) -> Output {
        let p = patch.to_string();
        let mut args = vec!["patch", kind, name, "--type", ty, "-p", &p];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        self.as_webhook(&args)
    }

    /// Until a change of a webhook configuration's timeout (a server-side dry run, so nothing
    /// is stored) is refused by the policy.
    fn wait_active(&self) {
        wait_policy_active(self.cp, &self.kubeconfig, WEBHOOK);
    }
}

/// The request failed with the policy's denial, and its message contains each `|`-separated
/// part of `want` (the changed fields of one object are named in no fixed order).
fn assert_refused(out: &Output, what: &str, want: &str) {
    let said = text(out);
    assert!(!out.status.success(), "{what}: not refused: {said}");
    let prefix = format!(
        "ValidatingAdmissionPolicy '{WEBHOOK}' with binding '{WEBHOOK}' denied request: {WEBHOOK} "
    );
    assert!(
        said.contains(&prefix) && want.split('|').all(|part| said.contains(part)),
        "{what}: wanted the policy's message with {want:?}, got: {said}"
    );
}

fn op(op: &str, path: &str, value: Value) -> Value {
    json!({"op": op, "path": path, "value": value})
}

/// The scenario: the policy is active, then each group of writes.
pub fn chart_policy_bounds_the_webhook_token(cp: &ControlPlane) {
    let s = Setup::install(cp);
    s.wait_active();
    deployment_changes_refused(&s);
    reconciler_deployment_writes_pass(&s);
    taken_back_after_the_allowlist_shrank(&s);
    padded_target_judged(&s);
    service_account_writes(&s);
    webhook_configuration_writes(&s);
    only_updates(&s);
    admin_not_refused(&s);
}

/// A refused change: what it is, a JSON patch, and what the policy's message names (`{hook}`,
/// `{kind}` and `{flipped}` stand for the webhook's name, the configuration's kind and the
/// other failure policy).
type Case = (&'static str, &'static str, &'static str);

const DEPLOYMENT_CASES: &[Case] = &[
    (
        "image",
        r#"[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil.example/app:1"}]"#,
        "containers[app]: image",
    ),
    (
        "command",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/command", "value": ["sh", "-c", "exfiltrate"]}]"#,
        "containers[app]: command",
    ),
    (
        "args of the sidecar",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/1/args", "value": ["--debug"]}]"#,
        "containers[sidecar]: args",
    ),
    (
        "volumes",
        r#"[{"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": "host", "hostPath": {"path": "/"}}}]"#,
        "pod spec of Deployment app: volumes",
    ),
    (
        "volumeMounts",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/volumeMounts/-", "value": {"name": "cfg", "mountPath": "/other"}}]"#,
        "containers[app]: volumeMounts",
    ),
    (
        "serviceAccountName",
        r#"[{"op": "replace", "path": "/spec/template/spec/serviceAccountName", "value": "cluster-admin-sa"}]"#,
        "may not change the pod spec of Deployment app: |serviceAccountName",
    ),
    (
        "pod securityContext",
        r#"[{"op": "replace", "path": "/spec/template/spec/securityContext", "value": {"runAsUser": 0}}]"#,
        "pod spec of Deployment app: securityContext",
    ),
    (
        "container securityContext",
        r#"[{"op": "replace", "path": "/spec/template/spec/containers/0/securityContext", "value": {"runAsUser": 0, "allowPrivilegeEscalation": true}}]"#,
        "containers[app]: securityContext",
    ),
    (
        "resources",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/resources", "value": {"limits": {"memory": "1Gi"}}}]"#,
        "containers[app]: resources",
    ),
    (
        "a new container",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "miner", "image": "evil.example/miner:1"}}]"#,
        "may not add, remove, rename or reorder the containers of Deployment app",
    ),
    (
        "a container removed",
        r#"[{"op": "remove", "path": "/spec/template/spec/containers/1"}]"#,
        "may not add, remove, rename or reorder the containers of Deployment app",
    ),
    (
        "a new init container",
        r#"[{"op": "add", "path": "/spec/template/spec/initContainers/-", "value": {"name": "pre", "image": "evil.example/pre:1"}}]"#,
        "may not add, remove, rename or reorder the initContainers of Deployment app",
    ),
    (
        "an unmanaged env value",
        r#"[{"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "evil.example"}]"#,
        "not: containers[app]: WORKSPACE_POSTGRES_HOST",
    ),
    (
        "an unmanaged env entry by reference",
        r#"[{"op": "replace", "path": "/spec/template/spec/containers/0/env/1", "value": {"name": "WORKSPACE_POSTGRES_PASSWORD", "value": "stolen"}}]"#,
        "not: containers[app]: WORKSPACE_POSTGRES_PASSWORD",
    ),
    (
        "a new unmanaged env entry",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "WORKSPACE_DEBUG", "value": "1"}}]"#,
        "not: containers[app]: WORKSPACE_DEBUG",
    ),
    (
        "an unmanaged env entry removed",
        r#"[{"op": "remove", "path": "/spec/template/spec/containers/0/env/2"}]"#,
        "not: containers[app]: LOG_LEVEL",
    ),
    (
        "unmanaged env entries reordered",
        r#"[{"op": "move", "from": "/spec/template/spec/containers/0/env/2", "path": "/spec/template/spec/containers/0/env/0"}]"#,
        "not: containers[app]: the order of the other entries",
    ),
    (
        "an init container's env",
        r#"[{"op": "add", "path": "/spec/template/spec/initContainers/0/env", "value": [{"name": "X", "value": "1"}]}]"#,
        "not: initContainers[init]: X",
    ),
    (
        "replicas",
        r#"[{"op": "replace", "path": "/spec/replicas", "value": 50}]"#,
        "may not change the spec of Deployment app: spec.replicas",
    ),
    (
        "another pod template annotation",
        r#"[{"op": "replace", "path": "/spec/template/metadata/annotations/team.example~1owner", "value": "evil"}]"#,
        "of Deployment app, not: team.example/owner",
    ),
    (
        "a pod template label",
        r#"[{"op": "add", "path": "/spec/template/metadata/labels/extra", "value": "1"}]"#,
        "may not change the pod template metadata of Deployment app other than its annotations config-hash and managed-env: labels",
    ),
    (
        "a managed variable from a Secret",
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}}]"#,
        "may set the managed env entries only to literal values (no valueFrom), in Deployment app, not: containers[app]: WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
    ),
    (
        "an unallowed name recorded in managed-env",
        r#"[{"op": "add", "path": "/spec/template/metadata/annotations/workload-identity.carto.com~1managed-env", "value": "WORKSPACE_POSTGRES_HOST"}]"#,
        "may record in workload-identity.carto.com/managed-env of Deployment app only the allowed extra variables (|) and those already listed, not: WORKSPACE_POSTGRES_HOST",
    ),
    (
        "a Deployment label",
        r#"[{"op": "add", "path": "/metadata/labels/extra", "value": "1"}]"#,
        "may not change the metadata of deployments app: labels",
    ),
];

const SERVICE_ACCOUNT_CASES: &[Case] = &[
    (
        "another annotation",
        r#"[{"op": "add", "path": "/metadata/annotations/team.example~1owner", "value": "evil"}]"#,
        "may change only the annotations iam.gke.io/gcp-service-account and workload-identity.carto.com/config-hash of ServiceAccount lp-carto/lp-backend, not: team.example/owner",
    ),
    (
        "a label",
        r#"[{"op": "replace", "path": "/metadata/labels/team", "value": "evil"}]"#,
        "may not change the metadata of serviceaccounts lp-backend: labels",
    ),
    (
        "automountServiceAccountToken",
        r#"[{"op": "add", "path": "/automountServiceAccountToken", "value": true}]"#,
        "may not change serviceaccounts lp-backend: automountServiceAccountToken",
    ),
    (
        "imagePullSecrets",
        r#"[{"op": "add", "path": "/imagePullSecrets", "value": [{"name": "stolen"}]}]"#,
        "may not change serviceaccounts lp-backend: imagePullSecrets",
    ),
];

const WEBHOOK_CASES: &[Case] = &[
    (
        "rules",
        r#"[{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["CREATE", "UPDATE", "DELETE"]}]"#,
        "{hook}: rules",
    ),
    (
        "rules' resources",
        r#"[{"op": "replace", "path": "/webhooks/0/rules/1/resources", "value": ["*"]}]"#,
        "{hook}: rules",
    ),
    (
        "service path",
        r#"[{"op": "replace", "path": "/webhooks/0/clientConfig/service/path", "value": "/steal"}]"#,
        "{hook}: clientConfig.service",
    ),
    (
        "service replaced by a url",
        r#"[{"op": "remove", "path": "/webhooks/0/clientConfig/service"}, {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://steal.example.com/review"}]"#,
        "{hook}: |clientConfig.url",
    ),
    (
        "namespaceSelector",
        r#"[{"op": "replace", "path": "/webhooks/0/namespaceSelector", "value": {}}]"#,
        "{hook}: namespaceSelector",
    ),
    (
        "objectSelector",
        r#"[{"op": "replace", "path": "/webhooks/0/objectSelector", "value": {"matchLabels": {"x": "y"}}}]"#,
        "{hook}: objectSelector",
    ),
    (
        "matchConditions",
        r#"[{"op": "remove", "path": "/webhooks/0/matchConditions"}]"#,
        "{hook}: matchConditions",
    ),
    (
        "failurePolicy",
        r#"[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "{flipped}"}]"#,
        "{hook}: failurePolicy",
    ),
    (
        "timeoutSeconds",
        r#"[{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 29}]"#,
        "{hook}: timeoutSeconds",
    ),
    (
        "sideEffects",
        r#"[{"op": "replace", "path": "/webhooks/0/sideEffects", "value": "NoneOnDryRun"}]"#,
        "{hook}: sideEffects",
    ),
    (
        "admissionReviewVersions",
        r#"[{"op": "replace", "path": "/webhooks/0/admissionReviewVersions", "value": ["v1", "v1beta1"]}]"#,
        "{hook}: admissionReviewVersions",
    ),
    (
        "a renamed webhook",
        r#"[{"op": "replace", "path": "/webhooks/0/name", "value": "steal.example.com"}]"#,
        "not: the list of webhooks",
    ),
    (
        "a label",
        r#"[{"op": "add", "path": "/metadata/labels/extra", "value": "1"}]"#,
        "may not change the metadata of {kind}s lp-carto-wi-webhook: labels",
    ),
];

/// Each change of the target Deployment outside the managed env entries and annotations is
/// refused, naming what was refused; the stored object stays as it was.
fn deployment_changes_refused(s: &Setup) {
    let before = get(s.cp, CARTO, "deployment", "app");
    assert_cases_refused(s, "deployment", "app", CARTO, DEPLOYMENT_CASES, &[]);
    let after = get(s.cp, CARTO, "deployment", "app");
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "a refused change was stored"
    );
}

/// Each case, as a JSON patch made with the token, is refused with its message.
fn assert_cases_refused(
    s: &Setup,
    kind: &str,
    name: &str,
    ns: &str,
    cases: &[Case],
    vars: &[(&str, &str)],
) {
    let fill = |t: &str| vars.iter().fold(t.to_owned(), |t, (k, v)| t.replace(k, v));
    for (what, patch, want) in cases {
        let patch: Value = serde_json::from_str(&fill(patch)).expect("a JSON patch");
        let out = s.patch(kind, name, ns, "json", &patch);
        assert_refused(&out, &format!("{kind} {name}: {what}"), &fill(want));
    }
}

/// The patch the webhook's core computes for `obj` under `config` (`review --output patch`),
/// guarded by the object's resourceVersion as the reconciler sends it.
fn core_patch(s: &Setup, obj: &Value, config: &WiValues) -> Value {
    let object = s.dir.join("object.json");
    let cm = s.dir.join("config.json");
    std::fs::write(&object, obj.to_string()).unwrap();
    let mut data = serde_json::Map::new();
    for (k, v) in config.env() {
        data.insert(k.into(), v.into());
    }
    let cm_json = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity"}, "data": data});
    std::fs::write(&cm, cm_json.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_carto-wi-webhook"))
        .args(["review", "--output", "patch", "--namespace", CARTO])
        .arg("-f")
        .arg(&object)
        .arg("--config")
        .arg(&cm)
        .arg(format!("--service-account={BACKEND}"))
        .stdin(Stdio::null())
        .output()
        .expect("run carto-wi-webhook review");
    let line: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one patch expected ({e}): {}", text(&out)));
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
        "value": obj["metadata"]["resourceVersion"]})];
    ops.extend(
        line["patch"]
            .as_array()
            .expect("a JSON patch")
            .iter()
            .cloned(),
    );
    Value::Array(ops)
}

fn env_value(d: &Value, c: usize, name: &str) -> Option<String> {
    env_of(d, "containers", c)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v)
}

/// What the reconciler writes passes: the core's injection, then a config change, then an
/// allowlisted extra variable added with managed-env and removed again, with a managed variable.
fn reconciler_deployment_writes_pass(s: &Setup) {
    for config in [&ACME, &ACME_V2] {
        let d = get(s.cp, CARTO, "deployment", "app");
        let patch = core_patch(s, &d, config);
        let out = s.patch("deployment", "app", CARTO, "json", &patch);
        assert!(out.status.success(), "the core's patch: {}", text(&out));
        let d = get(s.cp, CARTO, "deployment", "app");
        for c in 0..2 {
            for (k, v) in config.env() {
                assert_eq!(
                    env_value(&d, c, k).as_deref(),
                    Some(v),
                    "{k} in container {c}"
                );
            }
        }
        let host = env_value(&d, 0, "WORKSPACE_POSTGRES_HOST");
        assert_eq!(host.as_deref(), Some("db.internal"));
    }
    extra_variable_added_and_removed(s);
}

const ANNOTATIONS: &str = "/spec/template/metadata/annotations";

/// An allowlisted extra variable with the managed-env annotation, then both removed together
/// with a managed variable of the other container, as JSON patches of the core's shape.
fn extra_variable_added_and_removed(s: &Setup) {
    let d = get(s.cp, CARTO, "deployment", "app");
    let add = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": d["metadata"]["resourceVersion"]},
        op("add", "/spec/template/spec/containers/0/env/-", json!({"name": EXTRA, "value": "true"})),
        op("add", &format!("{ANNOTATIONS}/workload-identity.carto.com~1managed-env"), json!(EXTRA)),
        op("replace", &format!("{ANNOTATIONS}/workload-identity.carto.com~1config-hash"), json!("0123456789ab")),
    ]);
    let out = s.patch("deployment", "app", CARTO, "json", &add);
    assert!(
        out.status.success(),
        "an extra variable added: {}",
        text(&out)
    );
    let d = get(s.cp, CARTO, "deployment", "app");
    assert_eq!(env_value(&d, 0, EXTRA).as_deref(), Some("true"));
    let at = |c: usize, name: &str| {
        env_of(&d, "containers", c)
            .iter()
            .position(|(n, _)| n == name)
            .unwrap()
    };
    let env = |c: usize, i: usize| format!("/spec/template/spec/containers/{c}/env/{i}");
    let owner = "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID";
    let remove = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": d["metadata"]["resourceVersion"]},
        {"op": "remove", "path": env(0, at(0, EXTRA))},
        {"op": "remove", "path": env(1, at(1, owner))},
        {"op": "remove", "path": format!("{ANNOTATIONS}/workload-identity.carto.com~1managed-env")},
        op("replace", &format!("{ANNOTATIONS}/workload-identity.carto.com~1config-hash"), json!("ba9876543210")),
    ]);
    let out = s.patch("deployment", "app", CARTO, "json", &remove);
    assert!(
        out.status.success(),
        "managed variables removed: {}",
        text(&out)
    );
    let d = get(s.cp, CARTO, "deployment", "app");
    assert_eq!(env_value(&d, 0, EXTRA), None);
    assert_eq!(env_value(&d, 1, owner), None);
    let annotations = &d["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations[MANAGED_ENV].is_null());
    assert_eq!(annotations["team.example/owner"], "data");
}

/// A variable the webhook added while it was allowed (recorded in managed-env) and the
/// platform has since dropped from the allowlist: the webhook may remove it, with its record,
/// but never set it again or change it; nor record a name it may not manage.
fn taken_back_after_the_allowlist_shrank(s: &Setup) {
    const OLD: &str = "WORKSPACE_OLD_EXTRA";
    let managed = format!("{ANNOTATIONS}/workload-identity.carto.com~1managed-env");
    // What the webhook wrote back then (the admin is not judged by the policy).
    let earlier = json!([
        op(
            "add",
            "/spec/template/spec/containers/0/env/-",
            json!({"name": OLD, "value": "1"})
        ),
        op("add", &managed, json!(format!("{OLD},{EXTRA}"))),
    ])
    .to_string();
    let args = [
        "patch",
        "deployment",
        "app",
        "-n",
        CARTO,
        "--type=json",
        "-p",
        &earlier,
    ];
    must(
        s.cp.kubectl(&args, None),
        "the admin sets the earlier state",
    );
    let d = get(s.cp, CARTO, "deployment", "app");
    let at = env_of(&d, "containers", 0)
        .iter()
        .position(|(n, _)| n == OLD)
        .unwrap();
    let entry = format!("/spec/template/spec/containers/0/env/{at}");
    let refused = [
        (
            json!([op("replace", &format!("{entry}/value"), json!("2"))]),
            "app",
        ),
        (
            json!([op(
                "add",
                "/spec/template/spec/containers/1/env/-",
                json!({"name": OLD, "value": "1"})
            )]),
            "sidecar",
        ),
    ];
    for (patch, container) in refused {
        let out = s.patch("deployment", "app", CARTO, "json", &patch);
        let want = format!(
            "may only remove, never add or change, env entries it recorded in workload-identity.carto.com/managed-env that are no longer allowed, in Deployment app, not: containers[{container}]: {OLD}"
        );
        assert_refused(
            &out,
            &format!("a taken-back variable set in {container}"),
            &want,
        );
    }
    let take_back = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": d["metadata"]["resourceVersion"]},
        {"op": "remove", "path": entry},
        op("replace", &managed, json!(EXTRA)),
    ]);
    let out = s.patch("deployment", "app", CARTO, "json", &take_back);
    assert!(
        out.status.success(),
        "the variable taken back: {}",
        text(&out)
    );
    let d = get(s.cp, CARTO, "deployment", "app");
    assert_eq!(env_value(&d, 0, OLD), None);
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"][MANAGED_ENV],
        EXTRA
    );
}

/// A target padded to the API's limits (240 KB annotations on the object and on its pod
/// template, 10 containers of 40 variables each) stays within the policy's CEL cost budget: the
/// core's patch passes (an evaluation error would refuse it: the policy fails closed) and a
/// change of an image is still refused by the rule that names it.
fn padded_target_judged(s: &Setup) {
    let mut d = target_deployment();
    d["metadata"]["name"] = json!("padded");
    d["metadata"]["annotations"] = json!({"pad.example/object": "x".repeat(240_000)});
    let template = &mut d["spec"]["template"];
    template["metadata"]["annotations"] = json!({"pad.example/template": "y".repeat(240_000)});
    let env: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("PAD_{i}"), "value": "z".repeat(100)}))
        .collect();
    let containers: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("c{i}"), "image": "registry.example/carto/app:1", "env": env}))
        .collect();
    template["spec"]["containers"] = Value::Array(containers);
    // Created, not applied: a last-applied annotation would double the object's annotations.
    must(
        s.cp.kubectl(&["create", "-n", CARTO, "-f", "-"], Some(&d.to_string())),
        "create the padded Deployment",
    );
    let stored = get(s.cp, CARTO, "deployment", "padded");
    let patch = core_patch(s, &stored, &ACME);
    let out = s.patch("deployment", "padded", CARTO, "json", &patch);
    assert!(
        out.status.success(),
        "the core's patch of a padded target: {}",
        text(&out)
    );
    let image = json!([op(
        "replace",
        "/spec/template/spec/containers/9/image",
        json!("evil.example/app:1")
    )]);
    let out = s.patch("deployment", "padded", CARTO, "json", &image);
    assert_refused(
        &out,
        "the image of a padded target",
        "containers[c9]: image",
    );
}

/// The target ServiceAccount: the core's annotation and config-hash pass (twice: set, then
/// changed); another annotation, a label or another field is refused.
fn service_account_writes(s: &Setup) {
    for config in [&ACME, &ACME_V2] {
        let sa = get(s.cp, CARTO, "serviceaccount", BACKEND);
        let patch = core_patch(s, &sa, config);
        let out = s.patch("serviceaccount", BACKEND, CARTO, "json", &patch);
        assert!(out.status.success(), "the core's patch: {}", text(&out));
        let sa = get(s.cp, CARTO, "serviceaccount", BACKEND);
        assert_eq!(sa["metadata"]["annotations"][GSA_KEY], config.email);
        assert!(sa["metadata"]["annotations"][HASH_KEY].is_string());
    }
    assert_cases_refused(
        s,
        "serviceaccount",
        BACKEND,
        CARTO,
        SERVICE_ACCOUNT_CASES,
        &[],
    );
}

/// The release's webhook configurations: a caBundle rotation as the certificate manager writes
/// it passes; every other change is refused, naming the webhook and the field.
fn webhook_configuration_writes(s: &Setup) {
    for (kind, hook) in [
        (MUTATING, "mutate.workload-identity.carto.com"),
        (VALIDATING, "validate.workload-identity.carto.com"),
    ] {
        for cn in ["lp-ca-1", "lp-ca-2"] {
            rotate_ca_bundle(s, kind, hook, cn);
        }
        let before = config(s, kind);
        let flipped = if before["webhooks"][0]["failurePolicy"] == "Fail" {
            "Ignore"
        } else {
            "Fail"
        };
        let vars = [("{hook}", hook), ("{kind}", kind), ("{flipped}", flipped)];
        assert_cases_refused(s, kind, WEBHOOK, "", WEBHOOK_CASES, &vars);
        let mut second = before["webhooks"][0].clone();
        second["name"] = json!("steal.example.com");
        let add = json!([op("add", "/webhooks/-", second)]);
        let out = s.patch(kind, WEBHOOK, "", "json", &add);
        assert_refused(&out, "a second webhook", "not: the list of webhooks");
        if kind == MUTATING {
            let p = json!([op(
                "replace",
                "/webhooks/0/reinvocationPolicy",
                json!("Never")
            )]);
            let out = s.patch(kind, WEBHOOK, "", "json", &p);
            assert_refused(
                &out,
                "reinvocationPolicy",
                &format!("{hook}: reinvocationPolicy"),
            );
        }
        assert_eq!(
            config(s, kind)["metadata"]["resourceVersion"],
            before["metadata"]["resourceVersion"],
            "{kind}: a refused change was stored"
        );
    }
}

/// The release's webhook configuration of this kind.
fn config(s: &Setup, kind: &str) -> Value {
    let out = must(
        s.cp.kubectl(&["get", kind, WEBHOOK, "-o", "json"], None),
        "get the webhook configuration",
    );
    serde_json::from_str(&out).unwrap()
}

/// One caBundle rotation as the certificate manager sends it: a strategic merge patch of every
/// webhook's caBundle, guarded by the configuration's resourceVersion.
fn rotate_ca_bundle(s: &Setup, kind: &str, hook: &str, cn: &str) {
    let bundle = base64::engine::general_purpose::STANDARD.encode(Ca::new(cn).cert_pem);
    let current = config(s, kind);
    let patch = json!({
        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
        "webhooks": [{"name": hook, "clientConfig": {"caBundle": bundle}}],
    });
    let out = s.patch(kind, WEBHOOK, "", "strategic", &patch);
    assert!(
        out.status.success(),
        "{kind}: caBundle rotation to {cn}: {}",
        text(&out)
    );
    let after = config(s, kind);
    assert_eq!(
        after["webhooks"][0]["clientConfig"]["caBundle"],
        bundle.as_str()
    );
}

/// Should RBAC ever grant more, the policy still allows only updates: with `delete` on
/// Deployments and `create` on ServiceAccounts bound to the webhook for a moment, both are
/// refused by the policy (server-side dry runs).
fn only_updates(s: &Setup) {
    let extra = list(vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "lp-extra"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"]},
                      {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "lp-extra"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lp-extra"},
            "subjects": [{"kind": "ServiceAccount", "name": WEBHOOK, "namespace": SYSTEM}]}),
    ]);
    must(
        s.cp.kubectl(&["apply", "-f", "-"], Some(&extra)),
        "grant more RBAC",
    );
    let attempts: [(&[&str], &str); 2] = [
        (
            &[
                "delete",
                "deployment",
                "app",
                "-n",
                CARTO,
                "--dry-run=server",
            ],
            "may only update deployments, never delete them",
        ),
        (
            &[
                "create",
                "serviceaccount",
                "other",
                "-n",
                CARTO,
                "--dry-run=server",
            ],
            "may only update serviceaccounts, never create them",
        ),
    ];
    for (args, want) in attempts {
        // RBAC's cache takes the new binding in a moment; until then RBAC refuses.
        let out = wait_for("RBAC granting the extra verbs", ACTIVATION, || {
            let out = s.as_webhook(args);
            (!text(&out).contains("cannot")).then_some(out)
        });
        assert_refused(&out, &args.join(" "), want);
    }
    must(
        s.cp.kubectl(&["delete", "-f", "-"], Some(&extra)),
        "remove the extra RBAC",
    );
}

/// The binding is scoped to the webhook's ServiceAccount: the admin's same changes pass.
fn admin_not_refused(s: &Setup) {
    let image = json!([op(
        "replace",
        "/spec/template/spec/containers/0/image",
        json!("registry.example/carto/app:2")
    )])
    .to_string();
    must(
        s.cp.kubectl(
            &[
                "patch",
                "deployment",
                "app",
                "-n",
                CARTO,
                "--type=json",
                "-p",
                &image,
            ],
            None,
        ),
        "the admin changes the image",
    );
    let d = get(s.cp, CARTO, "deployment", "app");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/carto/app:2"
    );
    let rules = json!([op(
        "replace",
        "/webhooks/0/rules/0/operations",
        json!(["CREATE", "UPDATE", "DELETE"])
    )])
    .to_string();
    must(
        s.cp.kubectl(
            &["patch", MUTATING, WEBHOOK, "--type=json", "-p", &rules],
            None,
        ),
        "the admin changes the rules",
    );
    must(
        s.cp.kubectl(
            &[
                "annotate",
                "serviceaccount",
                BACKEND,
                "-n",
                CARTO,
                "team.example/owner=data",
            ],
            None,
        ),
        "the admin annotates the ServiceAccount",
    );
}

/// Wait until the release's policy refuses a change made with `kubeconfig` (the webhook's
/// token): a server-side dry run of a new timeout on the mutating configuration `name`, so
/// nothing is stored. The API server compiles a new policy before enforcing it.
pub(super) fn wait_policy_active(cp: &ControlPlane, kubeconfig: &std::path::Path, name: &str) {
    let p = json!([op("replace", "/webhooks/0/timeoutSeconds", json!(29))]).to_string();
    wait_for("the admission policy refusing a change", ACTIVATION, || {
        let out = Command::new(cp.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args([
                "patch",
                MUTATING,
                name,
                "--type=json",
                "-p",
                &p,
                "--dry-run=server",
            ])
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        text(&out).contains("denied request").then_some(())
    });
}

/// The chart's admission policy and binding, rendered for a webhook running as ServiceAccount
/// `name` of namespace `ns` (`fullnameOverride`), with these extra variables allowed, applied;
/// returns once it refuses a change made with `kubeconfig` (that ServiceAccount's token) to the
/// mutating configuration `name`.
pub(super) fn apply_chart_policy(
    cp: &ControlPlane,
    ns: &str,
    name: &str,
    extra_env: &[&str],
    kubeconfig: &std::path::Path,
) {
    let fullname = format!("fullnameOverride={name}");
    let allowed = format!("policy.extraEnvAllowed={{{}}}", extra_env.join(","));
    let mut args = vec![
        "--show-only",
        "templates/admission-policy.yaml",
        "--set",
        &fullname,
    ];
    if !extra_env.is_empty() {
        args.extend(["--set", &allowed]);
    }
    let stream = template(cp, "policy", ns, &args).unwrap();
    must(
        cp.kubectl(&["apply", "-f", "-"], Some(&stream)),
        "apply the chart's admission policy",
    );
    wait_policy_active(cp, kubeconfig, name);
}
