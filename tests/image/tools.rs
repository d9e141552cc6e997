//! buildah, podman and hadolint as the image test runs them: a private vfs storage under the
//! target dir, runc with cgroupfs, no default ulimits (the "Container image" recipe of docs/operations.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary `cargo test` just built.
pub const BIN: &str = env!("CARGO_BIN_EXE_carto-wi-webhook");
/// The source tree (Dockerfile, image/rootfs.sh, examples).
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The target dir holding BIN (target/debug/carto-wi-webhook).
pub fn target_dir() -> PathBuf {
    Path::new(BIN)
        .ancestors()
        .nth(2)
        .expect("the binary lies in TARGET/PROFILE/")
        .to_path_buf()
}

/// Where the image test keeps its storage, build context and certificates.
pub fn work_dir() -> PathBuf {
    target_dir().join("image-test")
}

/// Fail with a clear message when a tool the test needs is not installed.
pub fn require(tool: &str, install: &str) -> Result<(), String> {
    match Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{tool} --version` failed: {}; {install}",
            text(&out)
        )),
        Err(e) => Err(format!("{tool} cannot run ({e}); {install}")),
    }
}

/// Every tool the build and run need, with how to get it.
pub fn require_container_tools() -> Result<(), String> {
    let apt = "install them with tests/setup.sh or `apt-get install -y buildah podman runc uidmap slirp4netns`";
    for tool in ["buildah", "podman", "runc"] {
        require(tool, apt)?;
    }
    if !is_root() {
        return Err(
            "the image test runs rootful podman and reads /proc/PID of the container: \
                    run it as root"
                .to_owned(),
        );
    }
    Ok(())
}

/// Whether this process's effective uid is 0 (/proc/self/status "Uid: real effective ...").
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|e| e == "0")
        })
        .unwrap_or(false)
}

/// podman refuses a run root longer than 50 characters (a target dir under ~/.cache makes one):
/// a short directory under /tmp, named after the work dir so every call of one run shares it.
fn run_root() -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    work_dir().hash(&mut h);
    PathBuf::from(format!("/tmp/cwi-image-{:08x}", h.finish() as u32))
}

/// The storage flags shared by buildah and podman, so both see the same images.
fn storage(cmd: &mut Command) -> &mut Command {
    let work = work_dir();
    cmd.arg("--root")
        .arg(work.join("storage"))
        .arg("--runroot")
        .arg(run_root())
        .args(["--storage-driver", "vfs"])
        // podman's default ulimits ask for more than a nested container may set.
        .env("CONTAINERS_CONF", containers_conf())
        .stdin(Stdio::null())
}

fn containers_conf() -> PathBuf {
    let path = work_dir().join("containers.conf");
    if !path.exists() {
        std::fs::create_dir_all(work_dir()).unwrap();
        std::fs::write(&path, "[containers]\ndefault_ulimits = []\n").unwrap();
    }
    path
}

/// `buildah --root ... ARGS`.
pub fn buildah(args: &[&str]) -> Output {
    let mut cmd = Command::new("buildah");
    storage(&mut cmd).args(args).output().expect("buildah runs")
}

/// `podman --root ... --runtime runc --cgroup-manager cgroupfs ARGS`.
pub fn podman(args: &[&str]) -> Output {
    let mut cmd = Command::new("podman");
    storage(&mut cmd)
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(args)
        .output()
        .expect("podman runs")
}

/// Stdout of a command that must succeed.
pub fn ok(what: &str, out: Output) -> String {
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Status, stdout and stderr, for a failure message.
pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Where hadolint is: $HADOLINT, else the virtualenv tests/setup.sh installs it in, else PATH.
pub fn hadolint() -> PathBuf {
    if let Some(p) = std::env::var_os("HADOLINT") {
        return PathBuf::from(p);
    }
    let venv = target_dir().join("hadolint-venv/bin/hadolint");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("hadolint")
}
