#!/usr/bin/env bash
# node-postgres ("pg", installed from npm at a pinned version by install-npm.sh
# into the build tree) through dpgate with SCRAM: node_test.js checks a
# parameterised private aggregate, a named prepared statement run with new and
# repeated bindings, information_schema browsing with parameters, SET dp.epsilon
# and refusals; this script then checks the ledger holds exactly one charge per
# charged execution. See docs/CLIENTS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

command -v node >/dev/null || fail "node not found: run scripts/install-deps (nodejs)"
npm_dir=${DPGATE_NPM_DIR:-$(dirname "$(dirname "$DPGATE_BINARY")")/clients-npm}
modules=$(bash "$here/install-npm.sh" "$npm_dir") || fail "could not install node-pg from npm into $npm_dir"

clients_start node

start_queries=$(ledger_queries alice)
[ -n "$start_queries" ] || fail "no ledger row for alice"

out=$WORK/node.out
rc=0
NODE_PG_MODULES=$modules DPGATE_PORT=$DPGATE_PORT DB=$DB \
  ALICE_PASSWORD=$ALICE_PASSWORD BOB_PASSWORD=$BOB_PASSWORD \
  TRUTH_HOST=$DPGATE_TEST_PGHOST TRUTH_PORT=$DPGATE_TEST_PGPORT \
  TRUTH_USER=$DPGATE_TEST_PGUSER TRUTH_PASSWORD=$DPGATE_TEST_PGPASSWORD \
  timeout 300 node "$here/node_test.js" >"$out" 2>&1 || rc=$?
finish_client_run node-pg "$out" "$rc" "$start_queries"
echo "node client test: all checks passed ($charges charged executions)"
