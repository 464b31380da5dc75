# syntax=docker/dockerfile:1
# authgate container image: a static-ish Rust binary on distroless, non-root.
#
#   docker build -t authgate:0.1.0 .
#   docker run --rm -v "$PWD/conf:/etc/authgate:ro" -p 4180:4180 authgate:0.1.0
#   docker run --rm --entrypoint /usr/local/bin/authgate authgate:0.1.0 --version

# --- build -------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# pingora-core hard-wires flate2's zlib-ng backend, which is built with cmake.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# rust-toolchain.toml is excluded by .dockerignore: the image's own 1.95
# toolchain is the pin here, and rustup would otherwise try to download
# components (clippy, rustfmt) the release build does not need.
COPY . .

# The registry and target dir are BuildKit caches, so a source change does not
# recompile every dependency; the binary is copied out of the cache mount.
# --no-default-features leaves out the `demo` feature: the production image
# carries no development IdP with fixed passwords (`authgate demo` only says
# this build has none).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin authgate \
    && install -D -m 0755 target/release/authgate /out/authgate

# --- runtime -----------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell, no package manager; runs as
# uid/gid 65532 ("nonroot"), which the Kubernetes manifests also pin.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/authgate /usr/local/bin/authgate

USER 65532:65532

# 4180 proxy + /oauth2/* + /ping + /ready · 4181 Envoy ext_authz HTTP ·
# 4182 Envoy ext_authz gRPC · 9100 Prometheus /metrics
EXPOSE 4180 4181 4182 9100

# The config (and the secret files it names) are mounted at /etc/authgate.
ENTRYPOINT ["/usr/local/bin/authgate", "run", "--config", "/etc/authgate/authgate.yaml"]
