//! One carto-wi-webhook process per test, with its own certificates, config and webhook
//! configurations (scoped to the test's namespace by label).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;

use super::cluster::ControlPlane;
use super::pki::Ca;
use super::process::{Proc, free_port, http_status, wait_for};

/// The standalone configuration every e2e webhook starts with (the acme example values).
pub const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: carto-workload-identity
data:
  WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP: acme-analytics.carto_workflows_temp
  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: acme-gke-prod
  WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: carto-wi@acme-analytics.iam.gserviceaccount.com
  WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: \"auth0|3idsj230990sj4wsddd10\"
  GKE_CLUSTER_PROJECT: acme-gke-prod
";

/// The env vars the config above injects.
pub const EXPECTED_ENV: [(&str, &str); 4] = [
    (
        "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP",
        "acme-analytics.carto_workflows_temp",
    ),
    (
        "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
        "acme-gke-prod",
    ),
    (
        "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL",
        "carto-wi@acme-analytics.iam.gserviceaccount.com",
    ),
    (
        "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
        "auth0|3idsj230990sj4wsddd10",
    ),
];

/// A running webhook and what it needs.
pub struct Webhook {
    pub name: String,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub ca: Ca,
    pub cert: PathBuf,
    pub key: PathBuf,
    args: Vec<String>,
    proc: Mutex<Option<Proc>>,
}

impl Webhook {
    /// Start `carto-wi-webhook serve` (standalone, the given config as default) with `extra` flags.
    pub fn start(cp: &ControlPlane, name: &str, config: &str, extra: &[&str]) -> Self {
        let dir = cp.dir.join(format!("webhook-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new(&format!("{name}-ca"));
        let serving = ca.server(&dir, "tls", &["localhost", "127.0.0.1"]);
        let config_file = dir.join("config.yaml");
        std::fs::write(&config_file, config).unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let mut args: Vec<String> = vec![
            "serve".into(),
            format!("--config={}", config_file.display()),
            format!("--tls-cert={}", serving.cert.display()),
            format!("--tls-key={}", serving.key.display()),
            format!("--listen=127.0.0.1:{port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let hook = Self {
            name: name.to_owned(),
            port,
            admin_port,
            dir,
            ca,
            cert: serving.cert,
            key: serving.key,
            args,
            proc: Mutex::new(None),
        };
        hook.launch();
        hook
    }

    fn launch(&self) {
        let log = self.dir.join("webhook.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_carto-wi-webhook"));
        cmd.args(&self.args);
        let p = Proc::spawn(&format!("webhook {}", self.name), cmd, &log);
        *self.proc.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        wait_for("webhook /readyz", Duration::from_secs(30), || {
            if let Some(p) = self.proc.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                p.assert_running(&log);
            }
            (http_status(self.admin_port, "/readyz") == Some(200)).then_some(())
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

    /// The webhook configurations for this instance.
    pub fn manifests(&self, failure_policy: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca.cert_pem);
        include_str!("manifests/webhooks.yaml")
            .replace("${NAME}", &self.name)
            .replace("${URL}", &format!("https://127.0.0.1:{}", self.port))
            .replace("${CA_BUNDLE}", &ca)
            .replace("${FAILURE_POLICY}", failure_policy)
    }

    /// Install both webhook configurations.
    pub fn install(&self, cp: &ControlPlane, failure_policy: &str) {
        let out = cp.kubectl(&["apply", "-f", "-"], Some(&self.manifests(failure_policy)));
        assert!(
            out.status.success(),
            "install webhooks: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Remove the mutating webhook configuration.
    pub fn remove_mutating(&self, cp: &ControlPlane) {
        let out = cp.kubectl(
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &format!("{}-mutate", self.name),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fetch the webhook's /metrics text.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}
