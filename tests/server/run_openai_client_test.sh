#!/usr/bin/env bash
# ctest `server_openai_client` (label `server`): drives `vlq serve` with the official `openai` Python client,
# installed from PyPI into a venv under the build folder (reused between runs). Exits 77 (ctest SKIP) when
# there is no python3 venv/pip or no network to PyPI; otherwise the exit status of openai_client_test.py.
# Usage: run_openai_client_test.sh VLQ_BINARY BUILD_DIR
set -uo pipefail
VLQ=${1:?usage: run_openai_client_test.sh VLQ_BINARY BUILD_DIR}
BUILD=${2:?usage: run_openai_client_test.sh VLQ_BINARY BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV="$BUILD/openai-client-venv"
skip() { echo "SKIP: $*"; exit 77; }

command -v python3 >/dev/null || skip "no python3"
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >/dev/null 2>&1 || skip "python3 cannot create a venv (install python3-venv)"
  if ! timeout 120 "$VENV/bin/pip" install -q --disable-pip-version-check --timeout 20 "openai>=1.0" >"$BUILD/openai-pip.log" 2>&1; then
    tail -3 "$BUILD/openai-pip.log"
    rm -rf "$VENV"
    skip "pip could not install openai (no network to PyPI?)"
  fi
fi
exec "$VENV/bin/python" "$HERE/openai_client_test.py" --vlq "$VLQ" --root "$ROOT"
