#!/usr/bin/env bash
# Installs promtool (Prometheus's checker, from Debian's `prometheus`
# package) if it is missing. Only the promtool binary is taken out of the
# package: installing the whole package would also install, and on some
# systems start, a Prometheus server. Idempotent.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
$SUDO apt-get update -qq
# `apt-get download` writes the .deb into the current directory; as root it
# warns that the download is not sandboxed, which is harmless here.
(cd "$tmp" && apt-get download -qq prometheus 2>&1 | grep -v "unsandboxed" || true)
deb="$(ls "$tmp"/prometheus_*.deb)"
dpkg-deb -x "$deb" "$tmp/root"
$SUDO install -m 0755 "$tmp/root/usr/bin/promtool" /usr/local/bin/promtool
promtool --version 2>&1 | head -1
