#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for the integration tests.
#
#   pg_cluster.sh start STATE_DIR   initdb in a fresh temp dir, start on a free
#                                   loopback port, write STATE_DIR/env
#   pg_cluster.sh stop STATE_DIR    stop it and remove its data directory
#
# PostgreSQL refuses to run as root (DESIGN.md §7): as root the cluster runs as
# the `postgres` user on a data directory that user owns. fsync is off: the
# cluster is thrown away, and durability of the ledger is tested by killing
# dpgate, not PostgreSQL.
#
# DPGATE_TEST_PG_SSL=1 at start also turns TLS on (ssl=on, a self-signed
# certificate made for this cluster), for the tests of a TLS upstream. It is
# off by default: with it on, every libpq client that does not say
# sslmode=disable would use TLS.
set -euo pipefail

cmd=${1:?usage: pg_cluster.sh start|stop STATE_DIR}
state=${2:?usage: pg_cluster.sh start|stop STATE_DIR}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SUPERUSER_PASSWORD=dpgate-test-superuser

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_cluster() {
  [ -f "$state/env" ] || return 0
  # shellcheck disable=SC1091
  . "$state/env"
  if [ -n "${DPGATE_TEST_PGDATA:-}" ] && [ -d "$DPGATE_TEST_PGDATA" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DPGATE_TEST_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$DPGATE_TEST_PGROOT"
  fi
  rm -f "$state/env"
}

case "$cmd" in
start)
  mkdir -p "$state"
  stop_cluster  # a cluster left by an interrupted run
  root=$(mktemp -d /tmp/dpgate-testpg.XXXXXX)
  chmod 755 "$root"
  data="$root/data"
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$root"; fi
  pwfile="$root/pw"
  echo "$SUPERUSER_PASSWORD" >"$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pwfile"; fi
  su_name=$( [ "$(id -u)" = 0 ] && echo postgres || id -un )
  as_pg "$PGBIN/initdb" -D "$data" -U "$su_name" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$root/initdb.log" 2>&1 \
    || { cat "$root/initdb.log" >&2; exit 1; }
  rm -f "$pwfile"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ssl_options=""
  if [ "${DPGATE_TEST_PG_SSL:-0}" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=localhost -keyout "$root/server.key" -out "$root/server.crt" >/dev/null 2>&1
    chmod 600 "$root/server.key"
    if [ "$(id -u)" = 0 ]; then chown postgres "$root/server.key" "$root/server.crt"; fi
    ssl_options="-c ssl=on -c ssl_cert_file=$root/server.crt -c ssl_key_file=$root/server.key"
  fi
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$root/server.log" -w -t 60 \
    -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$root \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c max_connections=300 -c shared_buffers=128MB $ssl_options" start >/dev/null \
    || { cat "$root/server.log" >&2; exit 1; }
  cat >"$state/env" <<EOF
DPGATE_TEST_PGROOT=$root
DPGATE_TEST_PGDATA=$data
DPGATE_TEST_PGHOST=127.0.0.1
DPGATE_TEST_PGSOCKET=$root
DPGATE_TEST_PGPORT=$port
DPGATE_TEST_PGUSER=$su_name
DPGATE_TEST_PGPASSWORD=$SUPERUSER_PASSWORD
EOF
  # Prove it is up before any test relies on it.
  PGPASSWORD=$SUPERUSER_PASSWORD psql -X -q -h 127.0.0.1 -p "$port" -U "$su_name" -d postgres \
    -c 'select 1' >/dev/null
  echo "test PostgreSQL up on 127.0.0.1:$port (data in $data)"
  ;;
stop)
  stop_cluster
  echo "test PostgreSQL stopped"
  ;;
*)
  echo "usage: pg_cluster.sh start|stop STATE_DIR" >&2
  exit 2
  ;;
esac
