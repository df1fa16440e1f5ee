#!/usr/bin/env bash
# The PostgreSQL JDBC driver (libpostgresql-jdbc-java, Debian) through dpgate with
# SCRAM: JdbcClientTest.java, compiled here with javac (no build tool), checks
# DatabaseMetaData.getTables/getColumns, a private aggregate as a PreparedStatement
# with a bound parameter run 7 times (server-side prepare and binary results after
# the 5th), a cursor fetch, the cache, SET dp.epsilon and refusals; this script then
# checks the ledger holds exactly one charge per execution. See docs/CLIENTS.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

JDBC_JAR=/usr/share/java/postgresql.jar
command -v javac >/dev/null || fail "javac not found: run scripts/install-deps (default-jdk-headless)"
test -r "$JDBC_JAR" || fail "$JDBC_JAR not found: run scripts/install-deps (libpostgresql-jdbc-java)"

clients_start jdbc

mkdir -p "$WORK/classes"
timeout 180 javac -encoding UTF-8 -Xlint:all -Werror -cp "$JDBC_JAR" -d "$WORK/classes" \
  "$(dirname "$0")/JdbcClientTest.java" >"$WORK/javac.out" 2>&1 ||
  { cat "$WORK/javac.out"; fail "javac failed on JdbcClientTest.java"; }

start_queries=$(ledger_queries alice)
[ -n "$start_queries" ] || fail "no ledger row for alice"

out=$WORK/jdbc.out
rc=0
DPGATE_URL="jdbc:postgresql://127.0.0.1:$DPGATE_PORT/$DB" \
  TRUTH_URL="jdbc:postgresql://$DPGATE_TEST_PGHOST:$DPGATE_TEST_PGPORT/$DB?sslmode=disable" \
  TRUTH_USER=$DPGATE_TEST_PGUSER TRUTH_PASSWORD=$DPGATE_TEST_PGPASSWORD \
  ALICE_PASSWORD=$ALICE_PASSWORD BOB_PASSWORD=$BOB_PASSWORD \
  timeout 300 java -Xss1m -XX:+UseSerialGC -cp "$JDBC_JAR:$WORK/classes" JdbcClientTest >"$out" 2>&1 || rc=$?
finish_client_run JDBC "$out" "$rc" "$start_queries"
echo "jdbc client test: all checks passed ($charges charged executions)"
