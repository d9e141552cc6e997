# syntax=docker/dockerfile:1
# carto-wi-webhook: a locked release build, shipped FROM scratch with exactly the shared libraries
# the binary loads (glibc, libm, libgcc_s, the loader: image/rootfs.sh), run as 65532:65532.
#
#   docker build -t carto-wi-webhook:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# The binary embeds its dependency list (cargo auditable: section .dep-v0, read by trivy, grype and
# `cargo audit bin`); its CycloneDX SBOM is written next to the image by the `sbom` stage:
#
#   docker build --target sbom --output type=local,dest=dist .   # dist/carto-wi-webhook.cdx.json
#
# Where no base image can be pulled, the same runtime stage takes a binary built on the machine
# (the build context is then a directory holding rootfs/, laid out by image/rootfs.sh):
#
#   cargo auditable build --release --locked --bin carto-wi-webhook
#   image/rootfs.sh "$CARGO_TARGET_DIR/release/carto-wi-webhook" ctx/rootfs
#   image/sbom.sh ctx/carto-wi-webhook.cdx.json
#   buildah bud --storage-driver vfs --build-arg BINARY_FROM=prebuilt -f Dockerfile \
#     -t carto-wi-webhook:0.1.0 ctx

# build: the release binary from this source tree; prebuilt: rootfs/ from the build context.
ARG BINARY_FROM=build

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo install --locked cargo-auditable@0.7.7 cargo-cyclonedx@0.5.9
COPY Cargo.toml Cargo.lock ./
# Cargo reads every target the manifest names (tests, bench/) before building one.
COPY src ./src
COPY tests ./tests
COPY bench ./bench
COPY examples ./examples
COPY image/rootfs.sh image/sbom.sh ./image/
# The registry and the target dir are BuildKit caches: a source change rebuilds only this crate.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo auditable build --release --locked --bin carto-wi-webhook \
    && image/rootfs.sh target/release/carto-wi-webhook /rootfs \
    && image/sbom.sh /sbom/carto-wi-webhook.cdx.json

# The SBOM alone, for `--target sbom --output type=local,dest=DIR`.
FROM scratch AS sbom
COPY --from=build /sbom/ /

FROM scratch AS prebuilt
COPY rootfs/ /rootfs/

FROM ${BINARY_FROM} AS binary

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="carto-wi-webhook" \
      org.opencontainers.image.description="Kubernetes admission webhook that wires CARTO self-hosted to BigQuery through GKE Workload Identity" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0 AND LGPL-2.1-or-later AND GPL-3.0-or-later WITH GCC-exception-3.1" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=binary /rootfs/ /
# The only file the binary may write: the ephemeral CA of standalone `serve` without --tls-cert.
# With a read-only root filesystem mount a tmpfs/emptyDir at /tmp (cluster mode writes nothing).
ENV TMPDIR=/tmp
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/carto-wi-webhook"]
CMD ["serve", "--help"]
