//! carto-wi-webhook in cluster mode (`serve` without `--config`) against the e2e control plane,
//! authenticating only as a ServiceAccount bound to examples/rbac.yaml.
//!
//! Every cluster-mode reconciler works cluster-wide, so each scenario renames everything after
//! its own prefix `n` (ConfigMap `n-config`, target ServiceAccount `n-backend`, namespace
//! `n-system`, webhook configurations and Lease `n-webhook`, Secret `n-tls`): scenarios running
//! in parallel on the shared control plane never see each other's objects.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::cluster::ControlPlane;
use super::kube::{apply, list_without_namespace, namespace, text};
use super::process::{Proc, free_port, wait_for};

/// Deadline for anything asynchronous (watch, reconcile, leader election) to converge. Generous:
/// the suite shares a few CPUs; nothing asserts on how long it took.
pub const CONVERGE: Duration = Duration::from_secs(60);

const RBAC: &str = include_str!("../../examples/rbac.yaml");
const WEBHOOKS: &str = include_str!("manifests/cluster-webhooks.yaml");
const PLAIN: &str = include_str!("../fixtures/carto-plain.yaml");
/// Label the webhook configurations select namespaces by.
const SELECTOR_LABEL: &str = "e2e.carto.com/webhook";
/// Annotation with the config fingerprint (ServiceAccount metadata, Deployment pod template).
pub const HASH_KEY: &str = "workload-identity.carto.com/config-hash";
/// Annotation written on the target ServiceAccount.
pub const GSA_KEY: &str = "iam.gke.io/gcp-service-account";
/// Label that opts a namespace out.
pub const OPT_OUT: (&str, &str) = ("workload-identity.carto.com/inject", "false");

/// The target Deployments of the fixture: env null; two containers (env null); an init container
/// and `valueFrom` env.
pub const TARGET_DEPLOYMENTS: [&str; 3] = [
    "carto-cdn-invalidator-sub",
    "carto-router",
    "carto-workspace-api",
];
/// A Deployment of the fixture that runs as another ServiceAccount: never touched.
pub const BYSTANDER: &str = "carto-http-cache";

/// Every name of one scenario's install, derived from its prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub n: String,
}

impl Names {
    pub fn new(n: &str) -> Self {
        Self { n: n.to_owned() }
    }
    /// The webhook's own namespace (its ConfigMap is the cluster default).
    pub fn system(&self) -> String {
        format!("{}-system", self.n)
    }
    /// Its ServiceAccount, ClusterRole, Role, Lease, Service and both webhook configurations.
    pub fn webhook(&self) -> String {
        format!("{}-webhook", self.n)
    }
    pub fn tls(&self) -> String {
        format!("{}-tls", self.n)
    }
    pub fn config(&self) -> String {
        format!("{}-config", self.n)
    }
    pub fn backend(&self) -> String {
        format!("{}-backend", self.n)
    }
    /// A namespace of this scenario.
    pub fn ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.n)
    }

    /// `text` with the default names replaced by this scenario's (longest first, so
    /// carto-wi-webhook-tls is not read as carto-wi-webhook).
    pub fn render(&self, text: &str) -> String {
        text.replace("carto-wi-webhook-tls", &self.tls())
            .replace("carto-wi-webhook", &self.webhook())
            .replace("carto-wi-system", &self.system())
            .replace("carto-workload-identity", &self.config())
            .replace("carto-common-backend", &self.backend())
    }
}

/// Workload Identity values of one ConfigMap.
#[derive(Debug, Clone, Copy)]
pub struct WiValues {
    pub temp: &'static str,
    pub billing: &'static str,
    pub email: &'static str,
    pub owner: &'static str,
    pub project: &'static str,
}

/// The acme example (the same values as the standalone scenarios).
pub const ACME: WiValues = WiValues {
    temp: "acme-analytics.carto_workflows_temp",
    billing: "acme-gke-prod",
    email: "carto-wi@acme-analytics.iam.gserviceaccount.com",
    owner: "auth0|3idsj230990sj4wsddd10",
    project: "acme-gke-prod",
};

/// The acme example after an edit of every value.
pub const ACME_V2: WiValues = WiValues {
    temp: "acme-analytics.carto_workflows_v2",
    billing: "acme-billing-two",
    email: "carto-wi-two@acme-analytics.iam.gserviceaccount.com",
    owner: "auth0|second0000000000000",
    project: "acme-gke-prod",
};

/// A team's own namespace ConfigMap.
pub const TEAM: WiValues = WiValues {
    temp: "team-data.team_temp",
    billing: "team-billing-one",
    email: "team-wi@team-data.iam.gserviceaccount.com",
    owner: "auth0|teamowner000000000",
    project: "team-gke-cluster",
};

impl WiValues {
    /// The four variables every target container gets.
    pub fn env(&self) -> [(&'static str, &'static str); 4] {
        [
            ("WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP", self.temp),
            ("WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT", self.billing),
            (
                "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL",
                self.email,
            ),
            (
                "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
                self.owner,
            ),
        ]
    }

    /// The ConfigMap named `names.config()` holding these values (JSON, no namespace).
    pub fn config_map(&self, names: &Names) -> String {
        let mut data = serde_json::Map::new();
        for (k, v) in self.env() {
            data.insert(k.into(), v.into());
        }
        data.insert("GKE_CLUSTER_PROJECT".into(), self.project.into());
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": names.config()}, "data": data})
            .to_string()
    }

    /// The IAM binding command posted on the ServiceAccount `sa` of namespace `ns`.
    pub fn gcloud(&self, ns: &str, sa: &str) -> String {
        format!(
            "gcloud iam service-accounts add-iam-policy-binding {} --role roles/iam.workloadIdentityUser --member \"serviceAccount:{}.svc.id.goog[{ns}/{sa}]\"",
            self.email, self.project
        )
    }
}

/// What a scenario installs for its webhook(s): the namespace, the ServiceAccount and a
/// kubeconfig with its token, the two webhook configurations (no caBundle); the roles and
/// bindings of examples/rbac.yaml come with [`Install::bind`].
pub struct Install {
    pub names: Names,
    pub dir: PathBuf,
    /// Authenticates as the webhook's ServiceAccount, and only as it.
    pub kubeconfig: PathBuf,
    /// The port the webhook configurations call (https://127.0.0.1:port).
    pub port: u16,
    kubectl: PathBuf,
}

impl Install {
    pub fn prepare(cp: &ControlPlane, n: &str) -> Self {
        let names = Names::new(n);
        let dir = cp.dir.join(format!("cluster-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let identity = rbac_objects(&names, |kind| {
            matches!(kind, "Namespace" | "ServiceAccount")
        });
        must(
            cp.kubectl(&["apply", "-f", "-"], Some(&identity)),
            "apply the namespace and ServiceAccount",
        );
        let token = must(
            cp.kubectl(
                &[
                    "create",
                    "token",
                    &names.webhook(),
                    "-n",
                    &names.system(),
                    "--duration=1h",
                ],
                None,
            ),
            "create a token",
        );
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, token_kubeconfig(cp, token.trim())).unwrap();
        let port = free_port();
        let webhooks = WEBHOOKS
            .replace("${NAME}", n)
            .replace("${URL}", &format!("https://127.0.0.1:{port}"));
        must(
            cp.kubectl(&["apply", "-f", "-"], Some(&webhooks)),
            "create the webhook configurations",
        );
        Self {
            names,
            dir,
            kubeconfig,
            port,
            kubectl: cp.bin.join("kubectl"),
        }
    }

    /// Apply the ClusterRole, Role and their bindings of examples/rbac.yaml, and the chart's
    /// admission policy for this webhook.
    pub fn bind(&self, cp: &ControlPlane) {
        self.bind_allowing(cp, &[]);
    }

    /// [`Install::bind`], the policy allowing these extra variables (`--extra-env`): every write
    /// the webhook then makes is judged by the policy the chart ships.
    pub fn bind_allowing(&self, cp: &ControlPlane, extra_env: &[&str]) {
        self.bind_kinds(
            cp,
            &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        );
        let (ns, name) = (self.names.system(), self.names.webhook());
        super::least_privilege::apply_chart_policy(cp, &ns, &name, extra_env, &self.kubeconfig);
    }

    /// Apply only the objects of examples/rbac.yaml of these kinds.
    pub fn bind_kinds(&self, cp: &ControlPlane, kinds: &[&str]) {
        let rbac = rbac_objects(&self.names, |kind| kinds.contains(&kind));
        must(
            cp.kubectl(&["apply", "-f", "-"], Some(&rbac)),
            "apply RBAC roles and bindings",
        );
    }

    /// kubectl as the webhook's ServiceAccount.
    pub fn kubectl_as_webhook(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::null());
        for v in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env_remove(v);
        }
        cmd.output().expect("run kubectl")
    }

    /// The CA in the caBundle of the mutating and the validating configuration (PEM), if written.
    pub fn ca_bundles(&self, cp: &ControlPlane) -> [Option<String>; 2] {
        [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ]
        .map(|kind| {
            let out = cp.kubectl(&["get", kind, &self.names.webhook(), "-o", "json"], None);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let b64 = v["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
            let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(pem)
                .ok()
                .filter(|p| p.contains("BEGIN CERTIFICATE"))
        })
    }

    /// Wait until the webhook wrote its CA into both configurations and the API server calls it
    /// successfully (failurePolicy is Fail, so a call that fails TLS refuses the request). The
    /// probe is a server-side dry run of the target ServiceAccount in the webhook's namespace:
    /// answered either with a patch (a config exists) or with a warning (none yet).
    pub fn wait_api_server_calls_webhook(&self, cp: &ControlPlane) -> String {
        let ca = wait_for(
            "caBundle in both webhook configurations",
            CONVERGE,
            || match self.ca_bundles(cp) {
                [Some(m), Some(v)] => {
                    assert_eq!(m, v, "both configurations trust the same CA");
                    Some(m)
                }
                _ => None,
            },
        );
        let (sa, ns) = (self.names.backend(), self.names.system());
        wait_for("the API server calling the webhook", CONVERGE, || {
            let out = cp.kubectl(
                &[
                    "create",
                    "serviceaccount",
                    &sa,
                    "-n",
                    &ns,
                    "--dry-run=server",
                    "-o",
                    "json",
                ],
                None,
            );
            let shown: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let patched = shown["metadata"]["annotations"].get(GSA_KEY).is_some();
            let warned = String::from_utf8_lossy(&out.stderr).contains("Warning:");
            (out.status.success() && (patched || warned)).then_some(())
        });
        ca
    }
}

/// The objects of examples/rbac.yaml renamed for `names`, those whose kind `keep` accepts, as a
/// JSON List. The webhook's namespace also gets the selector label, so its default ConfigMap
/// goes through validation like any other.
fn rbac_objects(names: &Names, keep: impl Fn(&str) -> bool) -> String {
    let rendered = names.render(RBAC);
    let items: Vec<Value> = carto_wi_webhook::yaml::split_documents(&rendered)
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| carto_wi_webhook::yaml::parse(d.text).expect("examples/rbac.yaml parses"))
        .filter(|v| keep(v["kind"].as_str().unwrap_or("")))
        .map(|mut v| {
            if v["kind"] == "Namespace" {
                v["metadata"]["labels"] = json!({SELECTOR_LABEL: names.webhook()});
            }
            v
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// A kubeconfig for the control plane's server and CA that authenticates with `token`.
fn token_kubeconfig(cp: &ControlPlane, token: &str) -> String {
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

/// The command's stdout; panics with its output if it failed.
pub fn must(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// One `carto-wi-webhook serve` process in cluster mode.
pub struct ClusterWebhook {
    pub identity: String,
    pub port: u16,
    pub admin_port: u16,
    pub log: PathBuf,
    proc: Mutex<Option<Proc>>,
}

impl ClusterWebhook {
    /// Start a replica named `identity` listening on `port`, with `extra` flags; does not wait.
    pub fn launch(install: &Install, identity: &str, port: u16, extra: &[&str]) -> Self {
        let names = &install.names;
        let admin_port = free_port();
        let log = install.dir.join(format!("{identity}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carto-wi-webhook"));
        cmd.arg("serve")
            .arg(format!("--kubeconfig={}", install.kubeconfig.display()))
            .arg(format!("--namespace={}", names.system()))
            .arg(format!("--config-map={}", names.config()))
            .arg(format!("--service-account={}", names.backend()))
            .arg(format!("--webhook-configs={}", names.webhook()))
            .arg(format!("--cert-secret={}", names.tls()))
            .arg(format!("--lease={}", names.webhook()))
            .arg(format!("--service={}", names.webhook()))
            .arg("--cert-extra-names=localhost,127.0.0.1")
            .arg("--reconcile-qps=50")
            .arg("--log-level=info")
            .arg(format!("--identity={identity}"))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
            .args(extra);
        // Only the flags above decide where it runs and as whom.
        for v in [
            "KUBECONFIG",
            "POD_NAMESPACE",
            "POD_NAME",
            "KUBERNETES_SERVICE_HOST",
        ] {
            cmd.env_remove(v);
        }
        Self::spawn(identity, port, admin_port, log, cmd)
    }

    /// Run `cmd` (a `serve` listening on `port`, admin on `admin_port`) as replica `identity`,
    /// its output in `log`; does not wait.
    pub fn spawn(identity: &str, port: u16, admin_port: u16, log: PathBuf, cmd: Command) -> Self {
        let proc = Proc::spawn(&format!("webhook {identity}"), cmd, &log);
        Self {
            identity: identity.to_owned(),
            port,
            admin_port,
            log,
            proc: Mutex::new(Some(proc)),
        }
    }

    /// Prepare, bind and start one replica on the configurations' port; wait until it is ready
    /// and the API server calls it with the CA it wrote. Returns the install and the replica.
    pub fn up(cp: &ControlPlane, n: &str) -> (Install, Self) {
        let install = Install::prepare(cp, n);
        install.bind(cp);
        let hook = Self::launch(&install, &format!("{n}-0"), install.port, &[]);
        hook.wait_ready();
        install.wait_api_server_calls_webhook(cp);
        (install, hook)
    }

    /// Panics (with the log's tail) if the process exited.
    pub fn assert_running(&self) {
        if let Some(p) = self.proc.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            p.assert_running(&self.log);
        }
    }

    /// `/readyz`: status and body, once the admin listener answers.
    pub fn readyz(&self) -> Option<(u16, String)> {
        self.assert_running();
        http_get(self.admin_port, "/readyz")
    }

    pub fn wait_ready(&self) {
        wait_for(&format!("{} /readyz 200", self.identity), CONVERGE, || {
            matches!(self.readyz(), Some((200, _))).then_some(())
        });
    }

    /// The /metrics text.
    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one series of /metrics (labels in any order), if exposed.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.metrics(), name, labels)
    }

    /// Wait until series `name` with `labels` has value `want`.
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let what = format!("{} {name}{labels:?} = {want}", self.identity);
        wait_until(&what, || match self.metric(name, labels) {
            Some(v) if (v - want).abs() < f64::EPSILON => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }

    /// Stop the process (SIGTERM); returns its exit code.
    pub fn stop(&self) -> Option<i32> {
        self.proc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .and_then(|mut p| p.terminate())
    }

    /// POST an AdmissionReview to /mutate over TLS, trusting only `ca_pem`; the response review.
    pub fn post_mutate(&self, ca_pem: &str, review: &Value) -> Result<Value, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("https://127.0.0.1:{}/mutate", self.port);
        rt.block_on(async {
            let ca =
                reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
            let client = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca)
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?;
            let resp = client
                .post(&url)
                .json(review)
                .send()
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("POST {url}: {status} {body}"))
            }
        })
    }
}

impl Drop for ClusterWebhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Plain-HTTP GET on loopback: status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of series `name` with (at least) `labels` in Prometheus text.
pub fn metric_value(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
}

/// A namespace selected by this scenario's webhook configurations, with `extra` labels.
pub fn selected_namespace(cp: &ControlPlane, names: &Names, ns: &str, extra: &[(&str, &str)]) {
    namespace(cp, ns, Some(&names.webhook()), extra);
}

/// A namespace the webhook configurations do not select (the reconciler still sees it).
pub fn unselected_namespace(cp: &ControlPlane, ns: &str) {
    namespace(cp, ns, None, &[]);
}

/// The fixture (from the CARTO plain install) renamed for `names`: the target ServiceAccount,
/// the three target Deployments, and a Deployment with its ServiceAccount that are no target.
pub fn fixtures(names: &Names) -> String {
    let keep: Vec<&str> = TARGET_DEPLOYMENTS
        .iter()
        .copied()
        .chain([BYSTANDER])
        .collect();
    let plain = PLAIN.replace("carto-common-backend", &names.backend());
    let backend = names.backend();
    list_without_namespace(&plain, |v| {
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        match v["kind"].as_str() {
            Some("ServiceAccount") => name == backend || name == BYSTANDER,
            Some("Deployment") => keep.contains(&name),
            _ => false,
        }
    })
}

/// Create the fixture in `ns`.
pub fn install_fixtures(cp: &ControlPlane, names: &Names, ns: &str) {
    let out = apply(cp, ns, &fixtures(names), &[]);
    assert!(out.status.success(), "fixtures in {ns}: {}", text(&out));
}

/// The target ServiceAccount of `ns`.
pub fn service_account(cp: &ControlPlane, names: &Names, ns: &str) -> Value {
    super::kube::get(cp, ns, "serviceaccount", &names.backend())
}

/// Every Deployment of `ns`.
pub fn deployments(cp: &ControlPlane, ns: &str) -> Vec<Value> {
    let out = cp.kubectl(&["get", "deployments", "-n", ns, "-o", "json"], None);
    let list: Value = serde_json::from_str(&must(out, "list Deployments")).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The Deployments of `ns` that run as the target ServiceAccount.
pub fn target_deployments(cp: &ControlPlane, names: &Names, ns: &str) -> Vec<Value> {
    deployments(cp, ns)
        .into_iter()
        .filter(|d| d["spec"]["template"]["spec"]["serviceAccountName"] == names.backend())
        .collect()
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// Why one Deployment does not carry `values` in every container (None: it does).
fn deployment_drift(d: &Value, values: &WiValues) -> Option<String> {
    let containers = d["spec"]["template"]["spec"]["containers"].as_array()?;
    for c in containers {
        let env = c["env"].as_array().cloned().unwrap_or_default();
        for (k, want) in values.env() {
            let found: Vec<&Value> = env.iter().filter(|e| e["name"] == k).collect();
            if found.is_empty() || found.iter().any(|e| e["value"] != want) {
                return Some(format!(
                    "{} container {}: {k} is {found:?}",
                    name_of(d),
                    c["name"]
                ));
            }
        }
    }
    None
}

/// When every target of `ns` carries `values` (annotation, env in every container) and one
/// config-hash: that hash. Otherwise why not, for the timeout message.
pub fn converged(
    cp: &ControlPlane,
    names: &Names,
    ns: &str,
    values: &WiValues,
) -> Result<String, String> {
    let sa = service_account(cp, names, ns);
    let annotations = &sa["metadata"]["annotations"];
    if annotations[GSA_KEY] != values.email {
        return Err(format!(
            "ServiceAccount {ns}: annotation is {}",
            annotations[GSA_KEY]
        ));
    }
    let hash = annotations[HASH_KEY]
        .as_str()
        .ok_or_else(|| format!("ServiceAccount {ns}: no config-hash"))?
        .to_owned();
    let targets = target_deployments(cp, names, ns);
    if targets.len() != TARGET_DEPLOYMENTS.len() {
        return Err(format!("{ns}: {} target Deployments", targets.len()));
    }
    for d in &targets {
        if let Some(why) = deployment_drift(d, values) {
            return Err(why);
        }
        let h = &d["spec"]["template"]["metadata"]["annotations"][HASH_KEY];
        if *h != hash.as_str() {
            return Err(format!(
                "{} config-hash {h}, ServiceAccount's {hash}",
                name_of(d)
            ));
        }
    }
    Ok(hash)
}

/// Poll `f` until it returns `Ok`, for at most [`CONVERGE`]; on timeout, panic with the last
/// reason it gave.
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(why) if std::time::Instant::now() > deadline => {
                panic!("timed out after {CONVERGE:?} waiting for {what}; last: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Wait until `ns` has converged to `values` (see [`converged`]); its config-hash.
pub fn wait_converged(cp: &ControlPlane, names: &Names, ns: &str, values: &WiValues) -> String {
    wait_until(&format!("targets of {ns} converged to {values:?}"), || {
        converged(cp, names, ns, values)
    })
}

/// Assert nothing of Workload Identity is on the targets of `ns` (and the bystander untouched).
pub fn assert_untouched(cp: &ControlPlane, names: &Names, ns: &str) {
    let sa = service_account(cp, names, ns);
    for key in [GSA_KEY, HASH_KEY] {
        assert!(
            sa["metadata"]["annotations"].get(key).is_none(),
            "ServiceAccount in {ns} has {key}: {}",
            sa["metadata"]
        );
    }
    for d in deployments(cp, ns) {
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]
                .get(HASH_KEY)
                .is_none(),
            "{} in {ns} has a config-hash",
            name_of(&d)
        );
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let env = c["env"].as_array().cloned().unwrap_or_default();
            assert!(
                !env.iter().any(|e| e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("WORKSPACE_WORKLOAD_IDENTITY_"))),
                "{} in {ns} got Workload Identity variables: {env:?}",
                name_of(&d)
            );
        }
    }
}

/// (kind/name, resourceVersion) of the target ServiceAccount and every Deployment of `ns`.
pub fn versions(cp: &ControlPlane, names: &Names, ns: &str) -> Vec<(String, String)> {
    let sa = service_account(cp, names, ns);
    let rv = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    std::iter::once((format!("serviceaccount/{}", names.backend()), rv(&sa)))
        .chain(
            deployments(cp, ns)
                .iter()
                .map(|d| (format!("deployment/{}", name_of(d)), rv(d))),
        )
        .collect()
}

/// The Events of `ns` (core view: reason, message, involvedObject, type).
pub fn events(cp: &ControlPlane, ns: &str) -> Vec<Value> {
    let out = cp.kubectl(&["get", "events", "-n", ns, "-o", "json"], None);
    let list: Value = serde_json::from_str(&must(out, "list Events")).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The Events with `reason` about the `kind` named `name` in `ns`.
pub fn events_on(cp: &ControlPlane, ns: &str, reason: &str, kind: &str, name: &str) -> Vec<Value> {
    events(cp, ns)
        .into_iter()
        .filter(|e| {
            e["reason"] == reason
                && e["involvedObject"]["kind"] == kind
                && e["involvedObject"]["name"] == name
        })
        .collect()
}

/// Wait for an Event with `reason` on `kind` `name` in `ns`; the first one.
pub fn wait_event(cp: &ControlPlane, ns: &str, reason: &str, kind: &str, name: &str) -> Value {
    wait_for(
        &format!("Event {reason} on {kind} {ns}/{name}"),
        CONVERGE,
        || events_on(cp, ns, reason, kind, name).into_iter().next(),
    )
}

/// Patch ops of an AdmissionReview response (base64 JSON Patch), empty without a patch.
pub fn response_patch(review: &Value) -> Vec<Value> {
    review["response"]["patch"]
        .as_str()
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// A CREATE AdmissionReview for Deployment `object` in `ns`.
pub fn deployment_review(ns: &str, object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-cluster-review-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": object["metadata"]["name"],
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}
