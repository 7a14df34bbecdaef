#!/usr/bin/env bash
# Installs wrk (the HTTP benchmarking tool, Debian package) if missing.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk
wrk --version 2>&1 | head -1 || true
