#!/usr/bin/env bash
# Every C++ source and header of the project is formatted with the root
# .clang-format (the style rule of the project); a file that is not fails here
# with clang-format's own message naming it. Build trees are not sources.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "FAIL: clang-format is not installed (scripts/install-deps)"; exit 1; }
mapfile -t files < <(find app accountant bench common config mechanisms proxy rewriter tests \
  -type f \( -name '*.cpp' -o -name '*.h' \) | sort)
[ "${#files[@]}" -gt 50 ] || { echo "FAIL: found only ${#files[@]} sources"; exit 1; }
clang-format --dry-run --Werror "${files[@]}"
echo "ok: ${#files[@]} files formatted"
