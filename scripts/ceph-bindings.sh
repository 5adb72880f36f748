#!/usr/bin/env bash
# Make Debian's librados/librbd Python bindings (python3-rados, python3-rbd,
# built for CPython 3.11) importable from a virtualenv: PyPI has no usable
# rados/rbd packages, so the .so files are linked into its site-packages.
#   scripts/ceph-bindings.sh [VENV]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
src=/usr/lib/python3/dist-packages
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tag=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
for mod in rados rbd; do
  so="$src/$mod$tag"
  if [ ! -e "$so" ]; then
    echo "note: $so not found (apt-get install python3-rados python3-rbd, Python 3.11); RBD tests will skip" >&2
    exit 0
  fi
  ln -sf "$so" "$site/"
done
"$venv/bin/python" -c 'import rados, rbd' && echo "rados/rbd bindings linked into $site"
