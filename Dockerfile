# Baton image for machines that can pull images: build with the official Rust image, run on
# distroless (glibc + libgcc, no shell, non-root user 65532).
#
#   docker build -t baton:latest .
#
# Machines without registry access build the same image (same paths, user, environment,
# entrypoint) from host-built binaries with scripts/docker-image.sh (docker/offline.Dockerfile).
# Both contain the server and the CLI:
#   /usr/local/bin/batond   entrypoint (PID 1; handles SIGTERM/SIGINT: stops accepting,
#                           finishes in-flight requests, flushes, exits 0)
#   /usr/local/bin/baton    CLI, used by the health check (`baton probe`: /readyz on the
#                           metrics port 7422)
# The data directory is /data: mount a volume there (the image declares none, so containers
# never create anonymous volumes behind your back).

# Keep the build image's Debian release equal to the runtime's (bookworm = Debian 12, glibc
# 2.36): the binaries link against the build image's glibc.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Everything the package needs to build (build.rs compiles proto/ with a vendored protoc;
# Cargo.toml names benches/failover.rs). .dockerignore keeps target/ and data out.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin batond --bin baton \
 && mkdir -p /out/data \
 && objcopy --strip-debug target/release/batond /out/batond \
 && objcopy --strip-debug target/release/baton /out/baton

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/batond /out/baton /usr/local/bin/
# Owned by the runtime user, so a fresh named volume mounted on /data is writable.
COPY --from=build --chown=65532:65532 /out/data /data
ENV BATON_DATA_DIR=/data \
    BATON_LISTEN_CLIENT=0.0.0.0:7420 \
    BATON_LISTEN_PEER=0.0.0.0:7421 \
    BATON_METRICS_ADDR=0.0.0.0:7422 \
    NO_COLOR=1
USER 65532:65532
EXPOSE 7420 7421 7422
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/baton", "probe", "--addr", "127.0.0.1:7422"]
ENTRYPOINT ["/usr/local/bin/batond"]
