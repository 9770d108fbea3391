#!/usr/bin/env bash
# The lowest versions of the runtime dependencies that pyproject.toml allows, installed
# into .venv-floors (uv's lowest-direct resolution; the test tools stay at their newest),
# so `make floors` tests the floors that pyproject promises. Idempotent: it resolves and
# installs again only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-floors
py=${PY:-python3}
uv_version=0.13.9
if [ ! -f "$venv/.stamp" ] || [ pyproject.toml -nt "$venv/.stamp" ]; then
  echo "==> Lowest allowed runtime dependencies ($venv)"
  test -x "$venv/bin/python" || "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "uv==$uv_version"
  "$venv/bin/uv" pip compile -q --resolution lowest-direct --python "$venv/bin/python" \
    pyproject.toml -o "$venv/floors.txt"
  "$venv/bin/uv" pip install -q --python "$venv/bin/python" -c "$venv/floors.txt" -e '.[dev]'
  touch "$venv/.stamp"
fi
echo "==> Testing on: $("$venv/bin/python" --version) and" \
  "$(grep -E '^(kopf|kubernetes|pyyaml|prometheus-client|opentelemetry-sdk)==' "$venv/floors.txt" | tr '\n' ' ')"
