#!/usr/bin/env python3
"""Compares the parameters of two lmforge checkpoints (io/checkpoint.h: version 3 single files or version 4 set
manifests; the params follow the 80-byte header and the config text in both). Usage:
  ckpt_params.py A.lmfc B.lmfc TOL   exit 0 when max |a - b| / max(1, |b|) <= TOL (TOL 0: bit-identical)
Prints the largest difference found."""
import struct
import sys
from array import array


def params(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"LMFCKPT1", f"{path}: not a checkpoint"
    clen, n = struct.unpack_from("<QQ", data, 16)
    a = array("f")
    a.frombytes(data[80 + clen : 80 + clen + 4 * n])
    return a


a, b, tol = params(sys.argv[1]), params(sys.argv[2]), float(sys.argv[3])
if len(a) != len(b):
    sys.exit(f"parameter counts differ: {len(a)} vs {len(b)}")
worst = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(a, b))
same = a.tobytes() == b.tobytes()
print(f"max relative difference {worst:.3g} over {len(a)} parameters{' (bit-identical)' if same else ''}")
sys.exit(0 if (same if tol == 0 else worst <= tol) else 1)
