# Spindle's image: spindled and spindlectl on debian:bookworm-slim.
#
#   build:  podman build --format docker -t spindle:dev .
#           (or: buildah bud --isolation chroot --storage-driver vfs --format docker -t spindle:dev .)
#   run:    podman run -p 50051:50051 -p 9464:9464 \
#             -v ./tokens:/etc/spindle/tokens:ro -e SPINDLE_AUTH_TOKENS=/etc/spindle/tokens spindle:dev
#
# Ports:    50051 gRPC (all Spindle services, health, reflection); 9464 Prometheus /metrics.
# Volumes:  none needed; Spindle keeps its state in memory. Mount the tokens file and TLS files
#           read-only (e.g. under /etc/spindle). /var/lib/spindle is the writable working directory
#           of spawned processes; with a read-only root filesystem mount a tmpfs there and on /tmp.
# Config:   every spindled flag has a SPINDLE_* variable (spindled --help). The image listens on
#           0.0.0.0, so spindled refuses to start until it has tokens (SPINDLE_AUTH_TOKENS) or TLS
#           (SPINDLE_TLS_CERT + SPINDLE_TLS_KEY), or SPINDLE_INSECURE=true says the network is trusted.
# Health:   HEALTHCHECK runs `spindlectl health` on 127.0.0.1 and SPINDLE_LISTEN's port (the gRPC
#           health service needs no token). With TLS,
#           also set SPINDLE_TLS_CA (and SPINDLE_TLS_SERVER_NAME when the certificate does not name
#           127.0.0.1); with mTLS, SPINDLE_CLIENT_CERT and SPINDLE_CLIENT_KEY.
# PID 1:    spindled runs as PID 1 and is a child subreaper: orphaned descendants of the processes
#           it spawns are reaped, no zombie survives. SIGTERM drains (SPINDLE_SHUTDOWN_GRACE_MS).

# ---- build: the same install script CI uses, then only the two binaries ----
FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
ARG JOBS=2
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# Optimised with -O2 (RelWithDebInfo), then stripped. A build given a compiler cache at /ccache
# (`buildah bud -v DIR:/ccache:ro`, as tests/deploy/image_test.sh does with the cache the build on
# the host filled) reuses the objects compiled there from the same sources, read-only.
RUN if [ -d /ccache ]; then export CCACHE_DIR=/ccache CCACHE_READONLY=true CCACHE_TEMPDIR=/tmp/ccache; fi \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DSPINDLE_BUILD_TESTS=OFF -DSPINDLE_BUILD_BENCH=OFF \
 && cmake --build build -j "${JOBS}" --target spindled spindlectl \
 && mkdir -p /out \
 && strip -o /out/spindled build/services/spindled \
 && strip -o /out/spindlectl build/services/spindlectl \
 && scripts/runtime-packages /out/spindled /out/spindlectl > /out/runtime-packages \
 && cat /out/runtime-packages

# ---- runtime: the shared libraries the binaries link, nothing else ----
FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="spindle" \
      org.opencontainers.image.description="Processes, worker pools, locks, queues and values over gRPC" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
      $(cat /tmp/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && groupadd --system --gid 10001 spindle \
 && useradd --system --uid 10001 --gid spindle --home-dir /var/lib/spindle \
      --shell /usr/sbin/nologin spindle \
 && mkdir -p /var/lib/spindle /etc/spindle \
 && chown spindle:spindle /var/lib/spindle
COPY --from=build /out/spindled /out/spindlectl /usr/local/bin/
ENV SPINDLE_LISTEN=0.0.0.0:50051 \
    SPINDLE_METRICS_LISTEN=0.0.0.0:9464
WORKDIR /var/lib/spindle
USER 10001:10001
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
# Shell form: the port follows SPINDLE_LISTEN.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
  CMD /usr/local/bin/spindlectl --address="127.0.0.1:${SPINDLE_LISTEN##*:}" --timeout-ms=3000 health
ENTRYPOINT ["/usr/local/bin/spindled"]
