//! Child processes that are always stopped, and small helpers to wait for them.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the command in the background and stops it with SIGTERM (SIGKILL 15 s later if it is
/// still there) as soon as its standard input closes: when the harness closes the pipe, and also when the harness dies for any reason (a
/// signal, an abort), so no etcd, kube-apiserver or webhook outlives a test run. Exits with the
/// command's own status.
const GUARD: &str = r#"exec 3<&0
"$@" </dev/null &
child=$!
{ read -r _ <&3; kill -TERM "$child" 2>/dev/null; sleep 15; kill -KILL "$child" 2>/dev/null; } &
wait "$child""#;

/// A child process (behind [`GUARD`]) stopped when dropped; its output goes to a log file that
/// is kept.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let out = File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        // No proxy may intercept loopback calls between the parts.
        for v in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        let mut guarded = Command::new("bash");
        guarded
            .arg("-c")
            .arg(GUARD)
            .arg("proc-guard")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => guarded.env(k, v),
                None => guarded.env_remove(k),
            };
        }
        let mut child = guarded
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child: Some(child),
        }
    }

    /// Panics (naming the log) if the process has exited.
    pub fn assert_running(&mut self, log: &Path) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "{} exited with {status}; log {}:\n{tail}",
                self.name,
                log.display()
            );
        }
    }

    /// Ask the process to stop (SIGTERM, by closing the guard's input) and wait for it; returns
    /// its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        drop(self.stdin.take());
        let mut c = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Did not stop in time: kill the command, then the guard.
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &c.id().to_string()])
            .status();
        let _ = c.kill();
        c.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Plain-HTTP GET on loopback; the status code, if the server answered.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}
