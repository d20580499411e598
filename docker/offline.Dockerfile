# Offline variant of ../Dockerfile: no base image is pulled. scripts/docker-image.sh builds the
# binaries on the host (cargo build --release), stages them with the shared libraries `ldd`
# lists (glibc 2.36 keeps its files/dns NSS backends inside libc.so.6, so name resolution from
# /etc/hosts and Docker's embedded DNS works without nsswitch.conf or libnss_* modules) in a
# small context directory, and builds this file there:
#
#   rootfs/usr/local/bin/{batond,baton}
#   rootfs/lib/x86_64-linux-gnu/*.so.*, rootfs/lib64/ld-linux-x86-64.so.2 (the paths ldd shows)
#   rootfs/etc/{passwd,group}   (root and nonroot = 65532, as in distroless)
#   data/                       (empty; becomes /data owned by 65532)
#
# Paths, user, environment, health check and entrypoint match ../Dockerfile. Works with the
# legacy builder (DOCKER_BUILDKIT=0) and with BuildKit: no `# syntax=` line, no BuildKit-only
# flags.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/
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
