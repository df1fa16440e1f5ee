#!/usr/bin/env bash
# Installs the npm packages the client tests drive, at pinned versions, into
# DIR/node_modules (node_test.sh passes a directory of the build tree), once:
# later runs find the pinned version there and do nothing. Concurrent runs wait
# on a lock. Needs node and npm (scripts/install-deps) and the npm registry.
#
#   install-npm.sh DIR      prints DIR/node_modules
set -euo pipefail
dir=${1:?usage: install-npm.sh DIR}
PG_VERSION=8.13.1 # node-postgres ("pg"), the most used PostgreSQL driver for Node.js

command -v node >/dev/null || { echo "node not found: run scripts/install-deps" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found: run scripts/install-deps" >&2; exit 1; }
mkdir -p "$dir"
exec 9>"$dir/.install.lock"
flock -w 600 9 || { echo "timed out waiting for another npm install in $dir" >&2; exit 1; }

installed() {
  node -e 'process.stdout.write(require(process.argv[1] + "/node_modules/pg/package.json").version)' "$dir" 2>/dev/null || true
}
if [ "$(installed)" != "$PG_VERSION" ]; then
  cat >"$dir/package.json" <<EOF
{
  "name": "dpgate-client-tests",
  "private": true,
  "description": "npm packages driven by tests/integration/clients (installed by install-npm.sh)",
  "dependencies": { "pg": "$PG_VERSION" }
}
EOF
  timeout 600 npm install --prefix "$dir" --no-audit --no-fund --no-package-lock --loglevel=error \
    >"$dir/npm-install.log" 2>&1 || {
    cat "$dir/npm-install.log" >&2
    echo "npm install of pg@$PG_VERSION failed" >&2
    exit 1
  }
  [ "$(installed)" = "$PG_VERSION" ] || { echo "pg@$PG_VERSION is not in $dir/node_modules after npm install" >&2; exit 1; }
fi
echo "$dir/node_modules"
