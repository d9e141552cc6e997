//! One container of the test image, run as the chart runs the pod: read-only root filesystem,
//! every capability dropped, no privilege escalation, the image's own user. Removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::build::IMAGE;
use super::tools::{ROOT, ok, podman, text};

/// The hardening flags, as the chart's securityContext asks: `--read-only-tmpfs=false` so that
/// nothing at all is writable unless a test mounts it (podman would add tmpfs on /tmp, /run).
const HARDENED: &[&str] = &[
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
    "--ulimit",
    "host",
    "--network",
    "host",
];

pub struct Container {
    pub name: String,
    /// The HTTPS admission port on 127.0.0.1.
    pub port: u16,
    /// The plain-HTTP admin port on 127.0.0.1.
    pub admin: u16,
}

/// A free port on 127.0.0.1 (the container shares the host's network).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The example config, mounted read-only where `serve --config` reads it.
pub fn config_mount() -> String {
    let file = Path::new(ROOT).join("examples/workload-identity.yaml");
    format!(
        "--volume={}:/config/workload-identity.yaml:ro",
        file.display()
    )
}

/// `podman run` HARDENED + `run_flags` IMAGE serve --config (the example) + `serve_flags`.
fn run_args<'a>(run_flags: &'a [String], serve_flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend_from_slice(HARDENED);
    args.extend(run_flags.iter().map(String::as_str));
    args.extend([IMAGE, "serve", "--config", "/config/workload-identity.yaml"]);
    args.extend_from_slice(serve_flags);
    args
}

/// Run a container in the foreground to its end (for a start that must fail).
pub fn run_to_exit(run_flags: &[String]) -> Output {
    let mut flags = vec!["--rm".to_owned()];
    flags.extend_from_slice(run_flags);
    // Port 0: the start must fail on the certificate, not on a port someone else holds.
    let serve = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    podman(&run_args(&flags, &serve))
}

impl Container {
    /// Start HARDENED with `run_flags` (mounts), serving on fresh loopback ports.
    pub fn start(label: &str, run_flags: &[String], serve_flags: &[&str]) -> Self {
        let (port, admin) = (free_port(), free_port());
        let name = format!("cwi-image-test-{label}-{}", std::process::id());
        let _ = podman(&["rm", "--force", &name]);
        let mut flags = vec!["--detach".to_owned(), format!("--name={name}")];
        flags.extend_from_slice(run_flags);
        let (listen, admin_listen) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin}"));
        let mut serve = vec!["--listen", &listen, "--admin-listen", &admin_listen];
        serve.extend_from_slice(serve_flags);
        ok("podman run", podman(&run_args(&flags, &serve)));
        Self { name, port, admin }
    }

    /// One field of `podman inspect` (a Go template).
    pub fn inspect(&self, format: &str) -> String {
        ok(
            "podman inspect",
            podman(&["inspect", "--format", format, &self.name]),
        )
    }

    /// The container's first process, as the host sees it.
    pub fn proc_dir(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}", self.inspect("{{.State.Pid}}")))
    }

    pub fn logs(&self) -> String {
        text(&podman(&["logs", &self.name]))
    }

    /// Poll /readyz until it answers 200; fail with the logs if the container stops first.
    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        // A bound against a hang, not a timing assertion: readiness normally takes milliseconds.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            let running = self.inspect("{{.State.Running}}");
            assert!(
                running == "true",
                "the container stopped before /readyz: {}",
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "no 200 from {url}: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}
