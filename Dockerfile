# Image for the game server and the load generator (one image, two binaries,
# so the client-sim service in docker-compose.yml runs exactly the build it
# tests). Build: docker build -t game-server .
#
# Plain Dockerfile syntax only: the classic builder (Debian's docker.io and
# docker-compose) and BuildKit build it alike.
#
# Stage 1 builds the release binaries. Edition 2024 and the workspace's
# rust-version (1.85) need Rust 1.85 or newer; the tag is pinned to a
# major.minor so rebuilds are reproducible and upgrades are a reviewed change.
ARG RUST_VERSION=1.88
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# protoc: the Agones SDK client (the agones feature, for running on Agones) is generated at build
# time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p game-server -p client-sim --features game-server/agones \
    && install -D -m 0755 target/release/game-server /out/game-server \
    && install -D -m 0755 target/release/client-sim /out/client-sim

# Stage 2: the runtime. Same Debian release as the builder, so the glibc the
# binaries were linked against is present. No shell tools are needed: the
# health check is a subcommand of the server binary itself.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# A fixed, unprivileged uid/gid so volume permissions and pod security
# policies can name it. Ports 7777 and 9100 are above 1024: no capabilities.
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} gameserver \
    && useradd --system --uid ${APP_UID} --gid gameserver \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gameserver

COPY --from=builder /out/game-server /out/client-sim /usr/local/bin/
COPY config/docker.toml /etc/game-server/docker.toml

USER ${APP_UID}:${APP_UID}

# 7777: game protocol (TCP), publish it to players.
# 9100: admin HTTP (/metrics, /healthz, /readyz, /sessions, kick): keep it on
#       a private network; never publish it to the internet.
EXPOSE 7777/tcp 9100/tcp

# SIGTERM starts the graceful drain (stop accepting, /readyz 503, every
# session gets its queued events and a Bye{server_shutdown}), bounded by
# shutdown.drain_timeout (10s). Give the container a stop timeout longer than
# that (docker stop -t 20, compose stop_grace_period) or players lose the Bye.
STOPSIGNAL SIGTERM

# Liveness, not readiness: /healthz stays 200 while the server drains, so a
# draining container is not restarted in the middle of saying goodbye.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["game-server", "healthcheck", "--url", "http://127.0.0.1:9100/healthz"]

# No ENTRYPOINT: the compose file runs `client-sim ...` from the same image.
CMD ["game-server", "--config", "/etc/game-server/docker.toml"]
