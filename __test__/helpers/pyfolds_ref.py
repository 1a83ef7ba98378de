"""A small Python reference of the PyFolds checkpoint contract (sections 1-3), written with the real
`safetensors` and `reedsolo` packages from PyPI, for the interop tests (checkpoint.interop.test.ts).

    pyfolds_ref.py save PATH LAYOUT LEVEL KEY SEED     writes a checkpoint (layout meta | ecc)
    pyfolds_ref.py load PATH KEY                        verifies (and repairs) one, prints a JSON report

KEY "-" means no key. Not PyFolds itself: the rules of the contract, so both sides can be checked.
"""
import hashlib
import hmac
import json
import os
import sys

import numpy as np
from reedsolo import RSCodec, ReedSolomonError
from safetensors.numpy import load_file, save_file

TORCH = {
    "float32": "torch.float32", "float16": "torch.float16", "float64": "torch.float64",
    "int8": "torch.int8", "int16": "torch.int16", "int32": "torch.int32", "int64": "torch.int64",
    "uint8": "torch.uint8", "uint16": "torch.uint16", "uint32": "torch.uint32", "uint64": "torch.uint64",
    "bool": "torch.bool",
}
LEVELS = {"off": 0, "none": 0, "0": 0, "": 0, "low": 16, "med": 32, "high": 64}


def integrity_hash(tensors, key):
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode("utf-8"))
        h.update(TORCH[str(t.dtype)].encode("utf-8"))
        h.update(str(tuple(t.shape)).encode("utf-8"))
        h.update(np.ascontiguousarray(t).tobytes())
    hexd = h.hexdigest()
    if key is None:
        return "sha256:" + hexd
    return "hmac-sha256:" + hmac.new(key.encode("utf-8"), hexd.encode("ascii"), hashlib.sha256).hexdigest()


def check_hash(stored, tensors, key):
    if stored.startswith("hmac-sha256:"):
        return key is not None and hmac.compare_digest(stored, integrity_hash(tensors, key))
    plain = integrity_hash(tensors, None)
    return stored == plain or stored == plain[len("sha256:"):]


def rs_parity(data, n):
    codec, k = RSCodec(n), 255 - n
    out = bytearray()
    for at in range(0, len(data), k):
        block = bytes(data[at:at + k])
        out += bytes(codec.encode(block))[len(block):]
    return bytes(out)


def rs_repair(data, parity, n):
    codec, k = RSCodec(n), 255 - n
    out, fixed = bytearray(), 0
    for i, at in enumerate(range(0, len(data), k)):
        block = bytes(data[at:at + k])
        par = parity[i * n:(i + 1) * n]
        msg, _, errata = codec.decode(block + par)
        fixed += len(errata)
        out += bytes(msg)
    return bytes(out), fixed


def tensors_for(seed):
    rng = np.random.default_rng(seed)
    return {
        "layer.weight": rng.standard_normal((64, 33)).astype(np.float32),
        "layer.bias": rng.standard_normal(33).astype(np.float16),
        "emb": rng.integers(-2**40, 2**40, size=(17, 3), dtype=np.int64),
        "mask": rng.integers(0, 2, size=(5,)).astype(np.bool_),
        "scale": np.array(0.5, dtype=np.float64),
        "ids": rng.integers(0, 255, size=(300,), dtype=np.uint8),
    }


def save(path, layout, level, key, seed):
    tensors = tensors_for(seed)
    save_file(tensors, path)
    meta = {"created_at": "2026-02-20T12:00:00.123456Z", "version": "py-1", "git_hash": "unknown",
            "config": {"seed": seed}, "pytorch_version": "2.6.0"}
    h = integrity_hash(tensors, key)
    if layout == "meta":
        with open(path + ".meta.json", "w", encoding="utf-8") as f:
            json.dump({"metadata": meta, "integrity_hash": h, "format": "safetensors"}, f, indent=2)
    else:
        n = LEVELS[level.lower()]
        stem = path[:-len(".safetensors")]
        ecc_len = 0
        if n:
            with open(path, "rb") as f:
                parity = rs_parity(f.read(), n)
            with open(path + ".ecc", "wb") as f:
                f.write(parity)
            ecc_len = len(parity)
        elif os.path.exists(path + ".ecc"):
            os.remove(path + ".ecc")
        doc = {"format": "safetensors", "tensor_file": os.path.basename(path), "metadata": meta,
               "integrity_hash": h, "ecc_algo": f"rs({n})" if n else "none", "ecc_len": ecc_len}
        with open(stem + ".json", "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return {"integrity_hash": h, "tensors": digests(tensors)}


def digests(tensors):
    return {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in tensors.items()}


def load(path, key):
    stem = path[:-len(".safetensors")]
    repaired = 0
    if os.path.exists(path + ".meta.json"):
        with open(path + ".meta.json", encoding="utf-8") as f:
            doc = json.load(f)
        layout = "meta"
    else:
        with open(stem + ".json", encoding="utf-8") as f:
            doc = json.load(f)
        layout = "ecc"
        if doc["ecc_algo"] != "none":
            n = int(doc["ecc_algo"][3:-1])
            with open(path, "rb") as f:
                data = f.read()
            with open(path + ".ecc", "rb") as f:
                parity = f.read()
            if len(parity) != doc["ecc_len"]:
                return {"ok": False, "error": "ecc_len"}
            try:
                fixed_data, repaired = rs_repair(data, parity, n)
            except ReedSolomonError as e:
                return {"ok": False, "error": "uncorrectable: %s" % e}
            if repaired:
                with open(path, "wb") as f:
                    f.write(fixed_data)
    tensors = load_file(path)
    return {"ok": check_hash(doc["integrity_hash"], tensors, key), "layout": layout, "repaired": repaired,
            "metadata": doc["metadata"], "tensors": digests(tensors), "integrity_hash": doc["integrity_hash"]}


def main():
    op = sys.argv[1]
    if op == "save":
        _, _, path, layout, level, key, seed = sys.argv
        out = save(path, layout, level, None if key == "-" else key, int(seed))
    elif op == "load":
        _, _, path, key = sys.argv
        out = load(path, None if key == "-" else key)
    else:
        raise SystemExit("unknown op " + op)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
