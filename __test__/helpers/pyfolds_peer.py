"""Live peer for the .fold interop test: PyFolds 1.0.2's own FoldWriter / FoldReader.

  python pyfolds_peer.py probe
  python pyfolds_peer.py read FILE            -> JSON {name: sha256 of read_chunk_bytes(verify=True)}
  python pyfolds_peer.py write FILE SPEC.json -> writes FILE with FoldWriter; SPEC: {compress, ecc,
                                                 chunks: [{name, ctype, hex}], metadata}
"""
import hashlib
import json
import sys
import warnings

from pyfolds.serialization import foldio
from pyfolds.serialization.ecc import ReedSolomonECC


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "probe":
        print(json.dumps({"ok": True, "zstd": foldio.zstd is not None}))
        return
    if cmd == "read":
        out = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="google-crc32c")
            warnings.filterwarnings("error", message="Manifest hash")  # only a warning in 1.0.2
            with foldio.FoldReader(sys.argv[2]) as r:
                for name in r.list_chunks():
                    out[name] = hashlib.sha256(r.read_chunk_bytes(name, verify=True)).hexdigest()
        print(json.dumps(out))
        return
    if cmd == "write":
        spec = json.load(open(sys.argv[3]))
        ecc = ReedSolomonECC(spec["ecc"]) if spec.get("ecc") else None
        with foldio.FoldWriter(sys.argv[2], compress=spec["compress"], ecc=ecc) as w:
            for c in spec["chunks"]:
                w.add_chunk(c["name"], c["ctype"], bytes.fromhex(c["hex"]))
            w.finalize(spec["metadata"])
        print(json.dumps({"ok": True}))
        return
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
