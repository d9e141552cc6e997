//! A real control plane on loopback: etcd and kube-apiserver built from their Go modules, with
//! generated certificates, a service-account key, RBAC on, and an admin kubeconfig.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::pki::{self, Ca};
use super::process::{Proc, free_port, wait_for};

/// Where the control-plane binaries are (kube-apiserver, etcd, kubectl; helm (Helm 4) and helm3
/// for the chart scenarios): built (or found in the cache) by tests/controlplane/build.sh, which
/// prints the bin folder as its last line.
fn binaries() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tests/controlplane/build.sh"))
        .env_remove("CONTROLPLANE_SKIP_HELM")
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/controlplane/build.sh");
    assert!(out.status.success(), "tests/controlplane/build.sh failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build.sh printed the bin dir")
            .trim(),
    )
}

/// etcd + kube-apiserver, stopped when dropped (logs kept under `dir`).
pub struct ControlPlane {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    /// The kube-apiserver's flags, kept to restart it the same way.
    api_args: Vec<String>,
    /// etcd first, then kube-apiserver.
    procs: Mutex<Vec<(Proc, PathBuf)>>,
}

/// Index of kube-apiserver in `ControlPlane::procs`.
const APISERVER: usize = 1;

fn spawn_apiserver(bin: &Path, args: &[String], log: &Path) -> Proc {
    let mut api = Command::new(bin.join("kube-apiserver"));
    api.args(args);
    Proc::spawn("kube-apiserver", api, log)
}

impl ControlPlane {
    pub fn start(dir: &Path) -> Self {
        let bin = binaries();
        std::fs::create_dir_all(dir).unwrap();
        let ca = Ca::new("e2e-cluster-ca");
        let ca_file = ca.write(&dir.join("ca.crt"));
        let serving = ca.server(
            dir,
            "apiserver",
            &["localhost", "127.0.0.1", "kubernetes.default.svc"],
        );
        let admin = ca.client(dir, "admin", "e2e-admin", &["system:masters"]);
        let (sa_key, sa_pub) = pki::key_files(dir, "sa");

        let (etcd_client, etcd_peer) = (free_port(), free_port());
        let etcd_log = dir.join("etcd.log");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.args([
            "--name=e2e",
            &format!("--data-dir={}", dir.join("etcd-data").display()),
            &format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            &format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            &format!("--initial-cluster=e2e=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        let etcd = Proc::spawn("etcd", etcd, &etcd_log);

        let port = free_port();
        let api_log = dir.join("kube-apiserver.log");
        let api_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={}", ca_file.display()),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--enable-priority-and-fairness=false".into(),
            "--v=2".into(),
        ];
        let api = spawn_apiserver(&bin, &api_args, &api_log);

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: admin}}\ncurrent-context: e2e\n",
                ca_file.display(),
                admin.cert.display(),
                admin.key.display()
            ),
        )
        .unwrap();
        let cp = Self {
            dir: dir.to_path_buf(),
            bin,
            kubeconfig,
            api_args,
            procs: Mutex::new(vec![(etcd, etcd_log), (api, api_log)]),
        };
        cp.wait_apiserver_ready();
        // RBAC bootstrap policy is in place once the default cluster roles exist.
        wait_for("RBAC bootstrap roles", Duration::from_secs(60), || {
            cp.kubectl(&["get", "clusterrole", "cluster-admin"], None)
                .status
                .success()
                .then_some(())
        });
        cp
    }

    fn wait_apiserver_ready(&self) {
        wait_for("kube-apiserver /readyz", Duration::from_secs(120), || {
            for (p, log) in self
                .procs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter_mut()
            {
                p.assert_running(log);
            }
            let out = self.kubectl(&["get", "--raw", "/readyz"], None);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok")
                .then_some(())
        });
    }

    /// Stop kube-apiserver (SIGTERM), run `while_down`, then start it again on the same port with
    /// the same flags (etcd keeps running, so every object survives) and wait until it is ready.
    pub fn restart_apiserver(&self, while_down: impl FnOnce()) {
        {
            let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
            procs[APISERVER].0.terminate();
        }
        while_down();
        let log = self.dir.join(format!(
            "kube-apiserver-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        ));
        let api = spawn_apiserver(&self.bin, &self.api_args, &log);
        self.procs.lock().unwrap_or_else(|e| e.into_inner())[APISERVER] = (api, log);
        self.wait_apiserver_ready();
    }

    /// Run kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for v in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env_remove(v);
        }
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Stop everything (also done on drop).
    pub fn stop(&self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut p, _)) = procs.pop() {
            p.terminate();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}
