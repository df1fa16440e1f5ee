#!/usr/bin/env bash
# psycopg2 and SQLAlchemy through dpgate: starts dpgate (lib.sh) and runs
# python_test.py with Debian's python3 (python3-psycopg2, python3-sqlalchemy,
# installed by scripts/install-deps), whatever python3 comes first on PATH.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
PYTHON=/usr/bin/python3
"$PYTHON" -c 'import psycopg2, sqlalchemy' ||
  fail "python3-psycopg2 and python3-sqlalchemy are missing: run scripts/install-deps"
clients_start python
export DPGATE_BINARY
export TRUTH_DSN="host=$DPGATE_TEST_PGHOST port=$DPGATE_TEST_PGPORT dbname=$DB user=$DPGATE_TEST_PGUSER password=$DPGATE_TEST_PGPASSWORD"
"$PYTHON" "$(dirname "$0")/python_test.py"
