# syntax=docker/dockerfile:1
#
# The flashsale container image: the axum server (the entrypoint), the
# actix server and the order worker, built in release with the redis, mysql
# and kafka backends, on an image that holds nothing else: no shell, no
# package manager, only the shared libraries the binaries load and a
# non-root user. See docs/container.md.
#
#   docker build -t flashsale .
#   docker run --rm -p 8080:8080 flashsale        # in memory, demo sales
#
# Without Docker, scripts/build-image.sh builds the same image with buildah;
# both lay the files out with that script, and tests/container_image.rs
# checks that the configuration below is the one it gives.

ARG RUST_VERSION=1.95

# --- builder: compile, then lay the image's files out in /rootfs --------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# librdkafka is built from source (C compiler and make: both in this image)
# and linked statically; only glibc (libc, libm, the loader) and libgcc_s
# stay dynamic.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --example axum_server --example actix_server --example order_worker \
        --features redis,mysql,kafka \
 && scripts/build-image.sh --bin-dir target/release/examples --rootfs /rootfs

# --- the image ------------------------------------------------------------
FROM scratch
LABEL org.opencontainers.image.title="flashsale" \
      org.opencontainers.image.description="flashsale servers (axum, actix) and order worker" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=builder /rootfs/ /
# In a container the server listens on every interface (default: loopback).
ENV FLASHSALE_LISTEN=0.0.0.0:8080
EXPOSE 8080/tcp
# flashsale (see /etc/passwd); it owns no file of the image.
USER 10001:10001
# No shell or curl here: the server binary probes its own GET /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/flashsale-server", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/flashsale-server"]
