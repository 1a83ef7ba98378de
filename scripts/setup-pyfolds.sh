#!/usr/bin/env bash
# The live PyFolds peer for __test__/fold.interop.test.ts: pyfolds==1.0.2 from PyPI (with --no-deps,
# plus the two small packages its container code needs) into .venv/pyfolds-peer, run by Debian's
# /usr/bin/python3 over Debian's python3-torch (pyfolds imports torch; PyPI's torch wheels are far too
# large for this). `npm test` runs it on Debian-like Linux (where apt-get is): it installs python3-torch
# when /usr/bin/python3 cannot import torch (as root, about 150 MB, once per machine), then the peer
# unless .venv/pyfolds-peer is already the pinned one. Exits non-zero when it cannot set the peer up,
# so that the tests it serves fail rather than skip.
#   bash scripts/setup-pyfolds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup-pyfolds: /usr/bin/python3 cannot import torch, and apt-get cannot install python3-torch here (needs root)" >&2
    exit 1
  fi
  echo "setup-pyfolds: apt-get install python3-torch (Debian's PyTorch for /usr/bin/python3, about 150 MB, once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  install() { apt-get install -y -qq --no-install-recommends python3-torch >/dev/null; }
  install || { apt-get update -qq && install; }
  /usr/bin/python3 -c 'import torch'
fi
want="pyfolds==1.0.2 zstandard==0.25.0 reedsolo==1.7.0"
stamp=.venv/pyfolds-peer/.pinned
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python=/usr/bin/python3
if ! "$python" -m pip --version >/dev/null 2>&1; then python=python3; fi
echo "setup-pyfolds: installing $want into .venv/pyfolds-peer" >&2
rm -rf .venv/pyfolds-peer
# shellcheck disable=SC2086 # the pins are separate words
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
  --target .venv/pyfolds-peer $want
echo "$want" > "$stamp"
