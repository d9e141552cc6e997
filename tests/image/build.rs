//! Build the image from the repository's Dockerfile with `BINARY_FROM=prebuilt`: the runtime stage
//! the real build ships, fed the binary cargo just built again with `cargo auditable` (no base
//! image is pulled), with its CycloneDX SBOM written next to it by image/sbom.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::{BIN, ROOT, buildah, ok, podman, target_dir, text, work_dir};

/// The tag the test builds and removes again.
pub const IMAGE: &str = "localhost/carto-wi-webhook:image-test";

/// Lay out the build context (rootfs/ by image/rootfs.sh) and build the image with buildah.
pub fn build_image() -> Result<(), String> {
    let context = work_dir().join("context");
    if context.exists() {
        std::fs::remove_dir_all(&context).map_err(|e| format!("clear {context:?}: {e}"))?;
    }
    std::fs::create_dir_all(&context).map_err(|e| format!("create {context:?}: {e}"))?;
    auditable_build()?;
    let bin = context.join("carto-wi-webhook");
    std::fs::copy(BIN, &bin).map_err(|e| format!("copy {BIN}: {e}"))?;
    // The test profile keeps ~150 MB of debug info that vfs would copy into every layer; the
    // release profile strips it too (`strip = true`).
    run("strip", Command::new("strip").arg(&bin))?;
    run(
        "image/rootfs.sh",
        Command::new(Path::new(ROOT).join("image/rootfs.sh"))
            .arg(&bin)
            .arg(context.join("rootfs")),
    )?;
    run(
        "image/sbom.sh",
        Command::new(Path::new(ROOT).join("image/sbom.sh")).arg(sbom_path()),
    )?;
    let dockerfile = Path::new(ROOT).join("Dockerfile");
    let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
    let revision = format!("REVISION={}", git_revision());
    let out = buildah(&[
        "bud",
        "--build-arg",
        "BINARY_FROM=prebuilt",
        "--build-arg",
        &version,
        "--build-arg",
        &revision,
        "--build-arg",
        "SOURCE=https://example.invalid/carto-wi-webhook",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        IMAGE,
        context.to_str().unwrap(),
    ]);
    if !out.status.success() {
        return Err(format!("buildah bud failed: {}", text(&out)));
    }
    Ok(())
}

/// Where the build writes the image's SBOM: beside the build context, as docs/operations.md says.
pub fn sbom_path() -> PathBuf {
    work_dir().join("carto-wi-webhook.cdx.json")
}

/// The binary as it ships, in the build context (what the Dockerfile copies into the image).
pub fn shipped_binary() -> PathBuf {
    work_dir().join("context/rootfs/usr/local/bin/carto-wi-webhook")
}

/// Build BIN again as the Dockerfile does, with `cargo auditable` (same target dir and profile:
/// only this crate is compiled again, with its dependency list embedded).
fn auditable_build() -> Result<(), String> {
    let profile_dir = Path::new(BIN)
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|p| p.to_str())
        .expect("BIN lies in TARGET/PROFILE/");
    let profile = if profile_dir == "debug" {
        "dev"
    } else {
        profile_dir
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        "cargo auditable build (install it with tests/setup.sh or \
         `cargo install --locked cargo-auditable`)",
        Command::new(cargo)
            .current_dir(ROOT)
            .args([
                "auditable",
                "build",
                "--locked",
                "--bin",
                "carto-wi-webhook",
            ])
            .args(["--profile", profile, "--target-dir"])
            .arg(target_dir()),
    )
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", text(&out)))
    }
}

fn git_revision() -> String {
    Command::new("git")
        .args(["-C", ROOT, "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Remove the test's image, the stages' working containers buildah keeps, and the layers only
/// they used (vfs copies each layer in full). The storage is the test's own.
pub fn remove_image() {
    let _ = buildah(&["rm", "--all"]);
    let _ = podman(&["rmi", "--force", IMAGE]);
    let _ = podman(&["image", "prune", "--force"]);
    let _ = std::fs::remove_dir_all(work_dir().join("context"));
    let _ = std::fs::remove_file(sbom_path());
}

/// `podman image inspect` of the test image, one Go template field.
pub fn inspect(format: &str) -> String {
    ok(
        "podman image inspect",
        podman(&["image", "inspect", "--format", format, IMAGE]),
    )
}
