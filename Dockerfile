# syntax=docker/dockerfile:1
# carto-wi-webhook container image: a release build on Debian, run from distroless as non-root.
#   docker build -t carto-wi-webhook .
#   docker run --rm -p 8443:8443 -p 8080:8080 -v $PWD/examples:/config:ro \
#     carto-wi-webhook serve --config /config/workload-identity.yaml

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Manifest and lock first, so the dependency build is cached across source changes.
COPY Cargo.toml Cargo.lock ./
# Cargo reads every target the manifest names (tests, benches, examples) before building one.
COPY src ./src
COPY tests ./tests
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin carto-wi-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/carto-wi-webhook /usr/local/bin/carto-wi-webhook
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/carto-wi-webhook"]
CMD ["serve", "--help"]
