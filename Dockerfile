# syntax=docker/dockerfile:1
#
# Container image of unleash-remediation-service.
#
#   docker build -t unleash-remediation-service .
#   docker run --rm -p 8080:8080 \
#     -e NATS_URL=nats://nats:4222 \
#     -e UNLEASH_SERVER_URL=http://unleash:4242/api -e UNLEASH_TOKEN='*:*.<admin token>' \
#     -v "$PWD/remediation.yaml:/etc/unleash-remediation-service/resources/remediation.yaml:ro" \
#     unleash-remediation-service
#
# Build stage: a Rust toolchain on the same Debian release as the runtime image (same glibc).
# The BuildKit cache mounts keep the crate registry and the compiled dependencies between builds,
# so a change to the sources only recompiles this crate.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin unleash-remediation-service \
 && install -D -m 0755 target/release/unleash-remediation-service /out/unleash-remediation-service

# Runtime stage: the binary needs only glibc and libgcc_s (TLS is rustls). ca-certificates is for
# https Unleash / Keptn API / NATS TLS endpoints, curl for the health check.
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="unleash-remediation-service" \
      org.opencontainers.image.description="Keptn-compatible self-healing: problem events in, Unleash feature flags switched, Keptn CloudEvents out over NATS" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 urs \
 && useradd --system --uid 10001 --gid urs --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin urs \
 && mkdir -p /etc/unleash-remediation-service/resources

COPY --from=build /out/unleash-remediation-service /usr/local/bin/unleash-remediation-service

# Mount remediation.yaml / shipyard.yaml here (or per project: <project>/<stage>/<service>/...),
# or set KEPTN_API_ENDPOINT to read them from Keptn.
WORKDIR /etc/unleash-remediation-service/resources
# Listening on all interfaces needs HTTP_TOKEN (or HTTP_ALLOW_ANONYMOUS=true): it refuses to start otherwise.
ENV HTTP_ADDR=0.0.0.0:8080 \
    RESOURCE_DIR=/etc/unleash-remediation-service/resources \
    LOG_FORMAT=json
EXPOSE 8080
USER 10001:10001
STOPSIGNAL SIGTERM

# Liveness of the process; readiness (NATS connected and subscribed) is GET /ready.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/bin/sh", "-c", "port=\"${HTTP_ADDR##*:}\"; curl -fsS -o /dev/null \"http://127.0.0.1:${port:-8080}/health\" || exit 1"]

ENTRYPOINT ["/usr/local/bin/unleash-remediation-service"]
CMD ["serve"]
