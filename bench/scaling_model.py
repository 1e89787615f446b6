#!/usr/bin/env python3
"""scaling_model.py — an analytical model of lmforge's training step on N MPI ranks (data, tensor and pipeline
parallel), calibrated on this machine's measurements, predicting step time and scaling efficiency for GPT-2 124M and
1.3B on 8 to 1024 ranks. Python standard library only. docs/distributed.md "Scaling model" explains the numbers.

Notation: N ranks in a grid dp x tp x pp (lmforge's layout: tp innermost, then dp, then pp); a rank is one core
running one thread; B sequences of T tokens per optimizer step (the global batch), micro-batches of b sequences,
m = B / (dp b) micro-batches per pipeline per step; model of L layers, width C (= h), FFN width F, V vocabulary
entries; S bytes; beta the bandwidth a rank sees in bytes/s, alpha the latency of one message in seconds.

Collectives (fp32 everywhere, 4 bytes a value):
  ring all-reduce of S bytes over N ranks:   T_ar(S, N) = 2 (N-1)/N * S / beta + 2 (N-1) * alpha
  ZeRO-1 (what lmforge does for data parallel): reduce-scatter of the gradients, then all-gather of the updated
  parameters, each (N-1)/N * S / beta + (N-1) alpha per bucket: together the volume of one all-reduce,
      T_zero1(S, N) = 2 (N-1)/N * S / beta + 2 (N-1) * alpha * buckets,   buckets = ceil(S/4 / (N * 2^21))
  (lmforge's buckets hold up to 2^21 floats per rank). The loss / norm and the stop-flag all-reduces are a few
  bytes each: 2 ceil(log2 N) alpha a step (recursive doubling, what MPI uses for small messages).

Compute (the FLOPs lmforge executes, measured rate R in FLOP/s per rank):
  per token, training = 6 * (L (4 C^2 + 2 C F) + V C)          (every weight matrix: forward 2, backward 4; the
                                                                 tied head counts, the embedding lookups do not)
                      + 7 * 2 T C * L * (n+1)/(2n)              (attention: Q K^T and P V forward, four products
                                                                 backward, and Q K^T again because the backward
                                                                 recomputes the probabilities; queries in n = T/64
                                                                 blocks, each stopping at its last row's key)
  A model-FLOPs count (6 N per token, or Megatron's formula (3)) differs by the attention terms; compare
  efficiencies across systems, never FLOP rates.

Tensor parallel (Megatron's f / g): each layer's GEMMs split over tp ranks, and per layer per micro-batch 4
all-reduces of b T C activations (2 forward: after the attention output and the MLP down projection; 2 backward,
before the qkv and the MLP up projection):  T_tp = m * L_stage * 4 * T_ar(4 b T C, tp).  The head and the
cross-entropy are vocabulary-parallel (each rank V/tp rows of the head, as lmforge does): the head's GEMMs split tp
ways too, and the last stage adds per micro-batch one all-reduce of b T (tp + 1) values (each rank's log-sum-exp
of every row and the target's logit) and one of b T C (the ranks' shares of d(lnf)):
  T_tp_loss = m * (T_ar(4 b T (tp+1), tp) + T_ar(4 b T C, tp)).
With the whole head on every rank (vocab_parallel=False) the head is not split and there is no loss exchange.
The norms, residual adds and embedding lookups stay replicated on every rank of a group; they are not FLOPs here, so
their cost (folded into the measured rate R) is divided by tp as if it split (the bench shape's TP2 ranks computed 6%
longer than the model's half: docs/distributed.md "Calibration").

Pipeline parallel, 1F1B: a micro-batch crosses every stage forward and back before the pipeline is full, then the
slowest stage sets the pace: step = sum over stages of one slot + (m - 1) slots of the slowest stage. The last stage
also holds the output head (V C per token, a third of GPT-2 124M's FLOPs), so it is the slowest:
  step = m slot_last + (p - 1) slot_mid,   bubble = (p - 1) slot_mid,
  which for equal stages is (m + p - 1) slots and the bubble (p - 1) / (m + p - 1) of the step (= (p-1)/m of the
  ideal time, Narayanan et al. 2021 section 2.2).
  Each slot also sends the stage's b T C activations forward and receives their gradient: 2 (4 b T C / beta + alpha).

Step:  slot = t_mb + t_tp_mb + t_p2p_mb   (t_mb: forward + backward of one micro-batch on a stage)
       step = m slot_last + (p - 1) slot_mid + T_zero1 (minus what overlaps the last backward) + small all-reduces
Optional overlap fraction f of the gradient communication with the backward pass: hidden = min(f T_zero1,
  backward of the last micro-batch = 2/3 t_mb). lmforge overlaps nothing today (f = 0, docs/distributed.md).
Scaling efficiency = t(1 rank, whole batch, no communication) / (N * step), the comparison issue 15 asks for.

Layout. The tables assume Megatron's layout: each rank holds, updates and exchanges only its part of the model (its
stage's layers, its 1/tp of them), ZeRO-1 runs over the dp group. lmforge as built today (--as-built) keeps every
parameter, gradient and activation buffer on every rank and runs ZeRO-1 over all N ranks on the whole parameter
buffer (docs/distributed.md): the same compute and TP / PP traffic, the whole model's gradient volume for every
grid, and no memory saved by tp or pp. The calibration on the measured grids uses this layout.

Network: a group that fits in one host (ranks_per_host consecutive ranks) talks over shared memory; otherwise over
the host's link. Groups strided across hosts share each host's link: a host holds min(stride, ranks_per_host)
members of different rings, which then split the link. --host-bw-gbps caps what one rank can push through TCP (the
host's copy cost, measured over veth where no wire limits it).

Memory per rank (to keep the grids sensible): parameters and gradients 8 bytes each for the rank's part of the
model, AdamW moments 8 bytes each for its 1/dp share of that part, and activations by lmforge's own sizes
(src/model/model.c lmf_model_bytes: nothing T x T is kept) for the larger of the first stage's min(p, m)
micro-batches in flight and the last stage's one with its logits. As built: 8 bytes per parameter of the whole
model, 8 per parameter of its 1/N moment shard, and the whole model's activations (with the logits) for min(p, m)
micro-batches. Grids that do not fit in --mem-gb are left out of "best" and marked.

usage: bench/scaling_model.py                 # calibration, then the prediction tables (markdown)
       bench/scaling_model.py --model gpt2-1.3b --bw-gbps 25 --ranks 64 256 --flops 97 --latency-us 30
       bench/scaling_model.py --calibration-only  # the measured runs and grids beside the model, no tables
       bench/scaling_model.py --selftest      # the formulas against closed-form values
"""
import argparse
import math
import sys

# ---------------------------------------------------------------------------------------------------------------
# Measured on this machine (docs/distributed.md "Scaling model"); each one a flag or an input to the calibration.
# Training FLOP rate of one rank with one thread: FLOPs a step (the formula above) / CPU seconds a step, GPT-2 124M
# shape (L12 C768 T1024 V50257, batch 1; 8.51 s of user CPU a step for 830 GFLOP). CPU seconds rather than wall
# time, since the host was shared (load 5-7 on 2 vCPUs): what one core does while it runs. Wall time gave 58.
MEASURED_GFLOPS = 97.0
# bench/dist_bench.sh on the bench shape (L4 C256 F1024 V257, micro-batches of 8 x 128), twice: grad_accum 2 and 8.
# Step times are medians of the measured steps (ms); "comm" the step's time in collectives, waits included;
# bench_comm's rows are (floats, ms for its reduce-scatter + all-gather pair) on one host and between two network
# namespaces (Open MPI TCP over veth), measured in the same run.
CALIBRATION_RUNS = [
    {"accum": 2, "load": "4.1 before, 6.3 after", "t1": 752.55, "t2_shm": 821.3, "comm_shm": 97.05,
     "t2_veth": 783.1, "comm_veth": 101.6,
     "rows_shm": [(65536, 0.09), (262144, 0.47), (1048576, 23.41), (4194304, 55.12), (16777216, 626.60)],
     "rows_veth": [(65536, 24.02), (262144, 25.90), (1048576, 28.77), (4194304, 86.31), (16777216, 509.10)]},
    {"accum": 8, "load": "8.2 before, 8.2 after", "t1": 7843.9, "t2_shm": 4205.65, "comm_shm": 86.05,
     "t2_veth": 4557.4, "comm_veth": 131.7,
     "rows_shm": [(65536, 0.09), (262144, 0.70), (1048576, 28.58), (4194304, 74.59), (16777216, 319.70)],
     "rows_veth": [(65536, 47.93), (262144, 48.28), (1048576, 57.70), (4194304, 134.00), (16777216, 600.57)]},
]
# bench/grid_bench.sh 6 on a quiet host (Xeon family 6 model 207, 2 vCPUs): the bench shape trained by 1 rank and by
# each 2-rank grid, B8 T128 x 8 micro-batches a step, 1 thread a rank; per grid (label, dp, tp, pp, vocabulary-
# parallel head, ms/step, exchange ms): medians over the steps, "exchange" all the time rank 0 spent inside the
# communicator (collectives, sends and receives, the waits in them, and so a pipeline's bubble). Then TP2 on a model
# whose head is half its parameters (gpt2 L12 C384 H6 F1536 V50257, B4 T128 x 2), vocabulary-parallel and with the
# whole head on every rank (its exchange was not recorded). t1: the 1-rank x 1-thread step, ms.
GRID_RUNS = [
    {"shape": "bench", "B": 64, "b": 8, "t1": 1411.3,
     "grids": [("DP2", 2, 1, 1, True, 730.2, 10.8), ("TP2", 1, 2, 1, True, 825.8, 76.0),
               ("PP2", 1, 1, 2, True, 930.5, 144.5)]},
    {"shape": "bench-v50k", "B": 8, "b": 4, "t1": 2311.0,
     "grids": [("TP2, vocabulary-parallel head", 1, 2, 1, True, 1362.0, 266.0),
               ("TP2, whole head on every rank", 1, 2, 1, False, 2170.0, None)]},
]
# Between ranks of one host, for the cluster predictions: bench_comm's best rate (0.26 MB, 3.06 GB/s a rank); its
# smallest size took 0.09 ms, an upper bound on two latencies. (Loaded, the large sizes fell to 0.1-0.3 GB/s.)
SHM_BW_GBPS = 3.06 * 8
SHM_LATENCY_US = 45.0
# Link latency between hosts: a TCP message in one data centre. Our veth fits (5-16 ms a message) are the wait for a
# descheduled peer on a loaded host, not a network's latency, so it is not the default; --latency-us sets it.
DEFAULT_LATENCY_US = 30.0
BUCKET_FLOATS_PER_RANK = 1 << 21
# these VMs: 2 vCPUs, 24 GiB (one rank a core: 12 GiB a rank)
RANKS_PER_HOST = 2
MEM_GB_PER_RANK = 12.0


class Shape:
    """A GPT-2 layout (lmforge's gpt2 arch: biases, LayerNorm, learned positions, head tied to wte)."""

    def __init__(self, name, L, C, heads, V, T, F=None):
        self.name, self.L, self.C, self.heads, self.V, self.T = name, L, C, heads, V, T
        self.F = F if F else 4 * C

    def layer_params(self):
        C, F = self.C, self.F
        return 4 * C * C + 2 * C * F + 9 * C + F  # qkv, proj, fc, fc proj weights + biases, two LayerNorms

    def embed_params(self):
        return self.V * self.C + self.T * self.C + 2 * self.C  # wte (= head), wpe, final LayerNorm

    def params(self):
        return self.L * self.layer_params() + self.embed_params()

    def layer_flops_per_token(self):
        C, F, T = self.C, self.F, self.T
        n = max(1, math.ceil(T / 64))
        return 6 * (4 * C * C + 2 * C * F) + 7 * 2 * T * C * (n + 1) / (2 * n)

    def head_flops_per_token(self):
        return 6 * self.V * self.C

    def train_flops_per_token(self):
        return self.L * self.layer_flops_per_token() + self.head_flops_per_token()

    def act_floats(self, b, layers, head):
        """lmforge's activation floats for b sequences through `layers` layers (model.c lmf_model_bytes)."""
        N, C, F = b * self.T, self.C, self.F
        per_layer = N * (5 * C + 4 + 3 * C + 2 * F)  # ln / attention / residual outputs, mean + rstd, qkv, fc + gelu
        out = layers * per_layer + N * (2 * C + 3) + N * (2 * C + 3 * C + 2 * F)  # encoded, final ln; backward scratch
        if head:
            out += N * self.V  # logits (probabilities in place)
        return out


PRESETS = {
    # GPT-2 small: llm.c's reproduction model (its README prints num_parameters: 124439808)
    "gpt2-124m": Shape("GPT-2 124M", 12, 768, 12, 50257, 1024),
    # GPT-3 XL's width and depth (Brown et al. 2020: 24 layers, d_model 2048) with 16 heads of 128, GPT-2 vocabulary
    "gpt2-1.3b": Shape("GPT-2 1.3B", 24, 2048, 16, 50257, 1024),
    # GPT-2 XL, llm.c's 1.5B reproduction
    "gpt2-1.5b": Shape("GPT-2 1.5B", 48, 1600, 25, 50257, 1024),
    # the shape bench/dist_bench.sh trains (bytes tokenizer: V 257)
    "bench": Shape("bench L4 C256 F1024 V257", 4, 256, 4, 257, 128, 1024),
    # the tensor-parallel head's bench: a GPT-2 vocabulary on a narrow model (the head: 48% of the parameters)
    "bench-v50k": Shape("bench L12 C384 F1536 V50257", 12, 384, 6, 50257, 128, 1536),
}
DEFAULT_BATCH = {"gpt2-124m": 512, "gpt2-1.3b": 512, "gpt2-1.5b": 512, "bench": 16, "bench-v50k": 8}  # sequences


# --------------------------------------------------------------------------------------------- the formulas
def ring_allreduce_s(S, N, bw, alpha):
    """Ring all-reduce of S bytes over N ranks: 2 (N-1)/N S / bw + 2 (N-1) alpha."""
    if N <= 1:
        return 0.0
    return 2.0 * (N - 1) / N * S / bw + 2.0 * (N - 1) * alpha


def zero1_s(S, N, bw, alpha, buckets=1):
    """ZeRO-1 reduce-scatter + all-gather of S bytes: the volume of one all-reduce, latency per bucket."""
    if N <= 1:
        return 0.0
    one_way = (N - 1) / N * S / bw + (N - 1) * alpha * buckets
    return 2.0 * one_way


def small_allreduce_s(N, alpha):
    return 0.0 if N <= 1 else math.ceil(math.log2(N)) * alpha


def bubble_fraction(p, m):
    """1F1B (and GPipe) bubble as a fraction of the step: (p - 1) / (m + p - 1)."""
    return (p - 1) / (m + p - 1)


def tp_bytes_per_layer(b, T, C):
    """Megatron f / g in training: 4 all-reduces (2 forward, 2 backward) of b T C fp32 values per layer."""
    return 4, 4 * b * T * C


def tp_loss_bytes(b, T, C, tp):
    """The vocabulary-parallel loss, per micro-batch on the last stage: the all-reduce of every row's log-sum-exp on
    each rank and the target's logit (b T (tp + 1) values), and the one of the ranks' shares of d(lnf) (b T C)."""
    return [4 * b * T * (tp + 1), 4 * b * T * C]


# --------------------------------------------------------------------------------------------------- network
class Net:
    def __init__(self, link_gbps, latency_us, host_bw_gbps=None, shm_gbps=SHM_BW_GBPS, shm_latency_us=SHM_LATENCY_US,
                 ranks_per_host=RANKS_PER_HOST):
        self.link = link_gbps * 1e9 / 8
        self.alpha = latency_us * 1e-6
        self.cap = host_bw_gbps * 1e9 / 8 if host_bw_gbps else None
        self.shm, self.shm_alpha = shm_gbps * 1e9 / 8, shm_latency_us * 1e-6
        self.rph = ranks_per_host

    def group(self, size, stride):
        """(bandwidth per rank, latency) of a group of `size` ranks `stride` apart in the world layout."""
        if size * stride <= self.rph:
            return self.shm, self.shm_alpha  # all of it inside one host
        bw = self.link / min(stride, self.rph)  # rings through this host's link share it
        if self.cap:
            bw = min(bw, self.cap)
        return bw, self.alpha


# -------------------------------------------------------------------------------------------------- one step
def predict(shape, net, dp, tp, pp, B, b, flops, overlap=0.0, mem_gb=None, vocab_parallel=True, built=False):
    """Step time and its parts for grid dp x tp x pp, global batch B sequences, micro-batch b; None if the grid does
    not divide the model or the batch. vocab_parallel: the head split over the tp ranks (else whole on each); built:
    lmforge's layout today (whole buffers on every rank, ZeRO-1 over all N ranks) instead of Megatron's."""
    if shape.L % pp or shape.heads % tp or B % dp:
        return None
    b = min(b, B // dp)
    if (B // dp) % b:
        return None
    m = B // (dp * b)
    Ls = shape.L // pp
    N = dp * tp * pp
    tok = b * shape.T
    # a stage's layers, split tp ways; the head (on the last stage) split too when vocabulary-parallel
    t_layers = tok * Ls * shape.layer_flops_per_token() / tp / flops
    t_head = tok * shape.head_flops_per_token() / (tp if vocab_parallel else 1) / flops
    n_ar, S_act = tp_bytes_per_layer(b, shape.T, shape.C)
    bw_tp, a_tp = net.group(tp, 1)
    t_tp_layers = Ls * n_ar * ring_allreduce_s(S_act, tp, bw_tp, a_tp)
    t_tp_loss = 0.0
    if vocab_parallel:
        t_tp_loss = sum(ring_allreduce_s(S, tp, bw_tp, a_tp) for S in tp_loss_bytes(b, shape.T, shape.C, tp))
    if pp > 1:
        bw_pp, a_pp = net.group(2, tp * dp)
        t_p2p_mb = 2 * (S_act / bw_pp + a_pp)
    else:
        t_p2p_mb = 0.0
    slot_mid = t_layers + t_tp_layers + t_p2p_mb  # a stage without the head (the first one embeds: no FLOPs)
    slot_last = slot_mid + t_head + t_tp_loss
    if built:  # every rank reduces the whole gradient buffer, over all N ranks
        p_rank = shape.params()
        bw_dp, a_dp = net.group(N, 1)
        zero_n = N
    else:  # the rank's slice of the parameters (the last stage's, with the head: the largest)
        p_rank = (Ls * shape.layer_params() + (shape.embed_params() if pp == 1 else shape.V * shape.C)) / tp
        bw_dp, a_dp = net.group(dp, tp)
        zero_n = dp
    buckets = max(1, math.ceil(p_rank / (zero_n * BUCKET_FLOATS_PER_RANK)))
    t_dp = zero1_s(4 * p_rank, zero_n, bw_dp, a_dp, buckets)
    hidden = min(overlap * t_dp, 2.0 / 3.0 * (t_layers + t_head))
    t_small = 2 * small_allreduce_s(N, net.alpha if N > net.rph else net.shm_alpha)
    step = m * slot_last + (pp - 1) * slot_mid + (t_dp - hidden) + t_small
    t1 = B * shape.T * shape.train_flops_per_token() / flops
    # 1F1B: the first stage keeps min(p, m) micro-batches' activations, the last one (with the logits) one
    if built:
        acts = min(pp, m) * shape.act_floats(b, shape.L, True)
        mem = 8 * p_rank + 8 * p_rank / N + 4 * acts
    else:
        acts = max(min(pp, m) * shape.act_floats(b, Ls, pp == 1), shape.act_floats(b, Ls, True))
        mem = 8 * p_rank + 8 * p_rank / dp + 4 * acts / tp
    first = t_layers + (t_head if pp == 1 else 0.0)
    return {
        "dp": dp, "tp": tp, "pp": pp, "N": N, "m": m, "b": b,
        "compute": m * (t_layers + t_head), "tp_comm": m * (t_tp_layers + t_tp_loss), "tp_loss": m * t_tp_loss,
        "pp_comm": m * t_p2p_mb, "bubble": (pp - 1) * slot_mid, "dp_comm": t_dp - hidden, "small": t_small,
        "step": step, "t1": t1, "eff": t1 / (N * step), "first_compute": m * first,
        "last_wait": m * (slot_last - slot_mid) if pp > 1 else 0.0,
        "mem_gb": mem / 2**30, "fits": mem_gb is None or mem / 2**30 <= mem_gb,
    }


def grids(N, shape):
    """dp x tp x pp = N with tp dividing the heads (at most 16) and pp the layers."""
    for tp in range(1, 17):
        for pp in range(1, shape.L + 1):
            if N % (tp * pp) == 0 and shape.heads % tp == 0 and shape.L % pp == 0:
                yield N // (tp * pp), tp, pp


def best(shape, net, N, B, b, flops, overlap, mem_gb, built=False):
    """The fastest grid and micro-batch (powers of two up to b) that fit in memory: the search a user would do."""
    out = None
    for dp, tp, pp in grids(N, shape):
        mb = 1
        while mb <= b:
            r = predict(shape, net, dp, tp, pp, B, mb, flops, overlap, mem_gb, built=built)
            if r and r["fits"] and (out is None or r["step"] < out["step"]):
                out = r
            mb *= 2
    return out


# --------------------------------------------------------------------------------------------------- output
def fmt_s(x):
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def row(label, r):
    if r is None:
        return f"| {label} | - | - | - | - | - | - | - | - | - | - |"
    grid = f"{r['dp']}x{r['tp']}x{r['pp']}"
    mark = "" if r["fits"] else " (over memory)"
    return (f"| {label} | {grid}{mark} | {r['m']} x {r['b']} | {fmt_s(r['compute'])} | {fmt_s(r['dp_comm'])} | "
            f"{fmt_s(r['tp_comm'])} | {fmt_s(r['pp_comm'])} | {fmt_s(r['bubble'])} | {fmt_s(r['step'])} | "
            f"{100 * r['eff']:.0f}% | {r['mem_gb']:.1f} |")


HEADER = ("| ranks | grid dp x tp x pp | micro-batches x b | compute s | DP comm s | TP comm s | PP p2p s | bubble s |"
          " step s | efficiency | GiB/rank |\n|---|---|---|---|---|---|---|---|---|---|---|")


def table(shape, net, ranks, B, b, flops, overlap, mem_gb, built=False):
    lines = [HEADER]
    for N in ranks:
        r = predict(shape, net, N, 1, 1, B, b, flops, overlap, mem_gb, built=built)
        lines.append(row(f"{N} DP only", r))
        lines.append(row(f"{N} best grid", best(shape, net, N, B, b, flops, overlap, mem_gb, built)))
    return "\n".join(lines)


def weak_table(shapes, links, args, flops):
    """Weak scaling: each data-parallel rank keeps B0 sequences (the global batch grows with N)."""
    head = "| model | link | " + " | ".join(f"{N} ranks" for N in args.ranks) + " |"
    lines = [head, "|" + "---|" * (2 + len(args.ranks))]
    for key in shapes:
        s = PRESETS[key]
        for gbps in links:
            net = Net(gbps, args.latency_us, args.host_bw_gbps, args.shm_bw_gbps, args.shm_latency_us,
                      args.ranks_per_host)
            cells = []
            for N in args.ranks:
                r = predict(s, net, N, 1, 1, args.weak_batch * N, args.micro_batch, flops, args.overlap,
                            built=args.as_built)
                cells.append(f"{100 * r['eff']:.1f}%" if r else "-")
            lines.append(f"| {s.name} | {gbps:g} Gb/s | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fit_alpha_beta(rows, n):
    """alpha (s) and beta (bytes/s) of t = 4 n / beta + 2 alpha (2 ranks, one bucket) through the two bench_comm
    rows that bracket n floats: the measured collective at the gradient's size, in the model's terms."""
    lo = max((r for r in rows if r[0] <= n), key=lambda r: r[0], default=rows[0])
    hi = min((r for r in rows if r[0] > n), key=lambda r: r[0], default=rows[-1])
    if hi[0] == lo[0]:
        lo = rows[-2]
    beta = 4.0 * (hi[0] - lo[0]) / ((hi[1] - lo[1]) / 1e3)
    alpha = (lo[1] / 1e3 - 4.0 * lo[0] / beta) / 2
    return max(alpha, 0.0), beta


def calibration(flops):
    """The model's prediction for the runs bench/dist_bench.sh measured, beside the measurements: compute from the
    run's own 1-rank step (its wall-time FLOP rate) and from --flops, communication from the run's bench_comm."""
    s = PRESETS["bench"]
    out = [f"Cluster tables: {flops / 1e9:.0f} GFLOP/s a rank (--flops, CPU time). Bench shape "
           f"({s.params():,} parameters), 2 ranks x 1 thread against 1 rank x 1 thread:", "",
           "| run | collective fit (alpha, beta) | predicted, rate from the run's t1 | predicted, --flops rate |"
           " measured |", "|---|---|---|---|---|"]
    for run in CALIBRATION_RUNS:
        B, b = 8 * run["accum"], 8
        F = B * s.T * s.train_flops_per_token()
        rate_wall = F / (run["t1"] / 1e3)
        for path, rows, t2, c2 in (("one host", run["rows_shm"], run["t2_shm"], run["comm_shm"]),
                                   ("two namespaces, TCP", run["rows_veth"], run["t2_veth"], run["comm_veth"])):
            alpha, beta = fit_alpha_beta(rows, s.params())
            net = Net(beta * 8 / 1e9, alpha * 1e6, None, beta * 8 / 1e9, alpha * 1e6, 1)  # every group on this path
            cells = []
            for rate in (rate_wall, flops):
                r = predict(s, net, 2, 1, 1, B, b, rate)
                comm = r["dp_comm"] + r["small"]
                cells.append(f"{r['step'] * 1e3:.0f} ms (compute {r['compute'] * 1e3:.0f}, comm {comm * 1e3:.0f}), "
                             f"eff {100 * r['eff']:.0f}%")
            meas = f"{t2:.0f} ms (compute {t2 - c2:.0f}, comm {c2:.0f}), eff {100 * run['t1'] / (2 * t2):.0f}%"
            label = (f"accum {run['accum']} ({B} x 128 tokens), {path}; t1 {run['t1']:.0f} ms = "
                     f"{rate_wall / 1e9:.1f} GFLOP/s, load {run['load']}")
            out.append(f"| {label} | {alpha * 1e3:.1f} ms, {beta / 1e9:.2f} GB/s | {cells[0]} | {cells[1]} | {meas} |")
    return "\n".join(out)


def grid_calibration(shm_gbps, shm_latency_us):
    """The grids bench/grid_bench.sh measured (GRID_RUNS) beside the model's prediction for the same shape, batch and
    grid, with lmforge's layout today (built=True): the FLOP rate from the run's own 1-rank step, and the shared-memory
    bandwidth and latency the cluster tables use (--shm-bw-gbps, --shm-latency-us). Every rank on one host."""
    net = Net(25.0, shm_latency_us, None, shm_gbps, shm_latency_us, 2)
    out = [f"Shared memory {shm_gbps / 8:.2f} GB/s a rank and {shm_latency_us:g} us a message (--shm-bw-gbps, "
           "--shm-latency-us); compute at the run's own 1-rank rate; lmforge's layout today (whole buffers on every "
           "rank, ZeRO-1 over all ranks). \"exchange\": rank 0's time in the communicator, waits and bubble included.",
           "", "| shape, tokens a step | grid | measured ms/step (compute + exchange), efficiency |"
           " predicted ms/step (compute + exchange), efficiency | predicted / measured | predicted exchange, its parts"
           " (ms) |", "|---|---|---|---|---|---|"]
    for run in GRID_RUNS:
        s = PRESETS[run["shape"]]
        B, b, t1 = run["B"], run["b"], run["t1"]
        rate = B * s.T * s.train_flops_per_token() / (t1 / 1e3)
        head = f"{s.name}, {B // b} x {b} x {s.T}"
        out.append(f"| {head} | 1 rank x 1 thread | {t1:.0f}, 100% | {t1:.0f}: sets the rate, {rate / 1e9:.1f} GFLOP/s "
                   "| 1.00 | - |")
        for label, dp, tp, pp, vocab, ms, ex in run["grids"]:
            r = predict(s, net, dp, tp, pp, B, b, rate, vocab_parallel=vocab, built=True)
            N = dp * tp * pp
            step, comp = r["step"] * 1e3, r["first_compute"] * 1e3
            parts = [("TP all-reduces", r["tp_comm"] - r["tp_loss"]), ("loss all-reduces", r["tp_loss"]),
                     ("activations sent", r["pp_comm"]), ("fill and drain", r["bubble"]),
                     ("waits for the head's stage", r["last_wait"]), ("ZeRO-1", r["dp_comm"]),
                     ("loss and norm", r["small"])]
            if pp > 1:  # the last stage's loss exchange is inside its wait
                parts[1] = ("loss all-reduces", 0.0)
            parts = ", ".join(f"{name} {1e3 * v:.1f}" for name, v in parts if v > 0)
            meas = (f"{ms:.0f} ({ms - ex:.0f} + {ex:.0f})" if ex is not None else f"{ms:.0f} (exchange not recorded)")
            out.append(f"| {head} | {label} | {meas}, {100 * t1 / (N * ms):.0f}% | {step:.0f} ({comp:.0f} + "
                       f"{step - comp:.0f}), {100 * r['eff']:.0f}% | {step / ms:.2f} | {step - comp:.1f}: {parts} |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- self-test
def selftest():
    """The formulas against values worked out by hand; exits non-zero on the first mismatch."""
    def eq(name, got, want, tol=1e-9):
        if abs(got - want) > tol * max(1.0, abs(want)):
            print(f"selftest FAIL: {name}: got {got!r}, want {want!r}")
            sys.exit(1)

    eq("ring 2 ranks, 8 GB at 1 GB/s", ring_allreduce_s(8e9, 2, 1e9, 0), 8.0)
    eq("ring 4 ranks", ring_allreduce_s(8e9, 4, 1e9, 0), 12.0)
    eq("ring latency 5 ranks", ring_allreduce_s(0, 5, 1e9, 1e-3), 8e-3)
    eq("ring 1 rank", ring_allreduce_s(8e9, 1, 1e9, 1), 0.0)
    eq("zero1 = all-reduce", zero1_s(3e9, 8, 2e9, 5e-5), ring_allreduce_s(3e9, 8, 2e9, 5e-5))
    eq("zero1 buckets", zero1_s(0, 4, 1e9, 1e-3, 3), 2 * 3 * 3e-3)
    eq("bubble p4 m12", bubble_fraction(4, 12), 0.2)
    eq("bubble p1", bubble_fraction(1, 7), 0.0)
    eq("tp bytes", tp_bytes_per_layer(2, 1024, 768)[1], 4 * 2 * 1024 * 768)
    eq("GPT-2 124M parameters (llm.c prints 124439808)", PRESETS["gpt2-124m"].params(), 124439808)
    eq("bench shape parameters (lmforge prints 3258112)", PRESETS["bench"].params(), 3258112)
    s = PRESETS["gpt2-124m"]
    eq("124M matmul FLOPs a token", s.train_flops_per_token() - s.L * 7 * 2 * 1024 * 768 * 17 / 32,
       6 * (12 * (4 * 768**2 + 2 * 768 * 3072) + 50257 * 768))
    # a pure data-parallel step on a trivial model: compute halves, communication is the closed form
    one = Shape("one", 1, 64, 1, 1, 64, 64)
    net = Net(8.0, 0.0, None, 8.0, 0.0, 1)  # 1 GB/s everywhere, no latency
    r = predict(one, net, 2, 1, 1, 4, 1, 1e9)
    p = one.params()
    eq("DP2 compute", r["compute"], r["t1"] / 2)
    eq("DP2 comm", r["dp_comm"], 2 * 0.5 * 4 * p / 1e9)
    eq("DP2 step", r["step"], r["t1"] / 2 + 4 * p / 1e9)
    # a pipeline of 4 equal stages (no head: V = 0): the step is (m + p - 1) slots, the bubble (p - 1)/(m + p - 1)
    four = Shape("four", 4, 64, 1, 0, 64, 64)
    r = predict(four, net, 1, 1, 4, 12, 1, 1e9)
    eq("PP4 bubble share", r["bubble"] / (r["step"] - r["dp_comm"] - r["small"]), 0.2)
    # with a head the last stage is slower: one pass through every stage, then m - 1 slots of the last one
    two = Shape("two", 2, 64, 1, 64, 64, 64)
    r = predict(two, net, 1, 1, 2, 4, 1, 1e9)
    mid = 64 * two.layer_flops_per_token() / 1e9 + 2 * (4 * 64 * 64 / 1e9)  # a layer, its activation sent and back
    last = mid + 64 * two.head_flops_per_token() / 1e9
    eq("PP2 step with a head", r["step"] - r["dp_comm"] - r["small"], 4 * last + mid)
    eq("PP2 bubble with a head", r["bubble"], mid)
    eq("PP2 rank 0 compute", r["first_compute"], 4 * 64 * two.layer_flops_per_token() / 1e9)
    # tensor parallel: half the FLOPs, 4 all-reduces of b T C a layer, and the vocabulary-parallel loss's two
    eq("TP loss bytes", sum(tp_loss_bytes(2, 64, 32, 4)), 4 * 2 * 64 * (5 + 32))
    tp = Shape("tp", 2, 64, 2, 128, 64, 64)
    r = predict(tp, net, 1, 2, 1, 4, 2, 1e9)
    ar = 2 * 0.5 * (4 * 2 * 64 * 64) / 1e9  # a ring all-reduce of b T C floats on 2 ranks at 1 GB/s
    eq("TP2 compute", r["compute"], r["t1"] / 2)
    eq("TP2 layer all-reduces", r["tp_comm"] - r["tp_loss"], 2 * 2 * 4 * ar)
    eq("TP2 loss all-reduces", r["tp_loss"], 2 * (ar + 4 * 2 * 64 * 3 / 1e9))
    eq("TP2 step (Megatron layout: no data-parallel exchange)", r["step"], r["t1"] / 2 + r["tp_comm"])
    whole = predict(tp, net, 1, 2, 1, 4, 2, 1e9, vocab_parallel=False)
    eq("TP2, whole head on each rank", whole["compute"] - r["compute"], 2 * 2 * 64 * tp.head_flops_per_token() / 2e9)
    eq("TP2, whole head: no loss exchange", whole["tp_loss"], 0.0)
    # lmforge as built: ZeRO-1 of the whole model over all ranks, whatever the grid
    built = predict(tp, net, 1, 2, 1, 4, 2, 1e9, built=True)
    eq("TP2 as built: ZeRO-1 of all parameters", built["dp_comm"], 2 * 0.5 * 4 * tp.params() / 1e9)
    print("selftest ok")


# ------------------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["gpt2-124m", "gpt2-1.3b"], choices=sorted(PRESETS) + ["custom"])
    ap.add_argument("--shape", metavar="L,C,HEADS,V,T[,F]", help="the custom model: layers, width, heads, vocabulary,"
                    " sequence length, FFN width (default 4 C)")
    ap.add_argument("--ranks", nargs="+", type=int, default=[8, 16, 64, 256, 1024])
    ap.add_argument("--bw-gbps", nargs="+", type=float, default=[25.0, 100.0], help="link bandwidth between hosts")
    ap.add_argument("--latency-us", type=float, default=DEFAULT_LATENCY_US, help="one message between hosts")
    ap.add_argument("--flops", type=float, default=MEASURED_GFLOPS, help="training GFLOP/s of one rank (1 thread)")
    ap.add_argument("--host-bw-gbps", type=float, default=None,
                    help="cap on what one rank pushes through TCP (the host's copy cost); default none")
    ap.add_argument("--shm-bw-gbps", type=float, default=SHM_BW_GBPS, help="between ranks of one host")
    ap.add_argument("--shm-latency-us", type=float, default=SHM_LATENCY_US)
    ap.add_argument("--ranks-per-host", type=int, default=RANKS_PER_HOST)
    ap.add_argument("--mem-gb", type=float, default=MEM_GB_PER_RANK, help="memory a rank may use (GiB)")
    ap.add_argument("--global-batch", type=int, default=None, help="sequences a step (default 512)")
    ap.add_argument("--micro-batch", type=int, default=4, help="sequences a micro-batch (at most B / dp)")
    ap.add_argument("--weak-batch", type=int, default=4, help="sequences per data-parallel rank, weak scaling")
    ap.add_argument("--overlap", type=float, default=0.0, help="share of DP communication hidden by the backward")
    ap.add_argument("--as-built", action="store_true", help="lmforge's layout today: every rank keeps the whole "
                    "model's buffers and ZeRO-1 runs over all ranks (default: Megatron's, each rank its part)")
    ap.add_argument("--no-calibration", action="store_true")
    ap.add_argument("--calibration-only", action="store_true", help="the measured runs beside the model, no tables")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    if "custom" in args.model:
        try:
            dims = [int(x) for x in args.shape.split(",")]
            if len(dims) not in (5, 6) or min(dims) < 1:
                raise ValueError
        except (AttributeError, ValueError):
            ap.error(f"--model custom needs --shape L,C,HEADS,V,T[,F] of positive integers (got {args.shape!r})")
        if dims[1] % dims[2]:
            ap.error(f"--shape: width {dims[1]} is not a multiple of heads {dims[2]}")
        PRESETS["custom"] = Shape("custom", *dims)
        DEFAULT_BATCH["custom"] = 512
    positive = [("--flops", args.flops), ("--micro-batch", args.micro_batch), ("--weak-batch", args.weak_batch),
                ("--ranks-per-host", args.ranks_per_host), ("--mem-gb", args.mem_gb),
                ("--shm-bw-gbps", args.shm_bw_gbps), ("--global-batch", args.global_batch or 1),
                ("--host-bw-gbps", args.host_bw_gbps or 1)]
    positive += [("--ranks", n) for n in args.ranks] + [("--bw-gbps", g) for g in args.bw_gbps]
    for name, v in positive:
        if not v > 0:
            ap.error(f"{name} must be positive (got {v})")
    for name, v in (("--latency-us", args.latency_us), ("--shm-latency-us", args.shm_latency_us)):
        if not v >= 0:
            ap.error(f"{name} must be zero or more (got {v})")
    if args.no_calibration and args.calibration_only:
        ap.error("--calibration-only and --no-calibration exclude each other")
    if not 0 <= args.overlap <= 1:
        ap.error(f"--overlap is a fraction in [0, 1] (got {args.overlap})")
    flops = args.flops * 1e9
    if not args.no_calibration:
        print("## Calibration: the measured 2-rank run beside the model\n")
        print(calibration(flops))
        print()
        print("## Calibration: the measured grids (bench/grid_bench.sh) beside the model\n")
        print(grid_calibration(args.shm_bw_gbps, args.shm_latency_us))
        print()
    if args.calibration_only:
        return
    for key in args.model:
        s = PRESETS[key]
        B = args.global_batch or DEFAULT_BATCH[key]
        for gbps in args.bw_gbps:
            net = Net(gbps, args.latency_us, args.host_bw_gbps, args.shm_bw_gbps, args.shm_latency_us,
                      args.ranks_per_host)
            print(f"## {s.name} ({s.params():,} parameters, L{s.L} C{s.C} T{s.T}), global batch {B} x "
                  f"{s.T} tokens, {gbps:g} Gb/s, {args.latency_us:g} us, {args.flops:g} GFLOP/s a rank; 1 rank: "
                  f"{fmt_s(B * s.T * s.train_flops_per_token() / flops)} s a step\n")
            print(table(s, net, args.ranks, B, args.micro_batch, flops, args.overlap, args.mem_gb, args.as_built))
            print()
    print(f"## Weak scaling: {args.weak_batch} sequences per data-parallel rank, DP only, efficiency\n")
    print(weak_table(args.model, args.bw_gbps, args, flops))


if __name__ == "__main__":
    main()
