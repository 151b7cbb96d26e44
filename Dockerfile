# syntax=docker/dockerfile:1.7
# Image of the phone-manager service. Build: `docker build -t phone-manager .` (BuildKit, the
# default since Docker 23, is required for the cache mounts). Run: see docker-compose.yml.

# Same version as rust-toolchain.toml, so the image's own toolchain is the pinned one.
ARG RUST_VERSION=1.95.0

# ---- build ------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /app

# make: the jemalloc allocator (tikv-jemalloc-sys) is built from source with configure + make;
# the slim image has gcc but not make.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# rust-toolchain.toml is deliberately not copied: it lists clippy and rustfmt, which the slim
# image's minimal profile may lack, so rustup could download components (or, after a point
# release of the image, a whole toolchain). The image's default toolchain is the pinned version.
# Only what `cargo build --bin phone-manager` reads: .cargo/ sets SQLX_OFFLINE=true so the
# query! macros use .sqlx/ instead of a database; migrations/ and config/default.toml are
# compiled into the binary. tests/ is not needed (a missing tests/ just means no test targets).
COPY .cargo/ .cargo/
COPY Cargo.toml Cargo.lock ./
COPY .sqlx/ .sqlx/
COPY migrations/ migrations/
COPY config/default.toml config/default.toml
COPY src/ src/

# Cache mounts keep the crate registry and target/ between builds, so a source change recompiles
# only this crate. They are not part of the image, so the binary is copied out of target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/app/target,sharing=locked \
    cargo build --release --locked --bin phone-manager \
    && install -D -m 0755 target/release/phone-manager /out/phone-manager

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: the binary carries its own roots (webpki), but curl and anyone debugging in the
# container need the system store. curl: the HEALTHCHECK needs an HTTP client that fails on a
# non-2xx status; the binary has no self-check command and bash's /dev/tcp cannot read a status
# reliably. It costs a few MB, acceptable for a standard probe.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so orchestrators (runAsNonRoot) can verify it and volume ownership is
# predictable.
RUN groupadd --system --gid 10001 phone-manager \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin phone-manager

COPY --from=builder /out/phone-manager /usr/local/bin/phone-manager

# The default 127.0.0.1 is unreachable from outside a container. Every other setting keeps the
# compiled-in default; override any with PM__SECTION__KEY (see .env.example). An optional
# local.toml can be mounted at /etc/phone-manager/local.toml.
ENV PM__SERVER__HOST=0.0.0.0 \
    PM__LOGGING__FORMAT=json \
    PM_CONFIG_DIR=/etc/phone-manager

WORKDIR /app
USER 10001:10001
EXPOSE 8080

# Liveness, not readiness: a database outage should not mark the process itself unhealthy
# (route traffic on /api/health/ready). Shell form so a changed PM__SERVER__PORT is honoured;
# `|| exit 1` because Docker reserves exit codes other than 0 and 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null --max-time 4 "http://127.0.0.1:${PM__SERVER__PORT:-8080}/api/health/live" || exit 1

# On SIGTERM the service stops accepting and lets in-flight requests finish for up to
# server.shutdown_grace_secs (30 s), longer than `docker stop`'s default 10 s: give it
# `--stop-timeout 35` (compose: stop_grace_period) or lower the grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/phone-manager"]
CMD ["serve"]
