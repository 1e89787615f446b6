#!/usr/bin/env python3
"""Quantization and dequantization fixtures from gguf-py (PyPI `gguf`), the reference implementation of ggml's
block formats, for tests/test_quant.c (which runs in CI without Python).

Writes tests/reference/fixtures/quant_fixtures.bin: a sequence of records, all little-endian,

    magic "LMFQFX01"; u32 record count; then per record:
    u32 kind (0 = quantize: floats in, gguf-py's bytes out; 1 = dequantize: bytes in, gguf-py's floats out),
    u32 ggml type, u32 element count n, u32 byte count nb, then the input, then the output
    (kind 0: n float32 then nb bytes; kind 1: nb bytes then n float32).

Quantize inputs mix normal values with the cases where rounding rules differ: exact .5 ties after scaling (both
signs), all-zero and constant blocks, a block whose largest magnitude is negative, tiny and huge magnitudes,
subnormals, values at and around the float16 overflow threshold (65504, 65520) and, for BF16, NaNs with payloads
and infinities. Dequantize inputs are random bytes with every half scale replaced by a finite random half, so all
bit patterns of the quants and of the 6-bit scale packing are exercised. Needs: pip install gguf numpy."""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "quant_fixtures.bin")
rng = np.random.default_rng(20240601)


def quant_input(n, qtype):
    x = rng.normal(0, 1, n).astype(np.float32)
    x[0:32] = 0.0                                   # all-zero block
    x[32:64] = 0.375                                # constant block
    t = np.arange(32, dtype=np.float32)
    x[64:96] = (t - 15.5) * 8.0                     # ties after scaling in Q8_0 (amax 127: d = 1)
    x[64 + 31] = 127.0
    x[64 + 0] = -126.5
    x[96:128] = rng.normal(0, 1, 32)
    x[96 + 7] = -9.0                                # largest magnitude negative
    x[128:160] = rng.normal(0, 1e-30, 32)           # tiny (subnormal scales)
    x[160:192] = rng.normal(0, 1e4, 32)             # huge
    x[192:224] = (t - 16) / 16 * 8                  # ties in Q4_0 (d = 1 for max -8)
    x[224:256] = rng.integers(-4, 4, 32).astype(np.float32) * 0.25
    if qtype in (Q.F16, Q.BF16):
        special = [65504.0, 65519.0, 65520.0, 65536.0, -65520.0, 1e-8, 6e-8, 2.98e-8, 5.96e-8, 6.1e-5, 6.103e-5,
                   -0.0, 3.4e38, 1e-40, 1.0000001, 1.0009766, 1.00048828125, 1.000732421875]
        x[256:256 + len(special)] = np.array(special, dtype=np.float32)
        # random bit patterns across the whole float range (NaN and inf excluded for F16: numpy keeps NaN payloads,
        # ggml does not)
        bits = rng.integers(0, 2**32, 200, dtype=np.uint64).astype(np.uint32)
        r = bits.view(np.float32)
        if qtype == Q.F16:
            r = np.where(np.isfinite(r), r, np.float32(1.5))
        x[300:500] = r
        if qtype == Q.BF16:
            nan_bits = np.array([0x7fc00000, 0x7f800001, 0xffc00001, 0x7fffffff, 0x7f800000, 0xff800000,
                                 0x3f80ffff, 0x3f818000, 0x3f808000, 0x3f828000], dtype=np.uint32)
            x[500:510] = nan_bits.view(np.float32)
    return x


def half_scales_random_bytes(qtype, nblocks):
    """random blocks with every f16 field a finite random half of moderate size"""
    bs, tb = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (nblocks, tb), dtype=np.uint64).astype(np.uint8)

    def halves(k):
        return (rng.normal(0, 0.05, (nblocks, k)).astype(np.float16)).view(np.uint8)

    if qtype in (Q.Q8_0, Q.Q4_0, Q.Q5_0):
        raw[:, 0:2] = halves(1)
    elif qtype in (Q.Q4_1, Q.Q5_1):
        raw[:, 0:4] = halves(2)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        raw[:, 0:4] = halves(2)
    elif qtype == Q.Q2_K:
        raw[:, 80:84] = halves(2)
    elif qtype == Q.Q3_K:
        raw[:, 108:110] = halves(1)
    elif qtype == Q.Q6_K:
        raw[:, 208:210] = halves(1)
    elif qtype in (Q.IQ4_NL, Q.IQ4_XS):
        raw[:, 0:2] = halves(1)
    elif qtype == Q.F16:
        raw = rng.normal(0, 10, (nblocks, 1)).astype(np.float16).view(np.uint8)
    elif qtype == Q.BF16:
        raw = raw  # every bit pattern is a valid bfloat16
    return raw


def main():
    records = []
    for qtype in (Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        n = 512
        x = quant_input(n, qtype)
        if qtype == Q.F16:
            q = x.astype(np.float16).view(np.uint8)
        else:
            q = quants.quantize(x.reshape(1, n), qtype).reshape(-1)
        records.append(struct.pack("<IIII", 0, int(qtype), n, q.size) + x.tobytes() + q.tobytes())
    for qtype in (Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
        bs, tb = GGML_QUANT_SIZES[qtype]
        n = 1024 if bs == 256 else 256
        raw = half_scales_random_bytes(qtype, n // bs).reshape(-1)
        y = quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
        assert y.size == n, (qtype, y.size)
        records.append(struct.pack("<IIII", 1, int(qtype), n, raw.size) + raw.tobytes() + y.tobytes())
    # added later, after the others so that their records (one random stream) stay as they were
    for qtype in (Q.IQ4_NL, Q.IQ4_XS):
        bs, tb = GGML_QUANT_SIZES[qtype]
        n = 1024 if bs == 256 else 256
        raw = half_scales_random_bytes(qtype, n // bs).reshape(-1)
        y = quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
        records.append(struct.pack("<IIII", 1, int(qtype), n, raw.size) + raw.tobytes() + y.tobytes())
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(b"LMFQFX01" + struct.pack("<I", len(records)))
        for r in records:
            f.write(r)
    print(f"wrote {OUT}: {len(records)} records, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
