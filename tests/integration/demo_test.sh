#!/usr/bin/env bash
# scripts/demo end to end on its own PostgreSQL cluster and ports: it loads the
# demo warehouse, `dpgate check` accepts the demo config, a broken config is
# rejected with a precise message, and re-running the demo is safe.
set -euo pipefail
: "${DPGATE_BINARY:?run through ctest}" "${DPGATE_SOURCE_DIR:?run through ctest}"
# The fixture cluster must be up (no integration test passes without a server).
test -f "$DPGATE_TEST_PG_STATE/env" || { echo "test PostgreSQL is not running"; exit 1; }

work=$(mktemp -d /tmp/dpgate-demo-test.XXXXXX)
chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export DPGATE_DEMO_DIR=$work/demo DPGATE_DEMO_PGPORT=$(free_port) DPGATE_DEMO_PORT=$(free_port)
cleanup() { bash "$DPGATE_SOURCE_DIR/scripts/demo" --stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

out=$(bash "$DPGATE_SOURCE_DIR/scripts/demo" --rows 5000 2>&1) || { echo "$out"; fail "scripts/demo exited non-zero"; }
echo "$out" | tail -n 25

psql_demo() { psql -X -tA -h "$DPGATE_DEMO_DIR/run" -p "$DPGATE_DEMO_PGPORT" -U postgres -d warehouse -c "$1"; }
[ "$(psql_demo 'select count(*) from public.events')" = 5000 ] || fail "events not loaded"
[ "$(psql_demo 'select count(*) from public.employees')" = 1000 ] || fail "employees not loaded"
[ "$(psql_demo 'select count(*) from public.departments')" = 12 ] || fail "departments not loaded"
# The upstream role really is read-only.
[ "$(psql_demo "select setting from pg_db_role_setting s join pg_roles r on r.oid = s.setrole, unnest(s.setconfig) setting where r.rolname = 'dp_reader'")" = "default_transaction_read_only=on" ] \
  || fail "dp_reader is not read-only by default"

# The secrets never reach the console.
. "$DPGATE_DEMO_DIR/secrets"
if echo "$out" | grep -q -e "$LEDGER_PASSWORD" -e "$READER_PASSWORD"; then fail "a password was printed"; fi

# dpgate check accepts the generated config...
"$DPGATE_BINARY" check -c "$DPGATE_DEMO_DIR/dpgate.yaml" >"$work/check.out" 2>&1 || { cat "$work/check.out"; fail "check rejected the demo config"; }
# ...and rejects a broken one with file, line and field.
broken=$work/broken.yaml
sed 's/salary: { lower: 0, upper: 300000 }/salary: { lower: 300000, upper: 0 }/' "$DPGATE_DEMO_DIR/dpgate.yaml" >"$broken"
line=$(grep -n 'salary: { lower: 300000' "$broken" | cut -d: -f1)
if "$DPGATE_BINARY" check -c "$broken" >"$work/broken.out" 2>&1; then fail "check accepted lower > upper"; fi
grep -q "broken.yaml:$line" "$work/broken.out" || { cat "$work/broken.out"; fail "message does not name broken.yaml:$line"; }
grep -q "salary" "$work/broken.out" || { cat "$work/broken.out"; fail "message does not name the field"; }
# A column the warehouse does not have.
sed 's/age: { lower: 18, upper: 70 }/agee: { lower: 18, upper: 70 }/' "$DPGATE_DEMO_DIR/dpgate.yaml" >"$work/nocol.yaml"
if "$DPGATE_BINARY" check -c "$work/nocol.yaml" >"$work/nocol.out" 2>&1; then fail "check accepted a missing column"; fi
grep -q "agee" "$work/nocol.out" || { cat "$work/nocol.out"; fail "message does not name the missing column"; }

# The demo serves: the printed psql line runs a private aggregate through dpgate.
line="psql \"host=127.0.0.1 port=$DPGATE_DEMO_PORT dbname=warehouse user=alice\""
echo "$out" | grep -qF "$line" || fail "the psql line was not printed"
res=$(psql -X -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$DPGATE_DEMO_PORT dbname=warehouse user=alice" \
  -c "SELECT region, count(*) FROM employees GROUP BY region" 2>&1) || { echo "$res"; fail "query through dpgate failed"; }
echo "$res" | grep -q "dpgate: charged epsilon" || { echo "$res"; fail "no privacy receipt"; }
echo "$res" | grep -q "(4 rows)" || { echo "$res"; fail "expected the 4 declared regions"; }
# Raw rows are refused through the demo's proxy.
if psql -X "host=127.0.0.1 port=$DPGATE_DEMO_PORT dbname=warehouse user=alice" -c "SELECT * FROM employees" >/dev/null 2>&1; then
  fail "raw rows were served"
fi

# Re-running is safe and keeps the data.
out2=$(bash "$DPGATE_SOURCE_DIR/scripts/demo" --rows 5000 2>&1) || { echo "$out2"; fail "second run failed"; }
[ "$(psql_demo 'select count(*) from public.events')" = 5000 ] || fail "second run changed the data"
echo "demo test: all checks passed"
