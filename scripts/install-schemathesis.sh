#!/usr/bin/env bash
# Installs schemathesis (PyPI) into its own virtualenv under
# ~/.cache/flashsale, once; tests/openapi_schemathesis.rs runs it against
# both example servers. Idempotent: quick when already installed. Prints the
# path of the `st` command.
set -euo pipefail
VERSION="4.32.5"
VENV="${FLASHSALE_TOOLS_DIR:-$HOME/.cache/flashsale}/schemathesis-$VERSION"
if [ ! -x "$VENV/bin/st" ]; then
    echo "install-schemathesis: installing schemathesis $VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$VERSION"
fi
echo "$VENV/bin/st"
