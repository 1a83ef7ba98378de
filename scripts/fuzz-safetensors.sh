#!/usr/bin/env bash
# Fuzz the safetensors header parser (kept for `npm run fuzz:safetensors`; see scripts/fuzz.sh).
#   bash scripts/fuzz-safetensors.sh [seconds]
exec bash "$(dirname "$0")/fuzz.sh" safetensors_header "${1:-120}"
