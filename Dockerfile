# syntax=docker/dockerfile:1.7
# One image for every role: `docker run IMAGE auth|orders|consumer|worker|migrate|keygen|all`.
# Build: docker build -t orderly:latest .   (docker compose builds it as orderly:latest too)

ARG RUST_VERSION=1.95

# --- build -------------------------------------------------------------------
# The full rust image: rdkafka's bundled librdkafka needs gcc, make, and zlib's and OpenSSL's headers.
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Dependency caching: BuildKit keeps the registry and the target directory
# between builds, so a source change recompiles the workspace crates only.
# The build command is the one CI's build of the binary uses (tests/deploy
# checks the two stay the same).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p orderly \
    && install -m 0755 target/release/orderly /usr/local/bin/orderly

# --- runtime -----------------------------------------------------------------
# debian slim rather than distroless/cc: the binary links libz.so.1 (librdkafka's
# compression) and libssl.so.3 (librdkafka's TLS and SCRAM). ca-certificates is
# the trust store every TLS connection checks servers against by default.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 orderly \
    && useradd --system --uid 10001 --gid orderly --home-dir /data --shell /usr/sbin/nologin orderly \
    && mkdir -p /data /keys \
    && chown orderly:orderly /data /keys
COPY --from=builder /usr/local/bin/orderly /usr/local/bin/orderly

# Named volumes mounted on /data and /keys start with this ownership, so the
# non-root user can write its data and `orderly keygen --dir /keys` its key pair.
USER orderly:orderly
WORKDIR /data
# consumer and worker serve /health, /ready and /metrics here (auth, orders
# and all serve them on their own ports and ignore it).
ENV ORDERLY_DATA_DIR=/data \
    ORDERLY_OPS_BIND=0.0.0.0:9090
EXPOSE 8000 8001 9090
# `orderly healthcheck` is a plain HTTP GET from the binary itself (the image has
# no curl). Without arguments it probes what the container's role serves (its
# command, PID 1), at the binds that role reads: AUTH_BIND for auth, ORDERS_BIND
# for orders, both for all, ORDERLY_OPS_BIND for consumer and worker,
# ORDERLY_BROKER_LISTEN for broker.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["orderly", "healthcheck"]
ENTRYPOINT ["orderly"]
CMD ["all"]
