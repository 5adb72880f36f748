#!/usr/bin/env bash
# Start PostgreSQL and MariaDB on this machine if they are not answering.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
  echo "service on port $1 did not come up" >&2
  return 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port 5432
fi
if ! port_open 3306; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_port 3306
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached || true
fi
exit 0
