#!/usr/bin/env bash
# Shared set-up for the real-client compatibility tests (tests/integration/clients/).
# Sourced by each *_test.sh: creates a fresh database on the test cluster
# (the `pg` CTest fixture) with crafted data, its own upstream and ledger roles,
# a config with SCRAM analysts, and starts its own `dpgate serve` on a free
# port. Everything is removed on exit.
#
# After `clients_start NAME`:
#   DB, DPGATE_PORT, WORK (temp dir), CONFIG (dpgate.yaml), DPGATE_LOG
#   ALICE_PASSWORD, BOB_PASSWORD   (alice: budget 100; bob: budget 0.6)
#   super_psql SQL                  runs SQL directly on the database (truth)
#   alice_dsn                       libpq DSN for alice through dpgate
#   ledger_queries ANALYST          charges recorded this period (`dpgate ledger status`)
#   ledger_spent ANALYST            epsilon spent this period
# DPGATE_UPSTREAM_DSN_OPTIONS, when set before clients_start, is appended to
# the upstream DSN (e.g. " sslmode=require").
#
# The crafted data (public.patients is private, public.cities public):
#   20,000 patients, one row each; ids 1..12,000 live in 'north', the rest in
#   'south'; age = 20 + id % 60; charge = id % 1000 + 0.5. No 'east' patient.
set -euo pipefail
: "${DPGATE_BINARY:?run through ctest}" "${DPGATE_SOURCE_DIR:?run through ctest}"
: "${DPGATE_TEST_PG_STATE:?run through ctest}"
# No test passes without a server: the fixture cluster must be up.
test -f "$DPGATE_TEST_PG_STATE/env" || {
  echo "FAIL: test PostgreSQL is not running"
  exit 1
}
# shellcheck disable=SC1091
. "$DPGATE_TEST_PG_STATE/env"

ALICE_PASSWORD=alice-client-pw
BOB_PASSWORD=bob-client-pw

fail() {
  echo "FAIL: $*"
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

super_psql() {
  PGPASSWORD=$DPGATE_TEST_PGPASSWORD psql -X -q -tA -v ON_ERROR_STOP=1 -h "$DPGATE_TEST_PGHOST" \
    -p "$DPGATE_TEST_PGPORT" -U "$DPGATE_TEST_PGUSER" -d "${2:-$DB}" -c "$1"
}

alice_dsn() {
  echo "host=127.0.0.1 port=$DPGATE_PORT dbname=$DB user=alice password=$ALICE_PASSWORD sslmode=disable connect_timeout=10"
}

clients_cleanup() {
  if [ -n "${DPGATE_PID:-}" ] && kill -0 "$DPGATE_PID" 2>/dev/null; then
    kill -TERM "$DPGATE_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$DPGATE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DPGATE_PID" 2>/dev/null || true
  fi
  if [ -n "${DB:-}" ]; then
    super_psql "drop database if exists $DB with (force)" postgres >/dev/null 2>&1 || true
    super_psql "drop role if exists ${DB}_reader; drop role if exists ${DB}_ledger" postgres >/dev/null 2>&1 || true
  fi
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

clients_start() {
  local name=$1
  DB="clients_${name}_$$"
  WORK=$(mktemp -d "/tmp/dpgate-clients-$name.XXXXXX")
  trap clients_cleanup EXIT
  CONFIG=$WORK/dpgate.yaml
  DPGATE_LOG=$WORK/dpgate.log
  DPGATE_PORT=$(free_port)

  super_psql "create database $DB" postgres >/dev/null
  super_psql "
    create table public.cities (code text primary key, name text not null);
    insert into public.cities values ('north', 'North'), ('south', 'South'), ('east', 'East');
    create table public.patients (
      id integer primary key,
      city text not null references public.cities (code),
      age integer not null,
      charge numeric(10, 2) not null
    );
    comment on table public.patients is 'one row per patient';
    comment on column public.patients.charge is 'billed amount';
    insert into public.patients
      select g, case when g <= 12000 then 'north' else 'south' end, 20 + g % 60, g % 1000 + 0.5
      from generate_series(1, 20000) g;
    create index patients_age_idx on public.patients (age);
    analyze public.patients;
    create role ${DB}_reader login password 'reader-pw';
    alter role ${DB}_reader set default_transaction_read_only = on;
    grant usage on schema public to ${DB}_reader;
    grant select on public.patients, public.cities to ${DB}_reader;
    create role ${DB}_ledger login password 'ledger-pw';
    grant create on database $DB to ${DB}_ledger;" >/dev/null

  local alice_scram bob_scram base
  alice_scram=$(echo "$ALICE_PASSWORD" | "$DPGATE_BINARY" passwd alice)
  bob_scram=$(echo "$BOB_PASSWORD" | "$DPGATE_BINARY" passwd bob)
  base="host=127.0.0.1 port=$DPGATE_TEST_PGPORT dbname=$DB"
  cat >"$CONFIG" <<EOF
listen: { host: 127.0.0.1, port: $DPGATE_PORT }
upstream: { dsn: "$base user=${DB}_reader password=reader-pw${DPGATE_UPSTREAM_DSN_OPTIONS:-}" }
ledger: { dsn: "$base user=${DB}_ledger password=ledger-pw" }
auth: scram
analysts:
  - name: alice
    scram: "$alice_scram"
    budget: { epsilon: 100, delta: 1.0e-3, period: month }
  - name: bob
    scram: "$bob_scram"
    budget: { epsilon: 0.6, delta: 1.0e-3, period: month }
query: { epsilon: 0.5, delta: 1.0e-7, max_epsilon: 5, mechanism: laplace, cache_ttl: 1h }
datasets:
  - name: clinic
    budget: { epsilon: 1000, delta: 0.5, period: month }
    tables:
      - name: public.patients
        privacy_unit: id
        max_groups_contributed: 1
        max_rows_per_group: 1
        columns:
          age: { lower: 0, upper: 120 }
          charge: { lower: 0, upper: 1000 }
          city: { values: [north, south, east] }
      - name: public.cities
        public: true
EOF
  "$DPGATE_BINARY" check -c "$CONFIG" >"$WORK/check.out" 2>&1 || {
    cat "$WORK/check.out"
    fail "dpgate check rejected the test config"
  }
  "$DPGATE_BINARY" serve -c "$CONFIG" >"$DPGATE_LOG" 2>&1 &
  DPGATE_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$DPGATE_PID" 2>/dev/null || { cat "$DPGATE_LOG"; fail "dpgate serve exited"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$DPGATE_PORT") 2>/dev/null; then
      export DB DPGATE_PORT CONFIG ALICE_PASSWORD BOB_PASSWORD
      return 0
    fi
    sleep 0.1
  done
  cat "$DPGATE_LOG"
  fail "dpgate did not listen on $DPGATE_PORT"
}

# From `dpgate ledger status`: the analyst's row in dataset clinic, this period.
# Columns: dataset, "analyst NAME", period, granted/spent/left ε, granted/spent/left δ,
# queries, refused; read from the end so the period label's shape does not matter.
ledger_status_row() {
  "$DPGATE_BINARY" ledger status -c "$CONFIG" --analyst "$1" --dataset clinic |
    awk -v who="$1" '$2 == "analyst" && $3 == who'
}
ledger_queries() { ledger_status_row "$1" | awk '{ print $(NF - 1) }'; }
ledger_spent() { ledger_status_row "$1" | awk '{ print $(NF - 6) }'; }

# Prints a client program's output and checks its run: exit status 0, and
# exactly one ledger charge per execution the program reports on a line
# "charges alice=N". Sets `charges`. Usage: finish_client_run LABEL OUT RC START
finish_client_run() {
  local label=$1 out=$2 rc=$3 start=$4
  cat "$out"
  if [ "$rc" != 0 ]; then
    [ "$rc" = 124 ] && echo "the $label program timed out after 300 s"
    echo "--- dpgate log (last 40 lines) ---"
    tail -n 40 "$DPGATE_LOG"
    fail "$label checks failed (exit $rc)"
  fi
  charges=$(sed -n 's/^charges alice=//p' "$out")
  [ -n "$charges" ] || fail "the $label program did not report its executions"
  [ "$(ledger_queries alice)" = $((start + charges)) ] ||
    fail "ledger has $(($(ledger_queries alice) - start)) charges for alice, expected $charges (one per execution)"
}

expect() { # expect NAME OUTPUT PATTERN...: every fixed-string pattern is in OUTPUT
  local name=$1 out=$2
  shift 2
  for pattern in "$@"; do
    grep -qF -- "$pattern" <<<"$out" || { echo "$out"; fail "$name: missing '$pattern'"; }
  done
}
