#!/bin/sh
# Write the CycloneDX SBOM (JSON, spec 1.5) of the carto-wi-webhook binary to OUT: every crate
# compiled into it, from Cargo.lock (no dev-dependencies, no build-only ones), by cargo-cyclonedx
# (`cargo install --locked cargo-cyclonedx@0.5.9`; tests/setup.sh installs it).
#   image/sbom.sh OUT            e.g. image/sbom.sh dist/carto-wi-webhook.cdx.json
# Used by the Dockerfile's build stage and, for BINARY_FROM=prebuilt, on the build machine.
set -eu

if [ "$#" -ne 1 ]; then
  echo "usage: $0 OUT" >&2
  exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
# cargo-cyclonedx writes beside Cargo.toml, named after the binary; moved to OUT at once.
generated="$root/carto-wi-webhook_bin.cdx.json"
rm -f "$generated"
cargo cyclonedx --manifest-path "$root/Cargo.toml" --format json --spec-version 1.5 \
  --describe binaries --no-build-deps --quiet
if [ ! -f "$generated" ]; then
  echo "sbom: cargo cyclonedx wrote no $generated" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
mv "$generated" "$out"
