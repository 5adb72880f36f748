#!/usr/bin/env bash
# A throw-away single-node Ceph cluster for the RBD driver's tests and benchmark.
#
#   scripts/ceph-cluster.sh up DIR [POOL] [USER]   start it; state, logs, conf in DIR
#   scripts/ceph-cluster.sh down DIR               stop its daemons and remove DIR
#
# One mon, one mgr (pool statistics come from the mgr) and one memstore OSD,
# all bound to 127.0.0.1 on ports picked free at start, pool size 1, no
# systemd. `up` creates POOL (default cinderblock, initialised for RBD) and a
# restricted cephx user client.USER (default cinderblock) with `profile rbd`
# on that pool only, then writes DIR/env (shell variables: CEPH_CONF,
# CEPH_ADMIN_KEYRING, CEPH_USER, CEPH_USER_KEYRING, CEPH_POOL, CEPH_MON) and
# prints its path. Needs the Debian packages ceph-mon, ceph-osd, ceph-mgr.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 up|down DIR [POOL] [USER]" >&2
  exit 2
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_daemons() {
  local pidfile pid
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
  done
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

if [ "$cmd" = down ]; then
  [ -d "$dir" ] || exit 0
  stop_daemons
  rm -rf "$dir"
  exit 0
fi
[ "$cmd" = up ] || { echo "unknown command $cmd" >&2; exit 2; }

pool=${3:-cinderblock}
user=${4:-cinderblock}
for tool in ceph-mon ceph-osd ceph-mgr ceph ceph-authtool monmaptool rbd; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install ceph-mon ceph-osd ceph-mgr)" >&2; exit 3; }
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir"/{run,log,mon,osd,mgr,keys}
fsid=$(cat /proc/sys/kernel/random/uuid)
mon_port=$(free_port)
mon_port_v1=$(free_port)
# OSD and mgr messengers pick from this range; a random 200-port window keeps
# two clusters on one machine (CI and a developer's tests) apart.
port_min=$((20000 + RANDOM % 20000))
conf=$dir/ceph.conf
# Every daemon and client finds its key in DIR/keys/<name>.keyring.
admin_keyring=$dir/keys/client.admin.keyring
user_keyring=$dir/keys/client.$user.keyring

cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port,v1:127.0.0.1:$mon_port_v1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = $port_min
ms bind port max = $((port_min + 200))
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
# Snapshot ids come from an OSD map change, which the mon batches for
# paxos_propose_interval (1 s by default): a short one keeps tests quick.
paxos propose interval = 0.05
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
osd crush chooseleaf type = 0
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
keyring = $dir/keys/\$name.keyring
client mount timeout = 30
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
mgr data = $dir/mgr/\$name
osd objectstore = memstore
memstore device bytes = 8589934592
osd max object name len = 256
osd max object namespace len = 64
mgr initial modules =
debug ms = 0
[client]
rbd default features = layering, exclusive-lock, object-map, fast-diff, deep-flatten
EOF

start=$(date +%s.%N)
ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$admin_keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$dir/mon.keyring" --import-keyring "$admin_keyring" >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$mon_port,v1:127.0.0.1:$mon_port_v1]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
ceph-mon -c "$conf" -i a </dev/null >>"$dir/log/daemons.out" 2>&1

ceph_() { timeout 60 ceph -c "$conf" "$@"; }

# mgr: pool statistics (ceph df, rados df) are served by it.
mkdir -p "$dir/mgr/mgr.x"
ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
  -o "$dir/keys/mgr.x.keyring"
timeout 60 ceph-mgr -c "$conf" -i x </dev/null >>"$dir/log/daemons.out" 2>&1

# One memstore OSD.
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
osd_id=$(ceph_ osd new "$osd_uuid")
mkdir -p "$dir/osd/osd.$osd_id"
ceph_ auth get-or-create "osd.$osd_id" mon 'allow profile osd' mgr 'allow profile osd' \
  osd 'allow *' -o "$dir/keys/osd.$osd_id.keyring"
ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
timeout 60 ceph-osd -c "$conf" -i "$osd_id" </dev/null >>"$dir/log/daemons.out" 2>&1

ceph_ osd pool create "$pool" 8 8 >/dev/null 2>&1
ceph_ osd pool set "$pool" size 1 --yes-i-really-mean-it >/dev/null 2>&1
timeout 60 rbd -c "$conf" pool init "$pool"
ceph_ auth get-or-create "client.$user" mon 'profile rbd' osd "profile rbd pool=$pool" \
  mgr "profile rbd pool=$pool" -o "$user_keyring"

# Usable when the restricted user can create and remove an image.
probe="cinderblock-probe-$$"
for _ in $(seq 120); do
  if timeout 20 rbd -c "$conf" --id "$user" --keyring "$user_keyring" create --size 1M "$pool/$probe" 2>/dev/null; then
    timeout 20 rbd -c "$conf" --id "$user" --keyring "$user_keyring" rm --no-progress "$pool/$probe" >/dev/null 2>&1
    break
  fi
  sleep 0.5
done
# ... and the mgr reports the pool's free space (schedulers filter on it).
for _ in $(seq 120); do
  avail=$(ceph_ df detail --format json 2>/dev/null | python3 -c '
import json, sys
pools = json.load(sys.stdin).get("pools", [])
print(next((p["stats"].get("max_avail", 0) for p in pools if p["name"] == sys.argv[1]), 0))
' "$pool" 2>/dev/null || echo 0)
  [ "${avail:-0}" -gt 0 ] && break
  sleep 0.5
done
ready=$(python3 -c "import time; print(round(time.time() - $start, 1))")

cat >"$dir/env" <<EOF
CEPH_CONF=$conf
CEPH_ADMIN_KEYRING=$admin_keyring
CEPH_USER=$user
CEPH_USER_KEYRING=$user_keyring
CEPH_POOL=$pool
CEPH_MON=127.0.0.1:$mon_port_v1
CEPH_STARTUP_SECONDS=$ready
EOF
echo "$dir/env"
