#!/usr/bin/env python3
"""K-quant quantization fixtures from ggml itself, for tests/test_quant.c (which runs in CI without Python).

gguf-py has no K-quant quantizer, so the reference is ggml's own: ggml_quantize_chunk of a llama.cpp build's
libggml-base (without an importance matrix it runs quantize_row_q4_K_ref / q5_K_ref / q6_K_ref, exactly what
llama-quantize runs; ggml-base is compiled without -march flags, so any build gives the same bytes).

    LLAMA_CPP_DIR=/path/to/llama.cpp/build/bin python3 tests/reference/kquant_fixtures.py

Writes tests/reference/fixtures/kquant_fixtures.bin in quant_fixtures.py's record format (kind 0 only: floats in,
ggml's bytes out; Q2_K, Q3_K, IQ4_NL and IQ4_XS too: ggml_quantize_chunk's IQ4 quantizer, 7 trials a side), and tests/reference/fixtures/imatrix_quant_fixtures.bin: every integer type quantized under an
importance matrix (ggml_quantize_chunk with imatrix, which runs quantize_row_*_impl as `llama-quantize --imatrix`
does), kind 2 records: u32 kind (2), type, n, nb, n_per_row; n float32 (n / n_per_row rows), n_per_row float32 of
importance, nb bytes. The importance rows: mean squares of Gaussian activations with a few loud columns (what
llama-imatrix makes), all ones, zeros in scattered columns and in a whole 32-column sub-block, a 1e-6 .. 1e4 range,
and all zeros. Each type gets 24 super-blocks of 256: Gaussian ones at several scales, and the cases where the
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
OUT_IMATRIX = os.path.join(HERE, "fixtures", "imatrix_quant_fixtures.bin")
WEIGHTED = {"Q4_0": (2, 18, 32), "Q4_1": (3, 20, 32), "Q5_0": (6, 22, 32), "Q5_1": (7, 24, 32),
            "Q8_0": (8, 34, 32), "Q4_K": (12, 144, 256), "Q5_K": (13, 176, 256), "Q6_K": (14, 210, 256),
            "Q2_K": (10, 84, 256), "Q3_K": (11, 110, 256), "IQ4_NL": (20, 18, 32), "IQ4_XS": (23, 136, 256)}
N_PER_ROW = 512
TYPES = {"Q4_K": (12, 144), "Q5_K": (13, 176), "Q6_K": (14, 210), "Q2_K": (10, 84), "Q3_K": (11, 110)}
# made after the others (one random stream: the older records stay as they were)
TYPES_LATER = {"IQ4_NL": (20, 18, 32), "IQ4_XS": (23, 136, 256)}
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


def importance(kind):
    n = N_PER_ROW
    if kind == 0:                                   # what llama-imatrix makes: mean squares, some loud columns
        a = rng.normal(0, 1, (64, n)).astype(np.float32)
        a[:, rng.integers(0, n, 6)] *= 30
        return (a * a).mean(axis=0).astype(np.float32)
    if kind == 1:
        return np.ones(n, np.float32)
    if kind == 2:                                   # zeros: scattered columns and a whole sub-block
        q = rng.gamma(0.5, 2.0, n).astype(np.float32)
        q[rng.integers(0, n, 40)] = 0
        q[64:96] = 0
        return q
    if kind == 3:
        return (10.0 ** rng.uniform(-6, 4, n)).astype(np.float32)
    return np.zeros(n, np.float32)


def write(path, records):
    with open(path, "wb") as f:
        f.write(b"LMFQFX01" + struct.pack("<I", len(records)))
        for r in records:
            f.write(r)
    print(f"wrote {path}: {len(records)} records, {os.path.getsize(path)} bytes")


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
    kind0 = records

    # under an importance matrix: two rows of 512 a record, cycling through blocks()'s shapes
    pool = blocks().reshape(-1, N_PER_ROW)
    records, r = [], 0
    for name, (t, bb, bs) in WEIGHTED.items():
        for kind in range(5) if name != "Q8_0" else (0,):
            x = np.ascontiguousarray(pool[[r % len(pool), (r + 5) % len(pool)]]).reshape(-1)
            r += 1
            qw = importance(kind)
            q = np.zeros(x.size // bs * bb, np.uint8)
            got = lib.ggml_quantize_chunk(t, x.ctypes.data, q.ctypes.data, 0, x.size // N_PER_ROW, N_PER_ROW,
                                          qw.ctypes.data)
            assert got == q.size, (name, got, q.size)
            records.append(struct.pack("<IIIII", 2, t, x.size, q.size, N_PER_ROW) + x.tobytes() + qw.tobytes() +
                           q.tobytes())
    for name, (t, bb, bs) in TYPES_LATER.items():
        x = blocks()
        n = x.size
        q = np.zeros(n // bs * bb, np.uint8)
        got = lib.ggml_quantize_chunk(t, x.ctypes.data, q.ctypes.data, 0, 1, n, None)
        assert got == q.size, (name, got, q.size)
        kind0.append(struct.pack("<IIII", 0, t, n, q.size) + x.tobytes() + q.tobytes())
    write(OUT, kind0)
    write(OUT_IMATRIX, records)


if __name__ == "__main__":
    sys.exit(main())
