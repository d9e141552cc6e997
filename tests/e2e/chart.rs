//! The Helm chart (charts/carto-wi-webhook) against the e2e control plane: lint, the values
//! schema, every main rendering accepted by the real API server, the chart's RBAC equal to
//! examples/rbac.yaml, a security scan, the README's values table, the chart's own objects
//! (its admission policy included) running the webhook that injects a plain CARTO install,
//! validates the cluster default ConfigMap and never holds the release's own objects, and
//! installs, upgrades and uninstalls with the webhook down. Every rendering is made by both Helm
//! majors and must be the same; lint, NOTES and the install cycle run with each.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use super::cluster::ControlPlane;
use super::cluster_mode::{CONVERGE, ClusterWebhook, GSA_KEY, HASH_KEY, deployments, must};
use super::kube::{apply, assert_injected, assert_not_injected, get, list_without_namespace, text};
use super::process::{free_port, wait_for};

const PLAIN: &str = include_str!("../fixtures/carto-plain.yaml");
const RBAC: &str = include_str!("../../examples/rbac.yaml");
const README: &str = include_str!("../../charts/carto-wi-webhook/README.md");
const SCHEMA: &str = include_str!("../../charts/carto-wi-webhook/values.schema.json");
const VALUES: &str = include_str!("../../charts/carto-wi-webhook/values.yaml");

/// Kinds whose CRDs (cert-manager, Prometheus Operator) the e2e API server does not have.
const CRD_KINDS: [&str; 4] = ["Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"];

/// The acme configuration as chart values (the same values as the other scenarios).
pub(super) const ACME_VALUES: [&str; 10] = [
    "--set",
    "config.create=true",
    "--set",
    "config.workflowsTemp=acme-analytics.carto_workflows_temp",
    "--set",
    "config.billingProject=acme-gke-prod",
    "--set",
    "config.serviceAccountEmail=carto-wi@acme-analytics.iam.gserviceaccount.com",
    "--set-string",
    "config.connectionOwnerId=auth0|3idsj230990sj4wsddd10",
];

/// The admission port the chart renders unless `webhook.port` says otherwise.
const DEFAULT_PORT: u64 = 10250;

/// One Helm major: its binary in the control-plane bin dir (tests/controlplane/build.sh).
#[derive(Clone, Copy, Debug)]
pub(super) struct Helm {
    pub(super) bin: &'static str,
    pub(super) major: &'static str,
}

/// The majors the chart supports, the current one first.
pub(super) const HELMS: [Helm; 2] = [
    Helm {
        bin: "helm",
        major: "Helm 4",
    },
    Helm {
        bin: "helm3",
        major: "Helm 3",
    },
];

pub(super) fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/carto-wi-webhook")
}

/// Run helm (from the control-plane build) with its state kept under the run's folder.
pub(super) fn helm(cp: &ControlPlane, h: Helm, args: &[&str]) -> Output {
    let home = cp.dir.join(format!("{}-home", h.bin));
    let mut cmd = Command::new(cp.bin.join(h.bin));
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", &cp.kubeconfig)
        .stdin(Stdio::null());
    for v in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        cmd.env_remove(v);
    }
    cmd.output().expect("run helm")
}

/// `helm template RELEASE chart -n NS ARGS...` with one major: the stream, or helm's error.
fn template_with(
    cp: &ControlPlane,
    h: Helm,
    release: &str,
    ns: &str,
    args: &[&str],
) -> Result<String, String> {
    let chart = chart_dir();
    let mut all = vec!["template", release, chart.to_str().unwrap(), "-n", ns];
    all.extend_from_slice(args);
    let out = helm(cp, h, &all);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The rendered stream (the current major's), whose objects every Helm major must render the
/// same (they order kinds unknown to them, and space documents, each their own way).
pub(super) fn template(
    cp: &ControlPlane,
    release: &str,
    ns: &str,
    args: &[&str],
) -> Result<String, String> {
    let [current, older] = HELMS;
    let want = template_with(cp, current, release, ns, args);
    let got = template_with(cp, older, release, ns, args);
    if let (Ok(a), Ok(b)) = (&want, &got) {
        let (a, b) = (sorted_objects(a), sorted_objects(b));
        let differ = a.iter().zip(&b).find(|(x, y)| x != y);
        assert!(
            a.len() == b.len() && differ.is_none(),
            "{} and {} render {args:?} differently: {} and {} objects; first difference: {differ:?}",
            current.major,
            older.major,
            a.len(),
            b.len()
        );
    } else {
        assert_eq!(
            want.is_ok(),
            got.is_ok(),
            "{args:?}: {}: {want:?}; {}: {got:?}",
            current.major,
            older.major
        );
    }
    want
}

/// The objects of a stream as JSON text, sorted.
fn sorted_objects(stream: &str) -> Vec<String> {
    let mut all: Vec<String> = objects(stream).iter().map(Value::to_string).collect();
    all.sort();
    all
}

/// The objects of a rendered stream.
pub(super) fn objects(stream: &str) -> Vec<Value> {
    carto_wi_webhook::yaml::split_documents(stream)
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| carto_wi_webhook::yaml::parse(d.text).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

pub(super) fn find<'a>(objs: &'a [Value], k: &str) -> &'a Value {
    objs.iter()
        .find(|v| kind(v) == k)
        .unwrap_or_else(|| panic!("no {k} rendered"))
}

pub(super) fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// `helm lint --strict` is clean, and the schema refuses each bad value with its message.
pub fn chart_lint_and_schema_reject_bad_values(cp: &ControlPlane) {
    for h in HELMS {
        lint_and_schema(cp, h);
    }
}

fn lint_and_schema(cp: &ControlPlane, h: Helm) {
    let chart = chart_dir();
    let mut with_config = ACME_VALUES.to_vec();
    with_config.extend(["--set", "config.gkeClusterProject=acme-gke-prod"]);
    let with_policy = [
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "webhook.port=8443",
    ];
    for values in [&[][..], &with_config[..], &with_policy[..]] {
        let out = helm(
            cp,
            h,
            &[&["lint", "--strict", chart.to_str().unwrap()], values].concat(),
        );
        let said = text(&out);
        assert!(
            out.status.success(),
            "{} lint --strict {values:?}: {said}",
            h.major
        );
        assert!(
            !said.contains("[WARNING]") && !said.contains("[ERROR]"),
            "{} lint --strict {values:?}: {said}",
            h.major
        );
    }

    let bad: &[(&[&str], &str)] = &[
        (
            &["--set", "replicaCount=3"],
            "additional properties 'replicaCount' not allowed",
        ),
        (
            &["--set", "image.tagg=1"],
            "at '/image': additional properties 'tagg' not allowed",
        ),
        (
            &["--set-string", "replicas=2"],
            "at '/replicas': got string, want integer",
        ),
        (
            &["--set", "replicas=0"],
            "at '/replicas': minimum: got 0, want 1",
        ),
        (
            &["--set", "certs.mode=vault"],
            "at '/certs/mode': value must be one of 'self', 'certManager', 'provided'",
        ),
        (
            &["--set", "certs.mode=provided"],
            "at '/certs/provided/secretName': minLength: got 0, want 1",
        ),
        (
            &["--set", "policy.enforcement=block"],
            "at '/policy/enforcement': value must be one of 'deny', 'warn', 'audit'",
        ),
        (
            &["--set", "webhook.failurePolicy.mutating=ignore"],
            "at '/webhook/failurePolicy/mutating': value must be one of 'Ignore', 'Fail'",
        ),
        (
            &["--set", "webhook.timeoutSeconds=60"],
            "at '/webhook/timeoutSeconds': maximum: got 60, want 30",
        ),
        (
            &["--set", "webhook.url=http://127.0.0.1:8443"],
            "at '/webhook/url': 'http://127.0.0.1:8443' does not match pattern",
        ),
        (
            &["--set", "metrics.prometheusRule.certExpiryDays=0"],
            "at '/metrics/prometheusRule/certExpiryDays': minimum: got 0, want 1",
        ),
        (
            &["--set-string", "viewer.aggregateToView=yes"],
            "at '/viewer/aggregateToView': got string, want boolean",
        ),
        (
            &["--set", "log.format=yaml"],
            "at '/log/format': value must be one of 'json', 'text'",
        ),
        (
            &["--set", "reconcile.resync=10 minutes"],
            "at '/reconcile/resync': '10 minutes' does not match pattern",
        ),
        (
            &["--set", "policy.deployments[0]=Carto_API"],
            "at '/policy/deployments/0': 'Carto_API' does not match pattern",
        ),
        (
            &["--set", "config.create=true"],
            "at '/config/workflowsTemp': '' does not match pattern",
        ),
        (
            &[
                &ACME_VALUES[..],
                &[
                    "--set",
                    "config.serviceAccountEmail=carto-wi@acme.iam.gserviceaccount.com",
                ],
            ]
            .concat(),
            "at '/config/serviceAccountEmail': 'carto-wi@acme.iam.gserviceaccount.com' does not match pattern",
        ),
        (
            &[&ACME_VALUES[..], &["--set", "config.billingProject=Acme"]].concat(),
            "at '/config/billingProject': 'Acme' does not match pattern",
        ),
        // (helm's validator names the wrong path for propertyNames, so only the message is checked.)
        (
            &[
                "--set-string",
                "config.extra.WORKSPACE_WORKLOAD_IDENTITY_EXTRA=1",
            ],
            "invalid propertyName 'WORKSPACE_WORKLOAD_IDENTITY_EXTRA'",
        ),
        (
            &["--set-string", "config.extra.SYNC_ENABLED=1"],
            "'SYNC_ENABLED' does not match pattern '^WORKSPACE_[A-Z0-9_]+$'",
        ),
        (
            &["--set", "config.extra.WORKSPACE_SYNC_DATA_ENABLED=true"],
            "at '/config/extra/WORKSPACE_SYNC_DATA_ENABLED': got boolean, want string",
        ),
        (
            &[
                &ACME_VALUES[..],
                &[
                    "--set-string",
                    "config.extra.WORKSPACE_POSTGRES_PASSWORD=stolen",
                ],
            ]
            .concat(),
            "config.extra.WORKSPACE_POSTGRES_PASSWORD: not in policy.extraEnvAllowed",
        ),
        (
            &["--set", "policy.extraEnvAllowed={HOME}"],
            "at '/policy/extraEnvAllowed/0': 'HOME' does not match pattern",
        ),
        (
            &["--set", "certs.certManager.issuerRef.kind=Vault"],
            "at '/certs/certManager/issuerRef/kind': value must be one of 'Issuer', 'ClusterIssuer'",
        ),
        (
            &["--set", "webhook.port=443"],
            "at '/webhook/port': minimum: got 443, want 1,024",
        ),
        (
            &["--set", "webhook.port=8080"],
            "webhook.port: 8080 is the admin port (/livez, /readyz, /metrics); choose another",
        ),
        (
            &["--set", "webhook.failurePolicy.defaultConfig=Skip"],
            "at '/webhook/failurePolicy/defaultConfig': value must be one of 'Ignore', 'Fail'",
        ),
        (
            &["--set", "networkPolicy.enabled=yes"],
            "at '/networkPolicy/enabled': got string, want boolean",
        ),
        (
            &[
                "--set",
                "networkPolicy.metricsNamespaceSelector.matchExpressions[0].key=team",
                "--set",
                "networkPolicy.metricsNamespaceSelector.matchExpressions[0].operator=Is",
            ],
            "at '/networkPolicy/metricsNamespaceSelector/matchExpressions/0/operator': value must be one of 'In', 'NotIn', 'Exists', 'DoesNotExist'",
        ),
        (
            &[
                "--set",
                "networkPolicy.metricsNamespaceSelector.namespaces={a}",
            ],
            "at '/networkPolicy/metricsNamespaceSelector': additional properties 'namespaces' not allowed",
        ),
    ];
    let mut wrong = Vec::new();
    for (args, want) in bad {
        match template_with(cp, h, "bad", "bad-values", args) {
            Ok(_) => wrong.push(format!("{args:?}: accepted")),
            Err(e) if e.contains(want) => {}
            Err(e) => wrong.push(format!("{args:?}: wanted {want:?}, got {e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} schema table:\n{}",
        h.major,
        wrong.join("\n")
    );
}

/// Value combinations every install may take; each rendering goes to the API server.
fn combinations() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut configured = ACME_VALUES.to_vec();
    configured.extend([
        "--set",
        "config.gkeClusterProject=acme-gke-prod",
        "--set-string",
        "config.extra.WORKSPACE_SYNC_DATA_ENABLED=true",
        "--set",
        "policy.extraEnvAllowed={WORKSPACE_SYNC_DATA_ENABLED,WORKSPACE_POSTGRES_SSL_MODE}",
        "--set",
        "policy.objectOptOut=true",
        "--set",
        "policy.enforcement=warn",
        "--set",
        "policy.requireConfig=true",
        "--set",
        "policy.deployments={carto-workspace-api,carto-router}",
        "--set",
        "policy.includeInitContainers=true",
        "--set",
        "reconcile.enabled=false",
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set",
        "webhook.excludeNamespaces={legacy,sandbox}",
        "--set",
        "webhook.failurePolicy.mutating=Fail",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "log.format=text",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    vec![
        ("self", vec![]),
        (
            "self-secret-by-webhook",
            vec!["--set", "certs.self.createSecret=false"],
        ),
        ("cert-manager", vec!["--set", "certs.mode=certManager"]),
        (
            "cert-manager-cluster-issuer",
            vec![
                "--set",
                "certs.mode=certManager",
                "--set",
                "certs.certManager.issuerRef.name=corp-ca",
                "--set",
                "certs.certManager.issuerRef.kind=ClusterIssuer",
            ],
        ),
        (
            "provided",
            vec![
                "--set",
                "certs.mode=provided",
                "--set",
                "certs.provided.secretName=corp-tls",
                "--set",
                "certs.provided.caBundle=Y2EK",
            ],
        ),
        ("configured", configured),
        (
            "observability",
            vec![
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.dashboard.enabled=true",
                "--set",
                "metrics.prometheusRule.enabled=true",
                "--set",
                "viewer.aggregateToView=true",
            ],
        ),
        (
            "network-policy-custom-port",
            vec![
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "webhook.port=8443",
                "--set-json",
                r#"networkPolicy.admissionFrom=[{"ipBlock":{"cidr":"172.16.0.0/28"}}]"#,
                "--set",
                "networkPolicy.metricsNamespaceSelector.matchLabels=null",
                "--set-json",
                r#"networkPolicy.metricsNamespaceSelector.matchExpressions=[{"key":"team","operator":"In","values":["observability"]}]"#,
            ],
        ),
    ]
}

/// Every combination renders, and its objects pass a server-side dry run of the real API server
/// (admission, schema, CEL match conditions compiled). The cert-manager and Prometheus Operator
/// kinds have no CRD there: they are checked here by their fields instead.
pub fn chart_renders_accepted_by_api_server(cp: &ControlPlane) {
    for (i, (name, args)) in combinations().into_iter().enumerate() {
        let ns = format!("chart-dry-{i}");
        let stream = template(cp, "dry", &ns, &args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let objs = objects(&stream);
        must(
            cp.kubectl(&["create", "namespace", &ns], None),
            "create the namespace",
        );
        let (crd, core): (Vec<Value>, Vec<Value>) =
            objs.into_iter().partition(|v| CRD_KINDS.contains(&kind(v)));
        let out = cp.kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&list(core.clone())),
        );
        assert!(out.status.success(), "{name}: dry run: {}", text(&out));
        check_crd_objects(name, &ns, &core, &crd);
        check_deployment(name, &core);
        check_one_scope(name, &ns, &core);
        check_admission_port(name, &core, &args);
        check_network_policy(name, &core, &args);
    }
}

/// The reconciler's `--exclude-namespaces` is exactly the list both webhooks' namespaceSelector
/// leaves out: kube-system, the release namespace and webhook.excludeNamespaces.
fn check_one_scope(name: &str, ns: &str, core: &[Value]) {
    let args = &find(core, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    let flag: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--exclude-namespaces="))
        .flat_map(|v| v.split(','))
        .collect();
    let mut want = vec!["kube-system", ns];
    if name == "configured" {
        want.extend(["legacy", "sandbox"]);
    }
    assert_eq!(flag, want, "{name}: --exclude-namespaces in {args}");
    for k in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        // Every webhook that leaves namespaces out by name leaves out these.
        let selectors: Vec<Value> = find(core, k)["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| {
                w["namespaceSelector"]["matchExpressions"]
                    .as_array()?
                    .iter()
                    .find(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
                    .map(|e| e["values"].clone())
            })
            .collect();
        assert!(!selectors.is_empty(), "{name}: {k} leaves namespaces out");
        for values in selectors {
            assert_eq!(values, json!(flag), "{name}: {k} and the reconciler");
        }
    }
}

/// The value `--set KEY=VALUE` of a combination's arguments.
fn set_value<'a>(args: &[&'a str], key: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
}

/// `webhook.port` (default 10250) is the container port, the `--listen` port and the Service's
/// targetPort; the admin port stays 8080.
fn check_admission_port(name: &str, core: &[Value], args: &[&str]) {
    let port: u64 = set_value(args, "webhook.port").map_or(DEFAULT_PORT, |p| p.parse().unwrap());
    let c = &find(core, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["ports"],
        json!([{"name": "https", "containerPort": port, "protocol": "TCP"},
               {"name": "admin", "containerPort": 8080, "protocol": "TCP"}]),
        "{name}"
    );
    let listen: Vec<&Value> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.as_str().is_some_and(|a| a.contains("listen=")))
        .collect();
    assert_eq!(
        listen,
        [
            &json!(format!("--listen=0.0.0.0:{port}")),
            &json!("--admin-listen=0.0.0.0:8080")
        ],
        "{name}"
    );
    assert_eq!(
        find(core, "Service")["spec"]["ports"],
        json!([{"name": "https", "port": 443, "targetPort": port, "protocol": "TCP"},
               {"name": "metrics", "port": 8080, "targetPort": "admin", "protocol": "TCP"}]),
        "{name}"
    );
}

/// With `networkPolicy.enabled`: ingress to the webhook's pods only on the admission port (from
/// anyone, or `admissionFrom`) and the admin port (from the selected namespaces).
fn check_network_policy(name: &str, core: &[Value], args: &[&str]) {
    let policy = core.iter().find(|v| kind(v) == "NetworkPolicy");
    if set_value(args, "networkPolicy.enabled") != Some("true") {
        assert!(
            policy.is_none(),
            "{name}: a NetworkPolicy only when enabled"
        );
        return;
    }
    let policy = policy.unwrap_or_else(|| panic!("{name}: no NetworkPolicy"));
    let port: u64 = set_value(args, "webhook.port").map_or(DEFAULT_PORT, |p| p.parse().unwrap());
    let pod_labels = &find(core, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let selector = &policy["spec"]["podSelector"]["matchLabels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(
            pod_labels[k], *v,
            "{name}: the policy selects the webhook's pods"
        );
    }
    let mut admission = json!({"ports": [{"port": port, "protocol": "TCP"}]});
    let mut metrics_from = json!({"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}});
    if name == "network-policy-custom-port" {
        admission["from"] = json!([{"ipBlock": {"cidr": "172.16.0.0/28"}}]);
        metrics_from = json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["observability"]}]});
    }
    assert_eq!(
        policy["spec"],
        json!({
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                admission,
                {"ports": [{"port": 8080, "protocol": "TCP"}],
                 "from": [{"namespaceSelector": metrics_from}]}
            ]
        }),
        "{name}"
    );
}

/// cert-manager: the Certificate names the Service, its Secret is the one the pod mounts, its
/// issuer exists (or is the given one), and both webhook configurations ask for its CA.
fn check_crd_objects(name: &str, ns: &str, core: &[Value], crd: &[Value]) {
    let cert = crd.iter().find(|v| kind(v) == "Certificate");
    let certmanager = name.starts_with("cert-manager");
    assert_eq!(
        cert.is_some(),
        certmanager,
        "{name}: a Certificate iff cert-manager"
    );
    let svc = find(core, "Service")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    for k in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let annotation =
            &find(core, k)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
        match cert {
            Some(c) => assert_eq!(
                *annotation,
                format!("{ns}/{}", c["metadata"]["name"].as_str().unwrap()),
                "{name}: {k}"
            ),
            None => assert!(annotation.is_null(), "{name}: {k} {annotation}"),
        }
    }
    let Some(cert) = cert else {
        if name == "observability" {
            let rule = find(crd, "PrometheusRule");
            assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
            assert!(rule["spec"]["groups"][0]["rules"].as_array().unwrap().len() >= 6);
        }
        if name == "configured" {
            let sm = find(crd, "ServiceMonitor");
            assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
            assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
        }
        return;
    };
    assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
    let spec = &cert["spec"];
    assert_eq!(
        spec["dnsNames"],
        json!([
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local")
        ])
    );
    let mounted =
        &find(core, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"];
    assert_eq!(
        spec["secretName"], *mounted,
        "{name}: the pod mounts the Certificate's Secret"
    );
    let issuer = crd.iter().find(|v| kind(v) == "Issuer");
    match issuer {
        Some(i) => {
            assert_eq!(spec["issuerRef"]["name"], i["metadata"]["name"]);
            assert_eq!(spec["issuerRef"]["kind"], "Issuer");
            assert_eq!(i["spec"], json!({"selfSigned": {}}));
        }
        None => assert_eq!(
            spec["issuerRef"],
            json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        ),
    }
}

/// The pod spec items the chart promises, whatever the values.
fn check_deployment(name: &str, core: &[Value]) {
    let d = find(core, "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(d["spec"]["replicas"], 2, "{name}");
    assert_eq!(pod["automountServiceAccountToken"], true, "{name}");
    assert_eq!(
        find(core, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
    assert_eq!(
        c["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
               "privileged": false, "capabilities": {"drop": ["ALL"]},
               "seccompProfile": {"type": "RuntimeDefault"}}),
        "{name}"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/livez", "port": "admin"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    // The grace period covers the preStop sleep, --shutdown-delay and --shutdown-timeout.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let secs = |flag: &str| -> u64 {
        args.iter()
            .find_map(|a| a.strip_prefix(flag))
            .and_then(|v| v.strip_suffix('s'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {flag} in {args:?}"))
    };
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > pre_stop + secs("--shutdown-delay=") + secs("--shutdown-timeout="),
        "{name}: grace {grace}"
    );
    let pdb = find(core, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

/// The rules of every Role and ClusterRole of a stream but the viewer's (read-only, for people:
/// chart_observability), by kind.
fn rules_by_kind(objs: &[Value]) -> Vec<(String, Value)> {
    let mut rules: Vec<(String, Value)> = objs
        .iter()
        .filter(|v| matches!(kind(v), "Role" | "ClusterRole"))
        .filter(|v| {
            !v["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-viewer"))
        })
        .map(|v| (kind(v).to_owned(), v["rules"].clone()))
        .collect();
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    rules
}

/// The chart's RBAC is examples/rbac.yaml renamed after the release: exactly, when the webhook
/// creates its Secret; without `create` on Secrets when the chart creates it empty; without the
/// Secret and webhook-configuration rules when the certificate is not self-managed. The
/// bindings name the chart's ServiceAccount in the release namespace.
pub fn chart_rbac_is_examples_rbac(cp: &ControlPlane) {
    let ns = "carto-wi-system";
    let example = objects(RBAC);
    let expected = rules_by_kind(&example);
    // The default names in examples/rbac.yaml are those of a release named carto-wi-webhook.
    let rendered = |args: &[&str]| objects(&template(cp, "carto-wi-webhook", ns, args).unwrap());
    let exact = rendered(&["--set", "certs.self.createSecret=false"]);
    assert_eq!(
        rules_by_kind(&exact),
        expected,
        "self, Secret created by the webhook"
    );

    let without = |rules: &Value, drop: &dyn Fn(&Value) -> bool| -> Value {
        Value::Array(
            rules
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| !drop(r))
                .cloned()
                .collect(),
        )
    };
    let is_secret_create =
        |r: &Value| r["resources"] == json!(["secrets"]) && r["verbs"] == json!(["create"]);
    let is_cert_rule = |r: &Value| {
        r["resources"] == json!(["secrets"])
            || r["apiGroups"] == json!(["admissionregistration.k8s.io"])
    };
    let minus = |drop: &dyn Fn(&Value) -> bool| -> Vec<(String, Value)> {
        expected
            .iter()
            .map(|(k, r)| (k.clone(), without(r, drop)))
            .collect()
    };
    assert_eq!(
        rules_by_kind(&rendered(&[])),
        minus(&is_secret_create),
        "default: the chart's empty Secret"
    );
    assert_eq!(
        rules_by_kind(&rendered(&["--set", "certs.mode=certManager"])),
        minus(&is_cert_rule),
        "cert-manager"
    );
    // Without the reconciler, nothing reads or patches Deployments and ServiceAccounts.
    let is_reconciler_rule = |r: &Value| {
        is_secret_create(r)
            || r["resources"] == json!(["deployments"])
            || r["resources"] == json!(["serviceaccounts"])
    };
    assert_eq!(
        rules_by_kind(&rendered(&["--set", "reconcile.enabled=false"])),
        minus(&is_reconciler_rule),
        "reconcile.enabled=false"
    );
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        assert_eq!(
            find(&exact, binding)["subjects"],
            find(&example, binding)["subjects"]
        );
        assert_eq!(
            find(&exact, binding)["roleRef"],
            find(&example, binding)["roleRef"]
        );
    }
    // The flags name the same objects the rules grant.
    let args =
        find(&exact, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    for flag in [
        "--lease=carto-wi-webhook",
        "--webhook-configs=carto-wi-webhook",
        "--cert-secret=carto-wi-webhook-tls",
        "--service=carto-wi-webhook",
        "--config-map=carto-workload-identity",
        "--service-account=carto-common-backend",
    ] {
        assert!(
            args.as_array().unwrap().iter().any(|a| a == flag),
            "{flag} in {args}"
        );
    }
}

/// A leaf of the values schema: its dotted key, type, default (from values.yaml) and description.
fn schema_rows(schema: &Value, values: &Value, prefix: &str, rows: &mut Vec<String>) {
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    for (key, sub) in props {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let default = &values[key.as_str()];
        if sub["type"] == "object" && sub["properties"].is_object() {
            schema_rows(sub, default, &path, rows);
            continue;
        }
        let ty = match &sub["type"] {
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            t => t.as_str().unwrap_or("").to_owned(),
        };
        let allowed = sub["enum"]
            .as_array()
            .map(|e| {
                let names: Vec<String> = e
                    .iter()
                    .map(|v| format!("`{}`", v.as_str().unwrap_or("")))
                    .collect();
                format!(" One of {}.", names.join(", "))
            })
            .unwrap_or_default();
        rows.push(format!(
            "| `{path}` | {ty} | `{}` | {}{allowed} |",
            default,
            sub["description"]
                .as_str()
                .unwrap_or("")
                .replace('|', "\\|")
        ));
    }
}

/// The values table of the chart's README, as generated from the schema and values.yaml.
fn values_table() -> String {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let values = carto_wi_webhook::yaml::parse(VALUES).unwrap();
    let mut rows = vec![
        "| key | type | default | description |".to_owned(),
        "| --- | --- | --- | --- |".to_owned(),
    ];
    schema_rows(&schema, &values, "", &mut rows);
    rows.join("\n")
}

/// The chart's README holds the values table generated from the schema, and every value of
/// values.yaml has a schema entry (the schema forbids unknown keys, so this is the converse).
pub fn chart_readme_values_table_matches_schema(_: &ControlPlane) {
    let table = values_table();
    assert!(
        README.contains(&table),
        "charts/carto-wi-webhook/README.md: the values table differs from the schema; expected:\n{table}"
    );
}

/// Where checkov is: $CHECKOV, else the virtualenv tests/setup.sh installs it in, else PATH.
fn checkov(cp: &ControlPlane) -> PathBuf {
    if let Some(p) = std::env::var_os("CHECKOV") {
        return PathBuf::from(p);
    }
    let target = cp.bin.ancestors().nth(3).expect("target dir").to_path_buf();
    let venv = target.join("checkov-venv/bin/checkov");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("checkov")
}

/// The check ids the chart's README explains (its "Security scan" table).
fn explained_checks() -> Vec<String> {
    let section = README
        .split("## Security scan")
        .nth(1)
        .expect("the chart README has a Security scan section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// checkov's Kubernetes checks over every rendering: each failing check is one the chart's
/// README explains, and each explained check does fail (no stale explanation).
pub fn chart_security_scan(cp: &ControlPlane) {
    let explained = explained_checks();
    let dir = cp.dir.join("chart-scan");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    // A release per rendering: checkov relates objects across files by their labels, and one
    // rendering's NetworkPolicy must not cover another's pods.
    for (name, args) in combinations() {
        let stream = template(cp, &format!("scan-{name}"), "carto-wi-system", &args).unwrap();
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, stream).unwrap();
        files.push(file);
    }
    let bin = checkov(cp);
    // Files one by one: a directory walk skips every path with a hidden component, such as a
    // target dir under ~/.cache.
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--framework",
        "kubernetes",
        "--quiet",
        "--compact",
        "-o",
        "json",
    ]);
    for f in &files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} ({e}); install it with tests/setup.sh or set CHECKOV",
                bin.display()
            )
        });
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov output is not JSON ({e}): {}", text(&out)));
    let passed = match &report {
        Value::Array(runs) => runs
            .iter()
            .map(|r| r["summary"]["passed"].as_u64().unwrap_or(0))
            .sum(),
        r => r["summary"]["passed"].as_u64().unwrap_or(0),
    };
    assert!(passed > 0, "checkov ran no check: {report}");
    let failed: Vec<Value> = match &report {
        Value::Array(runs) => runs.iter().flat_map(failed_checks).collect(),
        r => failed_checks(r),
    };
    let mut seen: Vec<String> = Vec::new();
    let mut unexplained = Vec::new();
    for f in &failed {
        let id = f["check_id"].as_str().unwrap_or("").to_owned();
        if !explained.contains(&id) {
            unexplained.push(format!("{id} {} on {}", f["check_name"], f["resource"]));
        }
        seen.push(id);
    }
    assert!(
        unexplained.is_empty(),
        "failing checks not explained in the chart README:\n{}",
        unexplained.join("\n")
    );
    let stale: Vec<&String> = explained.iter().filter(|id| !seen.contains(id)).collect();
    assert!(
        stale.is_empty(),
        "the chart README explains checks that pass: {stale:?}"
    );
}

fn failed_checks(run: &Value) -> Vec<Value> {
    run["results"]["failed_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The chart's own objects at work. The rendered RBAC, ServiceAccount, empty Secret, ConfigMap
/// (from values) and webhook configurations (with the `webhook.url` development override, so the
/// API server calls a process on loopback) are applied; the webhook runs with exactly the
/// rendered container's arguments and environment (listen addresses on loopback, plus
/// `--kubeconfig` with the chart ServiceAccount's token and `--cert-extra-names 127.0.0.1`). A
/// plain CARTO install then comes out injected, one installed before the webhook is brought to
/// the config by the reconciler, only target objects are sent to the webhook, and the Event
/// carries the IAM binding NOTES prints.
pub fn chart_objects_inject_plain_carto_install(cp: &ControlPlane) {
    let (release, ns, carto) = ("chartwi", "chartwi-system", "chartwi-carto");
    let existing = "chartwi-existing";
    let (backend, config) = ("chartwi-backend", "chartwi-config");
    let port = free_port();
    let url = format!("webhook.url=https://127.0.0.1:{port}");
    let mut args = ACME_VALUES.to_vec();
    let sets = [
        "--set".to_owned(),
        url,
        "--set".into(),
        format!("config.name={config}"),
        "--set".into(),
        format!("policy.serviceAccount={backend}"),
        "--set".into(),
        format!("config.cartoNamespace={existing}"),
        "--set".into(),
        "config.gkeClusterProject=acme-gke-prod".into(),
    ];
    args.extend(sets.iter().map(String::as_str));
    let objs = objects(&template(cp, release, ns, &args).unwrap());
    let manifest = list_without_namespace(&PLAIN.replace("carto-common-backend", backend), |v| {
        matches!(
            kind(v),
            "ServiceAccount" | "ConfigMap" | "Service" | "Deployment"
        )
    });
    // One CARTO install exists before the webhook (the reconciler's job), one comes after
    // (admission's job).
    must(
        cp.kubectl(&["create", "namespace", existing], None),
        "create a CARTO namespace",
    );
    let out = apply(cp, existing, &manifest, &[]);
    assert!(
        out.status.success(),
        "apply the plain install: {}",
        text(&out)
    );
    must(
        cp.kubectl(&["create", "namespace", ns], None),
        "create the release namespace",
    );
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&list(objs.clone())));
    assert!(
        out.status.success(),
        "apply the chart's objects: {}",
        text(&out)
    );

    let deployment = find(&objs, "Deployment");
    let sa = find(&objs, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = run_rendered_container(cp, deployment, ns, &sa, port);
    hook.wait_ready();
    let webhooks = find(&objs, "MutatingWebhookConfiguration")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_ca_bundles(cp, &webhooks);

    must(
        cp.kubectl(&["create", "namespace", carto], None),
        "create the CARTO namespace",
    );
    let out = apply(cp, carto, &manifest, &[]);
    assert!(
        out.status.success(),
        "apply the plain install: {}",
        text(&out)
    );

    let sa_obj = get(cp, carto, "serviceaccount", backend);
    assert_eq!(
        sa_obj["metadata"]["annotations"][GSA_KEY],
        "carto-wi@acme-analytics.iam.gserviceaccount.com"
    );
    assert_plain_install_injected(cp, carto, backend);
    wait_for(
        "the reconciler injecting the earlier install",
        CONVERGE,
        || {
            let sa = get(cp, existing, "serviceaccount", backend);
            sa["metadata"]["annotations"][HASH_KEY]
                .is_string()
                .then_some(())
        },
    );
    wait_for(
        "every Deployment of the earlier install patched",
        CONVERGE,
        || {
            deployments(cp, existing)
                .iter()
                .filter(|d| d["spec"]["template"]["spec"]["serviceAccountName"] == backend)
                .all(|d| d["spec"]["template"]["metadata"]["annotations"][HASH_KEY].is_string())
                .then_some(())
        },
    );
    assert_plain_install_injected(cp, existing, backend);
    assert_only_targets_reviewed(&hook);
    assert_event_matches_notes(cp, &args, existing);
    hook.stop();
}

/// Start the webhook as the rendered container would run: its args and env, the downward API
/// filled in (namespace `ns`, pod name), listening on loopback, with `sa`'s token.
pub(super) fn run_rendered_container(
    cp: &ControlPlane,
    deployment: &Value,
    ns: &str,
    sa: &str,
    port: u16,
) -> ClusterWebhook {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let admin_port = free_port();
    let identity = "chartwi-0";
    let token = must(
        cp.kubectl(&["create", "token", sa, "-n", ns, "--duration=1h"], None),
        "create a token",
    );
    let dir = cp.dir.join("chart-install");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, token_kubeconfig(cp, token.trim())).unwrap();
    // The chart's admission policy judges every write the webhook makes from its first one.
    let configs = deployment["metadata"]["name"].as_str().expect("named");
    super::least_privilege::wait_policy_active(cp, &kubeconfig, configs);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_carto-wi-webhook"));
    for arg in container["args"].as_array().expect("rendered args") {
        let arg = arg.as_str().expect("string args");
        let arg = if arg.starts_with("--listen=") {
            format!("--listen=127.0.0.1:{port}")
        } else if arg.starts_with("--admin-listen=") {
            format!("--admin-listen=127.0.0.1:{admin_port}")
        } else {
            arg.to_owned()
        };
        cmd.arg(arg);
    }
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--cert-extra-names=127.0.0.1");
    for v in [
        "KUBECONFIG",
        "POD_NAMESPACE",
        "POD_NAME",
        "KUBERNETES_SERVICE_HOST",
    ] {
        cmd.env_remove(v);
    }
    for e in container["env"].as_array().expect("rendered env") {
        let name = e["name"].as_str().unwrap();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.namespace") => ns.to_owned(),
            Some("metadata.name") => identity.to_owned(),
            Some(other) => panic!("env {name} from unsupported field {other}"),
            None => e["value"].as_str().expect("literal env value").to_owned(),
        };
        cmd.env(name, value);
    }
    ClusterWebhook::spawn(identity, port, admin_port, dir.join("webhook.log"), cmd)
}

pub(super) fn token_kubeconfig(cp: &ControlPlane, token: &str) -> String {
    let admin = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("the admin kubeconfig names the server");
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: webhook\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: webhook}}\ncurrent-context: e2e\n",
        cp.dir.join("ca.crt").display()
    )
}

/// Wait until the webhook wrote its CA into every entry of both configurations named `name`.
pub(super) fn wait_ca_bundles(cp: &ControlPlane, name: &str) {
    wait_for(
        "caBundle in every entry of both chart webhook configurations",
        CONVERGE,
        || {
            [
                "mutatingwebhookconfiguration",
                "validatingwebhookconfiguration",
            ]
            .iter()
            .all(|k| {
                let out = cp.kubectl(&["get", k, name, "-o", "json"], None);
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                v["webhooks"].as_array().is_some_and(|entries| {
                    !entries.is_empty()
                        && entries.iter().all(|e| {
                            e["clientConfig"]["caBundle"]
                                .as_str()
                                .is_some_and(|b| !b.is_empty())
                        })
                })
            })
            .then_some(())
        },
    );
}

/// The 10 target Deployments of the plain install carry the config in every container and its
/// hash; init containers and the other 4 Deployments are untouched.
fn assert_plain_install_injected(cp: &ControlPlane, ns: &str, backend: &str) {
    let all = deployments(cp, ns);
    assert_eq!(all.len(), 14);
    let runs_as = |d: &Value| d["spec"]["template"]["spec"]["serviceAccountName"] == backend;
    assert_eq!(all.iter().filter(|d| runs_as(d)).count(), 10);
    for d in &all {
        let spec = &d["spec"]["template"]["spec"];
        let containers = spec["containers"].as_array().unwrap().len();
        let hash = &d["spec"]["template"]["metadata"]["annotations"][HASH_KEY];
        if runs_as(d) {
            (0..containers).for_each(|c| assert_injected(d, "containers", c));
            assert_eq!(
                hash.as_str().map(str::len),
                Some(12),
                "{}",
                d["metadata"]["name"]
            );
            let inits = spec["initContainers"].as_array().map_or(0, Vec::len);
            (0..inits).for_each(|c| assert_not_injected(d, "initContainers", c));
        } else {
            (0..containers).for_each(|c| assert_not_injected(d, "containers", c));
            assert!(hash.is_null(), "{}", d["metadata"]["name"]);
        }
    }
}

/// The match conditions sent only target objects: no review of any other kind was answered,
/// although the plain install also created ConfigMaps, Services and other ServiceAccounts.
fn assert_only_targets_reviewed(hook: &ClusterWebhook) {
    let metrics = hook.metrics();
    let reviewed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("carto_wi_admission_requests_total{"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(!reviewed.is_empty(), "no review counted:\n{metrics}");
    for line in reviewed {
        assert!(
            line.contains("kind=\"ServiceAccount\"") || line.contains("kind=\"Deployment\""),
            "a non-target object reached the webhook: {line}"
        );
    }
}

/// The `gcloud iam` command of the NOTES, on one line.
fn notes_gcloud(notes: &str) -> String {
    let gcloud: String = notes
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("gcloud iam"))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_end_matches('\\').trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        gcloud.starts_with("gcloud iam service-accounts add-iam-policy-binding"),
        "NOTES:\n{notes}"
    );
    gcloud
}

/// The IAM binding the release's NOTES print is the one the webhook posts on the ServiceAccount.
fn assert_event_matches_notes(cp: &ControlPlane, args: &[&str], carto: &str) {
    let chart = chart_dir();
    // In a namespace of its own: helm looks for existing objects to adopt even in a dry run.
    let mut all = vec![
        "install",
        "notes",
        chart.to_str().unwrap(),
        "-n",
        "chartwi-notes",
        "--dry-run=client",
    ];
    all.extend_from_slice(args);
    let [current, older] = HELMS.map(|h| {
        let notes = must(
            helm(cp, h, &all),
            &format!("{} install --dry-run=client", h.major),
        );
        notes_gcloud(&notes)
    });
    assert_eq!(current, older, "the NOTES' command under each Helm major");
    let gcloud = current;
    let event = wait_for("WorkloadIdentityBindingRequired Event", CONVERGE, || {
        let out = cp.kubectl(
            &[
                "get",
                "events",
                "-n",
                carto,
                "--field-selector",
                "reason=WorkloadIdentityBindingRequired",
                "-o",
                "json",
            ],
            None,
        );
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list["items"].as_array()?.first().cloned()
    });
    let message = event["message"].as_str().unwrap_or("");
    // NOTES adds `--project` (as CARTO's own documentation does); the rest is the same command.
    let without_project = gcloud.split(" --project ").next().unwrap();
    assert!(
        message.contains(without_project),
        "Event {message:?} does not carry the NOTES command {without_project:?}"
    );
}
