#!/usr/bin/env bash
# dpgate sample: prints exactly n draws, integers for integer inputs, centred on
# the true value, and refuses bad parameters with exit 2.
set -euo pipefail
: "${DPGATE_BINARY:?run through ctest}"
fail() { echo "FAIL: $*"; exit 1; }

out=$("$DPGATE_BINARY" sample --mechanism laplace --epsilon 1 --sensitivity 1 --value 100 -n 100000)
[ "$(echo "$out" | wc -l)" = 100000 ] || fail "expected 100000 lines"
echo "$out" | grep -qvE '^-?[0-9]+$' && fail "a non-integer draw for an integer query"
# Discrete Laplace at ε=1: variance 2e^-1/(1-e^-1)^2 ≈ 1.84, so the mean of
# 1e5 draws has sd ≈ 0.0043; |mean - 100| > 0.03 (7 sd) has probability < 1e-11.
echo "$out" | awk '{s+=$1} END {m=s/NR; if (m < 99.97 || m > 100.03) {print "mean " m; exit 1}}' \
  || fail "mean is not centred on the value"

g=$("$DPGATE_BINARY" sample --mechanism gaussian --epsilon 1 --delta 1e-6 --sensitivity 1 --value 0 -n 1000)
[ "$(echo "$g" | wc -l)" = 1000 ] || fail "gaussian: expected 1000 lines"

set +e
"$DPGATE_BINARY" sample --mechanism laplace --epsilon -1 -n 5 >/dev/null 2>&1; rc1=$?
"$DPGATE_BINARY" sample --mechanism gaussian --epsilon 1 --delta 0 -n 5 >/dev/null 2>&1; rc2=$?
"$DPGATE_BINARY" sample --mechanism cauchy -n 5 >/dev/null 2>&1; rc3=$?
set -e
[ "$rc1" = 2 ] || fail "negative epsilon accepted (rc $rc1)"
[ "$rc2" = 2 ] || fail "gaussian with delta 0 accepted (rc $rc2)"
[ "$rc3" = 2 ] || fail "unknown mechanism accepted (rc $rc3)"
echo "sample test: all checks passed"
