#!/usr/bin/env bash
# Builds the flashsale container image without a Docker daemon, with buildah
# (vfs storage, chroot isolation), from scratch: the three binaries, the
# shared libraries they load (resolved with ldd, the dynamic loader at its
# own path), and a minimal /etc (passwd and group with the non-root user
# flashsale, uid/gid 10001; nsswitch.conf). The layout and configuration are
# those of the Dockerfile's final stage, which stages its files with this
# same script (--rootfs), so both ways make the same image. docs/container.md.
#
#   scripts/build-image.sh [--bin-dir DIR] [--tag NAME] [--storage DIR]
#   scripts/build-image.sh --bin-dir DIR --rootfs OUT
#
#   --bin-dir DIR   take axum_server, actix_server and order_worker from DIR
#                   (e.g. target/debug/examples, built with --features
#                   redis,mysql,kafka) [default: build them now with
#                   `cargo build --release --locked ...` and use those]
#   --tag NAME      the image's name [default: localhost/flashsale:latest]
#   --storage DIR   keep buildah's images in DIR/root (run state in DIR/run)
#                   [default: buildah's own storage, e.g. /var/lib/containers]
#   --rootfs OUT    only lay the image's files out in the new directory OUT;
#                   no buildah (the Dockerfile's builder stage does this)
#
# Needs buildah (scripts/install-image-tools.sh installs it) and ldd.
set -euo pipefail

log() { echo "build-image: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# The image's configuration. The Dockerfile's final stage says the same;
# tests/container_image.rs checks that the two agree.
IMAGE_USER=10001:10001
IMAGE_PORT=8080/tcp
IMAGE_LISTEN=0.0.0.0:8080
SERVER=/usr/local/bin/flashsale-server
# example name -> path in the image
BINARIES=(
  "axum_server:$SERVER"
  "actix_server:/usr/local/bin/flashsale-server-actix"
  "order_worker:/usr/local/bin/flashsale-order-worker"
)

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir=""
tag="localhost/flashsale:latest"
storage=""
rootfs_only=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a name}"; shift 2 ;;
    --storage) storage="${2:?--storage needs a directory}"; shift 2 ;;
    --rootfs) rootfs_only="${2:?--rootfs needs a directory}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# --- the binaries ---------------------------------------------------------
if [[ -z $bin_dir ]]; then
  log "building the release binaries (cargo build --release --locked ...)"
  (cd "$repo" && cargo build --release --locked \
    --example axum_server --example actix_server --example order_worker \
    --features redis,mysql,kafka) || die "cargo build failed"
  target_dir="$(cd "$repo" && cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  bin_dir="$target_dir/release/examples"
fi
[[ -d $bin_dir ]] || die "--bin-dir $bin_dir is not a directory"
bin_dir="$(cd "$bin_dir" && pwd)"
for entry in "${BINARIES[@]}"; do
  name="${entry%%:*}"
  [[ -x $bin_dir/$name ]] ||
    die "$bin_dir/$name is missing (cargo build --example axum_server --example actix_server --example order_worker --features redis,mysql,kafka)"
done

# --- the root file system ------------------------------------------------
# The paths of the shared objects `ldd FILE` lists: the loader at the path
# the binary names (e.g. /lib64/ld-linux-x86-64.so.2), the others where the
# loader found them. A library ldd cannot find is an error.
shared_libs() {
  local out
  if ! out="$(ldd "$1" 2>&1)"; then
    [[ $out == *"not a dynamic executable"* || $out == *"statically linked"* ]] && return 0
    die "ldd $1 failed: $out"
  fi
  if grep -q "not found" <<<"$out"; then
    die "ldd $1: a library is missing: $(grep "not found" <<<"$out" | tr -s ' \t' ' ')"
  fi
  # "libc.so.6 => /lib/.../libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)";
  # linux-vdso.so.1 has no file.
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

stage_rootfs() { # OUT
  local out="$1" entry name dest lib
  mkdir -p "$out/usr/local/bin" "$out/etc"
  for entry in "${BINARIES[@]}"; do
    name="${entry%%:*}"
    dest="${entry#*:}"
    install -m 0755 "$bin_dir/$name" "$out$dest"
    log "  $dest  <- $bin_dir/$name"
  done
  local libs
  libs="$(for entry in "${BINARIES[@]}"; do shared_libs "$bin_dir/${entry%%:*}"; done | sort -u)"
  while IFS= read -r lib; do
    [[ -n $lib ]] || continue
    mkdir -p "$out$(dirname "$lib")"
    # The file itself, at the path the loader looks for (no symlinks).
    cp -L "$lib" "$out$lib"
    chmod 0755 "$out$lib"
    log "  $lib  <- $(readlink -f "$lib")"
  done <<<"$libs"
  printf '%s\n' \
    'root:x:0:0:root:/root:/sbin/nologin' \
    'flashsale:x:10001:10001:flashsale:/nonexistent:/sbin/nologin' >"$out/etc/passwd"
  printf '%s\n' 'root:x:0:' 'flashsale:x:10001:' >"$out/etc/group"
  # Names from /etc/hosts first, then DNS (the runtime writes both files).
  printf '%s\n' 'hosts: files dns' >"$out/etc/nsswitch.conf"
  chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
  # Whatever the umask: nothing in the image is writable but by root.
  find "$out" -type d -exec chmod 0755 {} +
  log "  /etc/passwd, /etc/group (user flashsale, $IMAGE_USER), /etc/nsswitch.conf"
}

if [[ -n $rootfs_only ]]; then
  [[ ! -e $rootfs_only ]] || [[ -z "$(ls -A "$rootfs_only")" ]] ||
    die "--rootfs $rootfs_only exists and is not empty"
  log "laying out the image's files in $rootfs_only"
  stage_rootfs "$rootfs_only"
  exit 0
fi

# --- the image --------------------------------------------------------------
command -v buildah >/dev/null 2>&1 ||
  die "buildah is not installed (scripts/install-image-tools.sh installs it)"
export BUILDAH_ISOLATION=chroot
# Docker's image format: OCI's has no HEALTHCHECK.
export BUILDAH_FORMAT=docker
B=(buildah --storage-driver vfs)
if [[ -n $storage ]]; then
  mkdir -p "$storage"
  storage="$(cd "$storage" && pwd)"
  B+=(--root "$storage/root" --runroot "$storage/run")
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/flashsale-image.XXXXXX")"
ctr=""
cleanup() {
  local status=$?
  set +e
  [[ -n $ctr ]] && "${B[@]}" rm "$ctr" >/dev/null 2>&1
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
log "laying out the image's files"
stage_rootfs "$work/rootfs"

old_id="$("${B[@]}" images --quiet --noheading "$tag" 2>/dev/null || true)"
log "buildah from scratch (storage: vfs${storage:+ in $storage})"
ctr="$("${B[@]}" from --name "flashsale-build-$$" scratch)"
"${B[@]}" copy --chown 0:0 --quiet "$ctr" "$work/rootfs/" / >/dev/null
# buildah splits --healthcheck on spaces (no JSON form): "CMD <argv...>".
"${B[@]}" config \
  --user "$IMAGE_USER" \
  --port "$IMAGE_PORT" \
  --env "FLASHSALE_LISTEN=$IMAGE_LISTEN" \
  --entrypoint "[\"$SERVER\"]" \
  --cmd '' \
  --healthcheck "CMD $SERVER --healthcheck" \
  --healthcheck-interval 10s \
  --healthcheck-timeout 3s \
  --healthcheck-start-period 5s \
  --healthcheck-retries 3 \
  --label org.opencontainers.image.title=flashsale \
  --label "org.opencontainers.image.description=flashsale servers (axum, actix) and order worker" \
  --label "org.opencontainers.image.licenses=MIT OR Apache-2.0" \
  "$ctr"
log "committing $tag (docker format: it keeps the HEALTHCHECK)"
id="$("${B[@]}" commit --quiet --format docker --rm "$ctr" "$tag")"
ctr=""
if [[ -n $old_id && $old_id != "${id:0:${#old_id}}" ]]; then
  # The image this tag named before; kept if a container still uses it.
  "${B[@]}" rmi "$old_id" >/dev/null 2>&1 || true
fi

size="$("${B[@]}" images --noheading --format '{{.Size}}' "$tag")"
echo "built $tag (image ${id:0:12}, $size) in $((SECONDS - started)) s"
echo "  entrypoint $SERVER; user $IMAGE_USER; port $IMAGE_PORT; FLASHSALE_LISTEN=$IMAGE_LISTEN"
echo "  healthcheck $SERVER --healthcheck (every 10s)"
(cd "$work/rootfs" && find . -type f -printf '  %-48P %s bytes\n' | sort)
