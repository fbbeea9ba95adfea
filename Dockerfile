# syntax=docker/dockerfile:1
#
# calcache: `docker build -t calcache:local .` (docker compose builds it too).
#
# Stages:
#   web      FullCalendar's browser files from npm (web/assets/vendor/)
#   chef     the Rust toolchain, libpq and cargo-chef
#   planner  `cargo chef prepare`: the dependency recipe of Cargo.toml + Cargo.lock
#   build    `cargo chef cook` builds the dependencies (a layer reused until
#            the recipe changes), then the calcache binary from the sources
#   runtime  debian slim + libpq5 + ca-certificates, non-root, ~100 MB
#
# The page's files (web/) are copied only into the runtime stage, after the
# binary: a change to the page rebuilds no Rust, and a change to the sources
# rebuilds calcache only, not its dependencies.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20
ARG DEBIAN_RELEASE=bookworm
ARG CARGO_CHEF_VERSION=0.1.78

# ---------------------------------------------------------------------------
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json web/copy-vendor.mjs web/index.html ./
# postinstall copies the files the page loads into assets/vendor/<name>-<version>/
RUN npm ci --no-audit --no-fund

# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION
# pq-sys links libpq, found through pkg-config
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/* \
    && cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src

# ---------------------------------------------------------------------------
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------
FROM chef AS build
# 1. Dependencies only: this layer stays cached until recipe.json (the
#    manifest's dependencies and the lock file) changes.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin calcache --recipe-path recipe.json

# 2. The application. migrations/ is embedded at compile time
# (embed_migrations!); benches/ and tests/ only because Cargo.toml names them.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin calcache \
    && install -D -m 0755 target/release/calcache /out/calcache

# ---------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 calcache \
    && useradd --system --uid 10001 --gid calcache --no-create-home \
               --home-dir /nonexistent --shell /usr/sbin/nologin calcache
WORKDIR /app
COPY --from=build /out/calcache /usr/local/bin/calcache
COPY deploy/healthcheck.sh /usr/local/bin/calcache-healthcheck
# Read-only for the service user: owned by root, world-readable.
COPY config/ /app/config/
COPY web/index.html /app/web/index.html
COPY web/assets/ /app/web/assets/
COPY --from=web /web/assets/vendor/ /app/web/assets/vendor/

# config/production.toml; secrets (DATABASE_URL, REDIS_URL) come from the
# environment at run time, never from the image.
ENV CALCACHE_ENV=production \
    CALCACHE_CONFIG_DIR=/app/config \
    CALCACHE__SERVER__WEB_DIR=/app/web \
    CALCACHE__SERVER__PORT=8080

USER 10001:10001
EXPOSE 8080
# SIGTERM: stop accepting, finish in-flight requests (server.shutdown_timeout_secs), exit.
STOPSIGNAL SIGTERM
# Liveness only: the process answers. Readiness (/readyz, which needs
# PostgreSQL and Redis) is what docker-compose.yml checks on the replicas.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["calcache-healthcheck", "/healthz"]
ENTRYPOINT ["calcache"]
CMD ["serve"]
