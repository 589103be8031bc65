# syntax=docker/dockerfile:1
#
# Container image of unleash-remediation-service.
#
#   docker build -t unleash-remediation-service \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE=<repository URL> \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm -p 8080:8080 \
#     -e NATS_URL=nats://nats:4222 \
#     -e UNLEASH_SERVER_URL=http://unleash:4242/api -e UNLEASH_TOKEN='*:*.<admin token>' \
#     -v "$PWD/remediation.yaml:/etc/unleash-remediation-service/resources/remediation.yaml:ro" \
#     unleash-remediation-service
#
# Build stage: a Rust toolchain on the same Debian release as the runtime image (same glibc).
# The BuildKit cache mounts keep the crate registry and the compiled dependencies between builds,
# so a change to the sources only recompiles this crate. The release profile strips the binary.
# The toolchain is the one link/hot-functions.txt was recorded with: with another, the build
# works the same, but the functions are not placed first and more of the binary stays resident.
ARG RUST_IMAGE=rust:1.95-bookworm
# glibc and libgcc_s, CA certificates, a nonroot user (65532), no shell and no package manager.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# The commit, for the build_info metric (there is no .git in the build context).
ARG REVISION=unknown
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    GIT_REVISION="${REVISION}" cargo build --release --locked --bin unleash-remediation-service \
 && install -D -m 0755 target/release/unleash-remediation-service /out/unleash-remediation-service \
 && install -d -m 0755 /out/resources

# Runtime stage: the binary needs only glibc and libgcc_s (TLS is rustls); the health check is
# the binary's own `healthcheck` subcommand, so no curl.
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# The repository URL (for registries and update tools that link an image to its source).
ARG SOURCE=
LABEL org.opencontainers.image.title="unleash-remediation-service" \
      org.opencontainers.image.description="Keptn-compatible self-healing: problem events in, Unleash feature flags switched, Keptn CloudEvents out over NATS" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}#readme"

COPY --from=build /out/unleash-remediation-service /usr/local/bin/unleash-remediation-service
# Mount remediation.yaml / shipyard.yaml here (or per project: <project>/<stage>/<service>/...),
# or set KEPTN_API_ENDPOINT to read them from Keptn.
COPY --from=build /out/resources /etc/unleash-remediation-service/resources

WORKDIR /etc/unleash-remediation-service/resources
# Listening on all interfaces needs HTTP_TOKEN (or HTTP_ALLOW_ANONYMOUS=true): it refuses to start otherwise.
ENV HTTP_ADDR=0.0.0.0:8080 \
    RESOURCE_DIR=/etc/unleash-remediation-service/resources \
    LOG_FORMAT=json
EXPOSE 8080
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
STOPSIGNAL SIGTERM

# Ready means connected to NATS and subscribed (GET /ready); Kubernetes probes use the HTTP
# endpoints directly.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/unleash-remediation-service", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/unleash-remediation-service"]
CMD ["serve"]
