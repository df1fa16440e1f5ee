#!/usr/bin/env bash
# dpgate behind a TLS upstream (its DSN says sslmode=require), on a PostgreSQL
# cluster of its own with ssl=on. libpq owns an encrypted connection's bytes,
# so here every statement takes the libpq path, not the byte relay
# (docs/PROXY.md §1 item 4). Checked with psql through dpgate:
# - the upstream connection really is encrypted;
# - a 200,000-row public answer equals the direct one. A wait that missed
#   data libpq had already decrypted would hang this, so it runs under a
#   timeout;
# - an upstream error arrives and the session goes on;
# - a transaction block works;
# - a private aggregate is released near the truth, with its receipt.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${DPGATE_SOURCE_DIR:?run through ctest}"
# The fixture cluster must be up like for every integration test; this test
# then starts its own, with TLS, and lib.sh uses that one.
test -f "${DPGATE_TEST_PG_STATE:?run through ctest}/env" || {
  echo "FAIL: test PostgreSQL is not running"
  exit 1
}
TLS_STATE=$(mktemp -d /tmp/dpgate-tlspg.XXXXXX)
stop_tls_cluster() {
  bash "$DPGATE_SOURCE_DIR/tests/integration/pg_cluster.sh" stop "$TLS_STATE" >/dev/null 2>&1 || true
  rm -rf "$TLS_STATE"
}
trap stop_tls_cluster EXIT
DPGATE_TEST_PG_SSL=1 bash "$DPGATE_SOURCE_DIR/tests/integration/pg_cluster.sh" start "$TLS_STATE" >/dev/null
DPGATE_TEST_PG_STATE=$TLS_STATE
DPGATE_UPSTREAM_DSN_OPTIONS=" sslmode=require"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
clients_start tls_upstream
trap 'clients_cleanup; stop_tls_cluster' EXIT

export PGPASSWORD=$ALICE_PASSWORD
q() { psql -X -q -tA -v ON_ERROR_STOP=1 "$(alice_dsn)" "$@"; }
direct() {
  PGPASSWORD=reader-pw psql -X -q -tA -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$DPGATE_TEST_PGPORT dbname=$DB user=${DB}_reader sslmode=disable" "$@"
}

[ "$(q -c "SELECT count(*) FROM cities")" = 3 ] || fail "a public count through dpgate"
# dpgate's upstream sessions: encrypted, every one.
encrypted=$(super_psql "select count(*) filter (where s.ssl), count(*) from pg_stat_ssl s
  join pg_stat_activity a using (pid) where a.usename = '${DB}_reader'")
[ "${encrypted%|*}" -ge 1 ] && [ "${encrypted%|*}" = "${encrypted#*|}" ] ||
  fail "dpgate's upstream connections are not all encrypted (encrypted|all: $encrypted)"

big="SELECT g, pg_catalog.md5(g::pg_catalog.text) FROM pg_catalog.generate_series(1, 200000) g"
via_sum=$(timeout 120 psql -X -q -tA -v ON_ERROR_STOP=1 "$(alice_dsn)" -c "$big" | md5sum) ||
  fail "the large answer through dpgate failed or hung"
direct_sum=$(direct -c "$big" | md5sum)
[ "$via_sum" = "$direct_sum" ] || fail "the large answer differs from the direct one"

if q -c "SELECT 1 / (SELECT count(*) - 3 FROM cities)" 2>"$WORK/err"; then
  fail "a division by zero succeeded"
fi
grep -q "division by zero" "$WORK/err" || {
  cat "$WORK/err"
  fail "the upstream error did not reach psql"
}
out=$(q -c "BEGIN" -c "SELECT name FROM cities WHERE code = 'north'" -c "COMMIT")
[ "$out" = "North" ] || fail "a transaction block: got '$out'"

# Laplace noise on a count of 20,000 with epsilon 0.5 (scale 2): beyond 200
# with probability e^-100.
count=$(q -c "SELECT count(*) FROM patients" 2>"$WORK/receipt")
grep -q "dpgate: charged epsilon=0.5" "$WORK/receipt" || {
  cat "$WORK/receipt"
  fail "no privacy receipt"
}
python3 -c "import sys; sys.exit(0 if abs(int('$count') - 20000) < 200 else 1)" ||
  fail "released count $count is not near 20000"
kill -0 "$DPGATE_PID" || fail "dpgate exited"
echo "PASS: TLS upstream"
