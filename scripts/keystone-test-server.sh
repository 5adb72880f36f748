#!/usr/bin/env bash
# A throwaway Keystone on loopback for trying auth_strategy = keystone by hand; the
# e2e tests (tests/e2e/test_keystone_auth.py) start their own the same way.
#
#   scripts/keystone-test-server.sh [--port 5000] [--dir DIR]   # serve until Ctrl-C
#   scripts/keystone-test-server.sh --install-only              # just fill the cache
#
# Keystone is installed from PyPI into its own virtualenv, once, cached at
# $CINDERBLOCK_KEYSTONE_VENV (default ~/.cache/cinderblock/keystone-pyX.Y).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" -m tests.e2e.keystone_support "$@"
