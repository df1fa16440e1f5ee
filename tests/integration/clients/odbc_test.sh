#!/usr/bin/env bash
# psqlODBC (odbc-postgresql) under unixODBC's isql through dpgate with SCRAM:
# catalog functions (SQLTables, SQLColumns), a private aggregate (psqlODBC
# prepares it server-side: Parse/Bind/Describe/Execute with a named statement)
# whose released values are noisy but within a stated bound of the truth, one
# ledger charge per execution, the cache, a transaction mixing private and
# public statements, and refusals as driver errors carrying dpgate's
# explanation. The driver and DSN are described in a temporary odbcinst.ini and
# odbc.ini (ODBCSYSINI, ODBCINI), not the system's. See docs/CLIENTS.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v isql >/dev/null || fail "isql not found: run scripts/install-deps (unixodbc)"
driver=$(dpkg -L odbc-postgresql 2>/dev/null | grep '/psqlodbcw\.so$' | head -n 1 || true)
if [ -z "$driver" ] || [ ! -r "$driver" ]; then fail "psqlodbcw.so not found: run scripts/install-deps (odbc-postgresql)"; fi

clients_start odbc

export ODBCSYSINI=$WORK/odbc ODBCINI=$WORK/odbc/odbc.ini
mkdir -p "$ODBCSYSINI"
cat >"$ODBCSYSINI/odbcinst.ini" <<EOF
[PostgreSQL Unicode]
Description = psqlODBC, Unicode
Driver = $driver
EOF
dsn() { # dsn NAME USER PASSWORD
  cat <<EOF
[$1]
Driver = PostgreSQL Unicode
Servername = 127.0.0.1
Port = $DPGATE_PORT
Database = $DB
Username = $2
Password = $3
SSLmode = disable
UseServerSidePrepare = 1
ConnSettings =
EOF
}
{
  dsn dpgate_alice alice "$ALICE_PASSWORD"
  dsn dpgate_bob bob "$BOB_PASSWORD"
  # Declare/fetch mode (what Tableau's psqlODBC connections use): every
  # SELECT is sent as DECLARE "SQL_CUR..." CURSOR ... and read with FETCH 2.
  dsn dpgate_alice_fetch alice "$ALICE_PASSWORD"
  printf 'UseDeclareFetch = 1\nFetch = 2\n'
} >"$ODBCINI"
chmod 600 "$ODBCINI"

# isql_run DSN STATEMENT...: one isql session (one connection) running each
# statement in turn; prints what isql printed (rows as a|b|c after a header
# line, driver diagnostics as [SQLSTATE]message). isql's exit status does not
# reflect statement errors, so callers look at the output.
isql_run() {
  local dsn=$1 rc=0
  shift
  printf '%s\n' "$@" >"$WORK/isql.in"
  timeout 60 isql -v -b -c -d'|' "$dsn" <"$WORK/isql.in" >"$WORK/isql.out" 2>&1 || rc=$?
  cat "$WORK/isql.out"
  [ "$rc" = 0 ] || { echo "isql exited with status $rc$([ "$rc" = 124 ] && echo ' (timed out after 60 s)')"; return 1; }
}
no_errors() { # no_errors NAME OUTPUT: no driver or isql error in OUTPUT
  if grep -qE '^\[[0-9A-Z]{5}\]ERROR|^\[ISQL\]ERROR|^\[[0-9A-Z]{5}\].*(Error|error)' <<<"$2"; then
    echo "$2"
    fail "$1: isql reported an error"
  fi
}
alice_spent() { # spent_epsilon of alice from SHOW dp.budget, through ODBC
  local out
  out=$(isql_run dpgate_alice "SHOW dp.budget") || { echo "$out"; fail "SHOW dp.budget failed"; }
  no_errors "SHOW dp.budget" "$out"
  expect "SHOW dp.budget" "$out" \
    "dataset|kind|principal|period|remaining_epsilon|remaining_delta|spent_epsilon|granted_epsilon"
  awk -F'|' '$2 == "analyst" && $3 == "alice" { print $7 }' <<<"$out"
}
# --- a private aggregate: noisy, near the truth, one charge -------------------
agg() { echo "SELECT city, count(*) AS n, sum(charge) AS total FROM patients WHERE age > $1 GROUP BY city ORDER BY city"; }
truth() { # truth AGE: city|count|sum over the declared keys
  super_psql "select v.city, count(p.id), coalesce(sum(p.charge), 0) from (values ('east'), ('north'), ('south')) v(city)
              left join public.patients p on p.city = v.city and p.age > $1 group by v.city order by v.city" | tr -d ' '
}
# Bound: the receipt's noise scale b (psqlODBC passes the NoticeResponse on as
# an SQL_SUCCESS_WITH_INFO diagnostic, which isql prints). Counts get discrete
# Laplace noise, P(|X| >= t) <= 2 exp(-t / b); sums snapped Laplace, the same
# plus less than b/2^20 of rounding. With t = b (ln(2 N / 1e-6) + 1) and at most
# N = 30 released values checked in this file, the chance that any check fails
# for a correct dpgate is below 1e-6. (One row per unit and every value inside
# the declared bounds: clamping leaves the truth unchanged.)
N_CHECKS=30
echo 0 >"$WORK/checked"
echo 0 >"$WORK/noisy"
released_rows() { # the 3 data rows after the first "city|n|total" header
  awk -F'|' 'found && NF == 3 && $1 ~ /^(east|north|south)$/ { print; if (++k == 3) exit }
             $0 == "city|n|total" { found = 1 }' <<<"$1"
}
check_release() { # check_release NAME OUTPUT TRUTH
  local name=$1 out=$2 truth=$3 released count_scale sum_scale
  # The first receipt with scales in OUTPUT belongs to its first release.
  count_scale=$(sed -nE 's/.*; n: [^;(]* scale ([0-9.e+-]+).*/\1/p' <<<"$out" | head -n 1)
  sum_scale=$(sed -nE 's/.*; total: [^;(]* scale ([0-9.e+-]+).*/\1/p' <<<"$out" | head -n 1)
  if [ -z "$count_scale" ] || [ -z "$sum_scale" ]; then
    echo "$out"
    fail "$name: no noise scales in the receipt"
  fi
  released=$(released_rows "$out")
  [ "$(wc -l <<<"$released")" = 3 ] || { echo "$out"; fail "$name: expected the 3 declared cities"; }
  while IFS='|' read -r city count sum && IFS='|' read -r tcity tcount tsum <&3; do
    [ "$city" = "$tcity" ] || fail "$name: city $city where $tcity was expected"
    awk -v c="$count" -v tc="$tcount" -v s="$sum" -v ts="$tsum" -v bc="$count_scale" -v bs="$sum_scale" \
      -v n="$N_CHECKS" -v name="$name $city" 'BEGIN {
        if (c !~ /^-?[0-9]+$/) { printf "FAIL: %s: count %s is not an integer\n", name, c; exit 1 }
        k = log(2 * n / 1e-6) + 1; dc = c - tc; ds = s - ts
        if (dc < 0) dc = -dc
        if (ds < 0) ds = -ds
        if (dc > k * bc) { printf "FAIL: %s: count %s is %g from the truth %s, bound %g\n", name, c, dc, tc, k * bc; exit 1 }
        if (ds > k * bs) { printf "FAIL: %s: sum %s is %g from the truth %s, bound %g\n", name, s, ds, ts, k * bs; exit 1 }
      }' || exit 1
    echo $(($(cat "$WORK/checked") + 2)) >"$WORK/checked"
    if awk -v s="$sum" -v ts="$tsum" 'BEGIN { exit (s == ts) }'; then echo $(($(cat "$WORK/noisy") + 1)) >"$WORK/noisy"; fi
  done <<<"$released" 3<<<"$truth"
  [ "$(cat "$WORK/checked")" -le "$N_CHECKS" ] || fail "more checks than the bound allows for"
}
# charged NAME N EPSILON: since `mark`, the ledger holds N more charges for alice
# and SHOW dp.budget (through ODBC) says she spent EPSILON more.
mark() {
  mark_queries=$(ledger_queries alice)
  mark_spent=$(alice_spent)
  if [ -z "$mark_queries" ] || [ -z "$mark_spent" ]; then fail "no budget row for alice"; fi
}
charged() {
  local queries spent
  queries=$(ledger_queries alice)
  [ "$queries" = $((mark_queries + $2)) ] ||
    fail "$1: the ledger has $((queries - mark_queries)) new charges for alice, expected $2 (one per execution)"
  spent=$(alice_spent)
  awk -v a="$spent" -v b="$mark_spent" -v d="$3" 'BEGIN { x = a - b - d; exit !(x < 1e-9 && x > -1e-9) }' ||
    fail "$1: SHOW dp.budget says alice spent $spent, expected $mark_spent + $3"
}

# Each section runs in a subshell of its own so that one failure does not hide
# the others; the test fails if any section failed.
failed=()
section() { # section NAME FUNCTION
  local rc
  echo "--- $1"
  set +e
  (
    set -e
    "$2"
  )
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then echo "ok: $1"; else failed+=("$1"); fi
}


connect_and_catalog() {
  mark
  out=$(isql_run dpgate_alice "SELECT 1 AS one") || { echo "$out"; fail "could not connect with psqlODBC"; }
  no_errors "connect" "$out"
  expect "connect" "$out" "one" "1"
  out=$(isql_run dpgate_alice "help") || { echo "$out"; fail "isql help (SQLTables) failed"; }
  no_errors "SQLTables" "$out"
  expect "SQLTables" "$out" "|public|cities|TABLE|" "|public|patients|TABLE|"
  out=$(isql_run dpgate_alice "help patients") || { echo "$out"; fail "isql help patients (SQLColumns) failed"; }
  no_errors "SQLColumns patients" "$out"
  expect "SQLColumns patients" "$out" "|public|patients|id|4|int4|" "|public|patients|city|" \
    "|public|patients|age|4|int4|" "|public|patients|charge|2|numeric|10|"
  out=$(isql_run dpgate_alice "help cities") || { echo "$out"; fail "isql help cities (SQLColumns) failed"; }
  no_errors "SQLColumns cities" "$out"
  expect "SQLColumns cities" "$out" "|public|cities|code|" "|public|cities|name|"
  charged "catalog browsing" 0 0
}

private_aggregate() {
  mark
  out=$(isql_run dpgate_alice "$(agg 50)") || { echo "$out"; fail "private aggregate failed"; }
  no_errors "private aggregate" "$out"
  expect "receipt" "$out" "dpgate: charged epsilon=0.5 delta=0" "n: discrete Laplace scale" \
    "total: snapped Laplace scale" "partition selection: public keys from the config"
  check_release "age > 50" "$out" "$(truth 50)"
  released_rows "$out" >"$WORK/first"
  charged "one execution" 1 0.5

  # The identical statement in a new connection: the cached noisy rows, no charge.
  mark
  out=$(isql_run dpgate_alice "$(agg 50)") || { echo "$out"; fail "repeated private aggregate failed"; }
  no_errors "repeated private aggregate" "$out"
  expect "cached receipt" "$out" "cached answer" "0 charged"
  [ "$(released_rows "$out")" = "$(cat "$WORK/first")" ] || { echo "$out"; fail "a repeated query was answered with fresh noise"; }
  charged "cached answer" 0 0
}

# psqlODBC prepares each statement server-side under a name of its own
# (_PLAN<address>) and drops it again when the statement handle is freed.
several_statements() {
  mark
  out=$(isql_run dpgate_alice "$(agg 51)" "SELECT code, name FROM cities ORDER BY code" \
    "SELECT count(*) AS cities FROM cities" "$(agg 51)") || { echo "$out"; fail "a session of several statements failed"; }
  no_errors "several statements" "$out"
  expect "several statements" "$out" "north|North" "cities" "cached answer"
  check_release "age > 51" "$out" "$(truth 51)" # the first release and receipt in $out
  charged "several statements" 1 0.5
}

transaction() {
  mark
  out=$(isql_run dpgate_alice "BEGIN" "$(agg 52)" "SELECT name FROM cities WHERE code = 'south'" "COMMIT") ||
    { echo "$out"; fail "a transaction failed"; }
  no_errors "transaction" "$out"
  expect "transaction" "$out" "South"
  check_release "age > 52 in a transaction" "$out" "$(truth 52)"
  charged "transaction" 1 0.5
}

# DESIGN.md §2 "Wrapped queries": the cursor over a private aggregate is
# dpgate's, charged once at DECLARE; FETCH reads the released rows in slices
# of two (three declared cities), and a public query's cursor is the
# upstream's.
declare_fetch() {
  mark
  # FETCHes served from dpgate's own cursor are audited as local session
  # statements with their row count: two rows, then the last one.
  local fetched_before
  fetched_before=$(grep -c 'class=session .* rows=2 .*outcome=local' "$DPGATE_LOG" || true)
  out=$(isql_run dpgate_alice_fetch "$(agg 53)" "SELECT code, name FROM cities ORDER BY code") ||
    { echo "$out"; fail "declare/fetch mode failed"; }
  no_errors "declare/fetch mode" "$out"
  expect "declare/fetch mode" "$out" "north|North" "south|South"
  check_release "age > 53 through a cursor" "$out" "$(truth 53)"
  [ "$(grep -c 'class=session .* rows=2 .*outcome=local' "$DPGATE_LOG" || true)" -gt "$fetched_before" ] ||
    fail "declare/fetch mode: no FETCH of two released rows was served by dpgate"
  charged "declare/fetch mode" 1 0.5
}

refusals() {
  mark
  out=$(isql_run dpgate_alice "SELECT * FROM patients") || true
  expect "refusal" "$out" "[42501]" "* over private table public.patients is refused" "select group keys and aggregates"
  out=$(isql_run dpgate_alice "SELECT city, max(charge) FROM patients GROUP BY city") || true
  expect "refusal of max" "$out" "[0A000]" "the aggregate max is not supported over private data"
  charged "refusals" 0 0
}

# Budget exhaustion (bob has epsilon 0.6) is a driver error naming the budget.
budget_exhaustion() {
  out=$(isql_run dpgate_bob "SELECT count(*) AS n FROM patients") || { echo "$out"; fail "bob's first query failed"; }
  no_errors "bob's first query" "$out"
  out=$(isql_run dpgate_bob "SELECT count(*) AS n FROM patients WHERE age > 50") || true
  expect "budget refusal" "$out" "[53400]" "budget exhausted: analyst bob" "ask an administrator"
}

# Nothing psqlODBC sent may fail upstream: dpgate answers or refuses a statement
# itself, or the upstream runs it.
no_upstream_errors() {
  if grep "outcome=upstream_error" "$DPGATE_LOG"; then
    fail "statements of the psqlODBC sessions failed upstream (audit lines above)"
  fi
}

section "connect; SQLTables and SQLColumns" connect_and_catalog
section "a private aggregate, then the cached answer" private_aggregate
section "several statements in one connection" several_statements
section "a transaction mixing private and public statements" transaction
section "declare/fetch mode: a cursor over released rows" declare_fetch
section "refusals carry dpgate's explanation, nothing charged" refusals
section "budget exhaustion" budget_exhaustion
section "no statement failed upstream" no_upstream_errors
[ "$(cat "$WORK/noisy")" -ge 1 ] || failed+=("noise: every released sum equals the truth")

if [ ${#failed[@]} -gt 0 ]; then
  echo "--- dpgate log (last 30 lines) ---"
  tail -n 30 "$DPGATE_LOG"
  printf 'failed: %s\n' "${failed[@]}"
  fail "${#failed[@]} psqlODBC check(s) failed"
fi
echo "odbc client test: all checks passed ($(cat "$WORK/checked") released values within bounds)"
