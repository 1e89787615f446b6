#!/usr/bin/python3
"""oneDNN's bf16 GEMM through PyTorch on bench_gemm's GPT-2 124M shapes: the reference for lmf_sgemm_bf16.

usage: torch_gemm_bf16.py [THREADS...]      (default 1 2; needs a PyTorch with oneDNN, e.g. PyPI's torch 2.x)

Two columns per shape, GFLOP/s = 2MNK / median time:
  bf16      torch.matmul on bf16 tensors (the operands converted beforehand: oneDNN's GEMM alone)
  autocast  torch.matmul of the fp32 tensors under torch.autocast("cpu", bfloat16): each call converts its inputs,
            as training under autocast does and as lmf_sgemm_bf16 does while it packs
Operand layouts follow bench_gemm: forward x W^T, dinp dy W, dweight dy^T x (views, no copies).
"""
import sys, time
import torch

SHAPES = [("qkv", 256, 768, 2304), ("attproj", 256, 768, 768), ("fc", 256, 768, 3072), ("fcproj", 256, 3072, 768),
          ("qkv", 1024, 768, 2304), ("fc", 1024, 768, 3072), ("fcproj", 1024, 3072, 768),
          ("lm_head", 1024, 768, 50257)]


def timed(fn, budget=0.4):
    fn()
    ts = []
    t_end = time.perf_counter() + budget
    while len(ts) < 3 or (time.perf_counter() < t_end and len(ts) < 50):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    threads = [int(a) for a in sys.argv[1:]] or [1, 2]
    print(f"torch {torch.__version__}, oneDNN bf16 GEMM; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print("| shape | case | M | N | K | thr | bf16 | autocast |")
    print("|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    for name, M, K, N in SHAPES:  # linear layer: tokens M, in features K, out features N
        x, W, dy = torch.randn(M, K), torch.randn(N, K) * 0.02, torch.randn(M, N)
        cases = [("forward", M, N, K, lambda a, b, c: a @ b.t(), (x, W)),
                 ("dinp", M, K, N, lambda a, b, c: c @ b, (None, W, dy)),
                 ("dweight", N, K, M, lambda a, b, c: c.t() @ a, (x, None, dy))]
        for kind, m, n, k, f, ops in cases:
            ops = tuple(ops) + (None,) * (3 - len(ops))
            half = tuple(o.bfloat16() if o is not None else None for o in ops)
            for th in threads:
                torch.set_num_threads(th)
                tb = timed(lambda: f(*half))

                def auto():
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        f(*ops)
                ta = timed(auto)
                fl = 2.0 * m * n * k / 1e9
                print(f"| {name} | {kind} | {m} | {n} | {k} | {th} | {fl / tb:.1f} | {fl / ta:.1f} |")


if __name__ == "__main__":
    main()
