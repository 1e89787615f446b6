#!/usr/bin/env python3
"""K-quant quantization fixtures from ggml itself, for tests/test_quant.c (which runs in CI without Python).

gguf-py has no K-quant quantizer, so the reference is ggml's own: ggml_quantize_chunk of a llama.cpp build's
libggml-base (without an importance matrix it runs quantize_row_q4_K_ref / q5_K_ref / q6_K_ref, exactly what
llama-quantize runs; ggml-base is compiled without -march flags, so any build gives the same bytes).

    LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin python3 tests/reference/kquant_fixtures.py

Writes tests/reference/fixtures/kquant_fixtures.bin in quant_fixtures.py's record format (kind 0 only: floats in,
ggml's bytes out). Each type gets 24 super-blocks of 256: Gaussian ones at several scales, and the cases where the
search or the rounding takes its other branches: all zeros, constant, one zero sub-block, all positive (the min
clamps to 0), all negative, a sub-block whose stored scale rounds to zero (ggml keeps its fitted quants), exact
ties of the 6-bit scale rounding, a negative element of largest magnitude, subnormal and huge magnitudes, a lone
spike, integer grids, heavy tails. Needs: numpy."""
import ctypes
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "kquant_fixtures.bin")
TYPES = {"Q4_K": (12, 144), "Q5_K": (13, 176), "Q6_K": (14, 210)}
rng = np.random.default_rng(20261205)


def blocks():
    g = lambda s=1.0: rng.normal(0, s, 256).astype(np.float32)
    out = [g(), g(0.02), g(30.0), g(1e-3)]
    out.append(np.zeros(256, np.float32))
    out.append(np.full(256, 0.375, np.float32))
    b = g(); b[96:128] = 0; out.append(b)                         # one zero sub-block
    out.append(np.abs(g()))                                      # all positive: min clamps to 0
    out.append(-np.abs(g()) - 0.5)                               # all negative
    b = g(); b[17] = -9.0; out.append(b)                         # largest magnitude negative
    out.append(g(1e-30))                                         # subnormal-sized scales
    out.append(g(1e4))
    b = np.zeros(256, np.float32); b[200] = 3.0; out.append(b)   # a lone spike
    out.append(rng.integers(-8, 8, 256).astype(np.float32))      # integer grid
    out.append(rng.integers(0, 16, 256).astype(np.float32) * 0.25)
    out.append((rng.standard_t(2, 256)).astype(np.float32))      # heavy tails
    b = np.repeat(np.arange(8, dtype=np.float32) + 1, 32)        # sub-block scales 1..8: ties in 63 / max scale
    out.append(b * np.sign(g()))
    b = g(); b[::16] *= 20; out.append(b)                        # outliers in every 16-element group
    b = g(); b[64:96] *= 1e-4; out.append(b)                    # a sub-block whose 6-bit scale rounds to 0
    for s in (0.1, 0.5, 2.0, 5.0, 1.5):
        out.append(g(s))
    assert len(out) == 24
    return np.concatenate(out)


def main():
    lib = ctypes.CDLL(os.path.join(os.environ["LLAMA_CPP_DIR"], "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    records = []
    for name, (t, bb) in TYPES.items():
        x = blocks()
        n = x.size
        q = np.zeros(n // 256 * bb, np.uint8)
        got = lib.ggml_quantize_chunk(t, x.ctypes.data, q.ctypes.data, 0, 1, n, None)
        assert got == q.size, (name, got, q.size)
        records.append(struct.pack("<IIII", 0, t, n, q.size) + x.tobytes() + q.tobytes())
    with open(OUT, "wb") as f:
        f.write(b"LMFQFX01" + struct.pack("<I", len(records)))
        for r in records:
            f.write(r)
    print(f"wrote {OUT}: {len(records)} records, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    sys.exit(main())
