#!/usr/bin/env bash
# The live PyFolds peer for __test__/fold.interop.test.ts: pyfolds==1.0.2 from PyPI (with --no-deps,
# plus the two small packages its container code needs) into .venv/pyfolds-peer, run by Debian's
# /usr/bin/python3 over Debian's python3-torch (pyfolds imports torch; PyPI's torch wheels are far too
# large for this). Without python3-torch the interop test skips and says why.
#   apt-get install -y python3-torch && bash scripts/setup-pyfolds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "setup-pyfolds: /usr/bin/python3 cannot import torch (apt-get install python3-torch); skipping" >&2
  exit 0
fi
python=/usr/bin/python3
if ! "$python" -m pip --version >/dev/null 2>&1; then python=python3; fi
"$python" -m pip install --quiet --disable-pip-version-check --no-deps --target .venv/pyfolds-peer \
  pyfolds==1.0.2 zstandard==0.25.0 reedsolo==1.7.0
