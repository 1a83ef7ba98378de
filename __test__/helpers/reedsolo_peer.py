"""Interop peer: runs a batch of jobs through Python `reedsolo` (PyPI) with RSCodec(N) defaults.

Reads a JSON list of jobs from the file named in argv[1], writes a JSON list of results to stdout.
  {"op": "encode", "n": N, "data": hex}                    -> {"out": hex}   (inline layout)
  {"op": "decode", "n": N, "data": hex, "erasures": [..]}  -> {"data": hex, "full": hex} | {"error": str}
"""
import json
import sys

import reedsolo

results = []
with open(sys.argv[1], encoding="utf-8") as f:
    jobs = json.load(f)
for job in jobs:
    codec = reedsolo.RSCodec(job["n"])
    data = bytearray(bytes.fromhex(job["data"]))
    if job["op"] == "encode":
        results.append({"out": bytes(codec.encode(data)).hex()})
    elif job["op"] == "decode":
        try:
            dec, full, _ = codec.decode(data, erase_pos=job.get("erasures") or None)
            results.append({"data": bytes(dec).hex(), "full": bytes(full).hex()})
        except reedsolo.ReedSolomonError as e:
            results.append({"error": str(e)})
    else:
        raise SystemExit(f"unknown op {job['op']!r}")
json.dump(results, sys.stdout)
