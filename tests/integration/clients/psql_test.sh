#!/usr/bin/env bash
# psql (simple query protocol) through dpgate with SCRAM: catalog browsing
# (\dt, \d, \d+, \dn, \l), the session statements drivers send, a private
# GROUP BY whose released values are noisy but within a stated bound of the
# truth, exactly one ledger charge per execution, and refusals as psql errors
# carrying dpgate's explanation. See docs/CLIENTS.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
clients_start psql

export PGPASSWORD=$ALICE_PASSWORD
DSN="host=127.0.0.1 port=$DPGATE_PORT dbname=$DB user=alice sslmode=disable connect_timeout=10"
q() { psql -X -q -v ON_ERROR_STOP=1 "$DSN" "$@"; }

start_queries=$(ledger_queries alice)
start_spent=$(ledger_spent alice)

# --- catalog browsing: passthrough, free --------------------------------------
out=$(q -c '\dt' 2>&1) || { echo "$out"; fail '\dt failed'; }
expect '\dt' "$out" "public | cities   | table" "public | patients | table" "(2 rows)"
out=$(q -c '\d' 2>&1) || { echo "$out"; fail '\d failed'; }
expect '\d' "$out" "patients" "cities"
out=$(q -c '\d patients' 2>&1) || { echo "$out"; fail '\d patients failed'; }
expect '\d patients' "$out" 'Table "public.patients"' "id     | integer" "city   | text" \
  "charge | numeric(10,2)" '"patients_pkey" PRIMARY KEY, btree (id)' \
  '"patients_age_idx" btree (age)' '"patients_city_fkey" FOREIGN KEY (city) REFERENCES' 'cities(code)'
out=$(q -c '\d+ patients' 2>&1) || { echo "$out"; fail '\d+ patients failed'; }
expect '\d+ patients' "$out" "Storage" "billed amount" "Access method: heap"
out=$(q -c '\d cities' 2>&1) || { echo "$out"; fail '\d cities failed'; }
expect '\d cities' "$out" 'Referenced by:' 'patients" CONSTRAINT "patients_city_fkey"'
out=$(q -c '\dn' 2>&1) || { echo "$out"; fail '\dn failed'; }
expect '\dn' "$out" "public"
out=$(q -c '\l' 2>&1) || { echo "$out"; fail '\l failed'; }
expect '\l' "$out" "$DB"
# \dt+ asks pg_table_size for every table: it works, with every size masked,
# so the real size of the private table never reaches the client.
real_size=$(super_psql "select pg_catalog.pg_size_pretty(pg_catalog.pg_table_size('public.patients'))")
out=$(q -c '\dt+' 2>&1) || { echo "$out"; fail '\dt+ failed'; }
expect '\dt+' "$out" "patients"
grep -qF "$real_size" <<<"$(grep patients <<<"$out")" && { echo "$out"; fail "\\dt+ revealed the size of patients"; }
# The planner's row estimate is masked to PostgreSQL's "unknown" (-1).
out=$(q -tA -c "SELECT c.reltuples, c.relpages FROM pg_catalog.pg_class c WHERE c.relname = 'patients'" 2>&1) ||
  { echo "$out"; fail 'reltuples read failed'; }
[ "$out" = "-1|0" ] || fail "reltuples/relpages of patients not masked: $out"

# --- session statements that drivers and BI tools send ------------------------
out=$(q -tA -c "SET extra_float_digits = 3" -c "SET application_name = 'dpgate-psql-test'" \
  -c "SHOW application_name" -c "SHOW transaction isolation level" -c "select current_schema()" \
  -c "SHOW search_path" -c "select version()" -c "SET DateStyle = 'ISO, MDY'" \
  -c "SET client_min_messages = notice" -c "SHOW server_version" -c "SHOW standard_conforming_strings" 2>&1) ||
  { echo "$out"; fail "a session statement failed"; }
expected=$'dpgate-psql-test\nread committed\npublic\n"$user", public'
[ "$(head -n 4 <<<"$out")" = "$expected" ] || { echo "$out"; fail "session answers differ from: $expected"; }
expect 'session' "$out" "PostgreSQL 15" "on"
# current_schema() follows the session's search_path, not dpgate's pinned one.
out=$(q -tA -c "SET search_path = public" -c "select current_schema(), current_schemas(false)" 2>&1) ||
  { echo "$out"; fail "SET search_path failed"; }
[ "$out" = "public|{public}" ] || { echo "$out"; fail "current_schema after SET search_path"; }

[ "$(ledger_queries alice)" = "$start_queries" ] || fail "catalog browsing was charged"

# --- a private GROUP BY: noisy, near the truth, one charge --------------------
SQL_AGG="SELECT city, count(*), sum(charge) FROM patients WHERE age > 30 GROUP BY city ORDER BY city"
truth() { # truth AGE: city|count|sum over the declared keys
  super_psql "select v.city, count(p.id), coalesce(sum(p.charge), 0) from (values ('east'), ('north'), ('south')) v(city)
              left join public.patients p on p.city = v.city and p.age > $1 group by v.city order by v.city" | tr -d ' '
}
# Bound: the receipt's noise scale b. Counts get discrete Laplace noise,
# P(|X| >= t) <= 2 exp(-t / b); sums snapped Laplace, the same plus less than
# b/2^20 of rounding. With t = b (ln(2 N / 1e-6) + 1) and at most N = 50
# released values checked in this file, the chance that any check fails for
# a correct dpgate is below 1e-6.
N_CHECKS=50
checked=0
noisy=0
check_release() { # check_release NAME RELEASED TRUTH RECEIPT
  local name=$1 released=$2 truth=$3 receipt=$4
  local count_scale sum_scale
  count_scale=$(sed -nE 's/.*; count: [^;(]* scale ([0-9.e+-]+).*/\1/p' <<<"$receipt")
  sum_scale=$(sed -nE 's/.*; sum: [^;(]* scale ([0-9.e+-]+).*/\1/p' <<<"$receipt")
  [ -n "$count_scale" ] && [ -n "$sum_scale" ] || { echo "$receipt"; fail "$name: no noise scales in the receipt"; }
  [ "$(wc -l <<<"$released")" = 3 ] || { echo "$released"; fail "$name: expected the 3 declared cities"; }
  while IFS='|' read -r city count sum && IFS='|' read -r tcity tcount tsum <&3; do
    [ "$city" = "$tcity" ] || fail "$name: city $city where $tcity was expected"
    awk -v c="$count" -v tc="$tcount" -v s="$sum" -v ts="$tsum" -v bc="$count_scale" -v bs="$sum_scale" \
      -v n="$N_CHECKS" -v name="$name $city" 'BEGIN {
        k = log(2 * n / 1e-6) + 1; dc = c - tc; ds = s - ts
        if (dc < 0) dc = -dc
        if (ds < 0) ds = -ds
        if (dc > k * bc) { printf "FAIL: %s: count %s is %g from the truth, bound %g\n", name, c, dc, k * bc; exit 1 }
        if (ds > k * bs) { printf "FAIL: %s: sum %s is %g from the truth, bound %g\n", name, s, ds, k * bs; exit 1 }
      }' || exit 1
    checked=$((checked + 2))
    # An exact sum has probability < 1e-6 each: it would mean no noise.
    awk -v s="$sum" -v ts="$tsum" 'BEGIN { exit (s == ts) }' && noisy=$((noisy + 1))
  done <<<"$released" 3<<<"$truth"
  [ "$checked" -le "$N_CHECKS" ] || fail "more checks than the bound allows for"
}

run_private() { # run_private SQL -> sets RELEASED and RECEIPT
  RELEASED=$(q -tA -F'|' -c "$1" 2>"$WORK/notice") || { cat "$WORK/notice"; fail "private query failed: $1"; }
  RECEIPT=$(cat "$WORK/notice")
}

run_private "$SQL_AGG"
expect 'receipt' "$RECEIPT" "NOTICE:  dpgate: charged epsilon=0.5" "count: discrete Laplace scale" \
  "sum: snapped Laplace scale" "partition selection: public keys from the config"
check_release "age > 30" "$RELEASED" "$(truth 30)" "$RECEIPT"
[ "$(ledger_queries alice)" = $((start_queries + 1)) ] || fail "one execution was not charged exactly once"
awk -v a="$(ledger_spent alice)" -v b="$start_spent" 'BEGIN { exit !(a - b > 0.4999 && a - b < 0.5001) }' ||
  fail "the charge was not epsilon 0.5"
first=$RELEASED

# The identical statement again: the cached noisy rows, charged nothing.
run_private "$SQL_AGG"
expect 'cached receipt' "$RECEIPT" "cached answer" "0 charged"
[ "$RELEASED" = "$first" ] || fail "a repeated query was answered with fresh noise"
[ "$(ledger_queries alice)" = $((start_queries + 1)) ] || fail "a cached answer was charged"

# A new constant is a new query: charged once more, at the epsilon asked for.
out=$(q -tA -c "SET dp.epsilon = 1" -c "SHOW dp.epsilon" 2>&1) || { echo "$out"; fail "SET dp.epsilon"; }
[ "$out" = 1 ] || { echo "$out"; fail "SHOW dp.epsilon after SET dp.epsilon = 1"; }
run_private "SET dp.epsilon = 1; ${SQL_AGG/age > 30/age > 45}"
expect 'receipt at epsilon 1' "$RECEIPT" "charged epsilon=1"
check_release "age > 45" "$RELEASED" "$(truth 45)" "$RECEIPT"
[ "$(ledger_queries alice)" = $((start_queries + 2)) ] || fail "the second execution was not charged exactly once"
awk -v a="$(ledger_spent alice)" -v b="$start_spent" 'BEGIN { exit !(a - b > 1.4999 && a - b < 1.5001) }' ||
  fail "the charges do not add up to epsilon 1.5"
[ "$noisy" -ge 1 ] || fail "every released sum equals the truth: no noise was added"

# --- refusals: psql errors with dpgate's explanation, nothing charged ---------
refused() { # refused SQL PATTERN...
  local sql=$1 out
  shift
  if out=$(q -c "$sql" 2>&1); then echo "$out"; fail "not refused: $sql"; fi
  expect "refusal of $sql" "$out" "ERROR:" "$@"
}
refused "SELECT * FROM patients" "private table public.patients is refused" "select group keys and aggregates"
refused "SELECT id, age FROM patients WHERE city = 'north'" "public.patients"
refused "SELECT city, min(age) FROM patients GROUP BY city" "min"
refused "SELECT * FROM pg_stats" "pg_stats is denied"
# pg_class.reltuples of a private table: masked to PostgreSQL's "unknown"
# (-1), never the real row count (docs/REWRITER.md §3.3).
out=$(q -tA -c "SELECT relname, reltuples FROM pg_class WHERE relname = 'patients'" 2>&1) ||
  fail "pg_class.reltuples could not be read: $out"
[ "$out" = "patients|-1" ] || fail "pg_class.reltuples was not masked: $out"
refused "DELETE FROM patients" "read-only"
[ "$(ledger_queries alice)" = $((start_queries + 2)) ] || fail "a refused statement was charged"

# Budget exhaustion is a psql error naming the budget (bob has 0.6).
bob() { PGPASSWORD=$BOB_PASSWORD psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$DPGATE_PORT dbname=$DB user=bob sslmode=disable connect_timeout=10" "$@"; }
bob -tA -c "SELECT count(*) FROM patients" >/dev/null 2>&1 || fail "bob's first query failed"
if out=$(bob -c "SELECT count(*) FROM patients WHERE age > 50" 2>&1); then echo "$out"; fail "bob went over budget"; fi
expect 'budget refusal' "$out" "ERROR:" "budget exhausted: analyst bob" "ask an administrator"

echo "psql client test: all checks passed ($checked released values within bounds)"
