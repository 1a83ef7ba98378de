#!/usr/bin/env bash
# Creates .venv with the interop peers (safetensors, numpy, reedsolo from PyPI) unless it is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-interop.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup-python: installing interop peers into .venv"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-interop.txt
echo "$want" > "$stamp"
