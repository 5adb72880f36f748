#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then run them all:
# lint, unit + driver contract tests, the functional suite on SQLite,
# PostgreSQL and MariaDB, and the end-to-end tests (real clients, separate
# processes on RabbitMQ, real iSCSI/NBD initiators).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# --- system packages (Debian; needs root) -------------------------------------------
need_pkgs=()
command -v mkfs.xfs >/dev/null 2>&1 || need_pkgs+=(xfsprogs)
command -v qemu-img >/dev/null 2>&1 || need_pkgs+=(qemu-utils)
command -v filefrag >/dev/null 2>&1 || need_pkgs+=(e2fsprogs)
command -v tgtd >/dev/null 2>&1 || need_pkgs+=(tgt)
command -v iscsi-inq >/dev/null 2>&1 || need_pkgs+=(libiscsi-bin)
dpkg -s qemu-block-extra >/dev/null 2>&1 || need_pkgs+=(qemu-block-extra)
# A throw-away Ceph cluster and the librados/librbd bindings for the RBD driver's tests.
for pkg in ceph-mon ceph-osd ceph-mgr ceph-common python3-rados python3-rbd; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "note: missing ${need_pkgs[*]}; tests that need them will be skipped" >&2
  fi
fi
# Where the packages could be installed, a Ceph cluster that does not start is a failure.
if [ "$(id -u)" = 0 ]; then export CINDERBLOCK_REQUIRE_CEPH=1; fi

# --- databases the functional suite runs against -------------------------------------
scripts/ensure-services.sh

# --- Python environment ---------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e '.[test]'
scripts/ceph-bindings.sh "$VENV"

# --- checks ---------------------------------------------------------------------------
"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check src tests bench

export PYTHONDONTWRITEBYTECODE=1
echo "== unit, driver contract and functional tests on SQLite, e2e with real clients"
CINDERBLOCK_TEST_DB=sqlite "$VENV/bin/pytest" -q -rs tests
for db in postgresql mariadb; do
  echo "== functional tests on $db"
  CINDERBLOCK_TEST_DB=$db "$VENV/bin/pytest" -q tests/functional
done
echo "== functional tests, distributed: api and scheduler processes on RabbitMQ + PostgreSQL"
CINDERBLOCK_TEST_DB=postgresql CINDERBLOCK_TEST_TOPOLOGY=distributed "$VENV/bin/pytest" -q tests/functional
