#!/usr/bin/env python3
"""datatrove's MinHash deduplication on the documents bench/bench_dedup.c wrote, timed, and compared with lmforge.

    python3 bench/datatrove_minhash.py --docs DIR/docs.jsonl --work DIR [--lmforge DIR/lmforge_clusters.txt]
                                       [--times DIR/datatrove_times.txt]

Runs datatrove's own stages with its MinhashConfig defaults (5-grams, 14 buckets x 8 hashes, seed 1, 64-bit xxhash,
English word tokenizer = spaCy blank "en"), each called directly (no executor, one process = one core), timed in
process CPU time (the host is shared):
  1. MinhashDedupSignature  signatures + per-bucket sorted signature files
  2. MinhashDedupBuckets    one call per bucket (rank b of world_size 14): duplicate pairs per bucket
  3. MinhashDedupCluster    union-find over the pairs, the .remove file and cluster ids
Writes the three times to --times (for bench_dedup's table), then compares with lmforge's clustering
(--lmforge: lines "doc_id kept_id", kept_id == doc_id for kept documents):
  - clusters: the partition of clustered documents into clusters must be identical;
  - removed sets: datatrove keeps the root of its union-by-size forest, lmforge the lowest id, so the removed sets
    differ exactly where the two pick a different representative; both remove (cluster size - 1) per cluster.
Needs: pip install datatrove spacy "xxhash<4" regex tokenizers (datatrove 0.10 hashes str, which xxhash 4 refuses).
"""
import argparse
import importlib.metadata
import json
import os
import shutil
import struct
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--lmforge")
    ap.add_argument("--times")
    ap.add_argument("--lmforge-sigs")
    args = ap.parse_args()

    os.environ.setdefault("TQDM_DISABLE", "1")
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from loguru import logger

    logger.remove()  # datatrove logs every step; keep the output to our table

    docs = []
    with open(args.docs) as f:
        for line in f:
            o = json.loads(line)
            docs.append(Document(text=o["text"], id=o["id"]))
    mb = sum(len(d.text.encode()) for d in docs) / 1e6

    base = os.path.join(args.work, "datatrove")
    shutil.rmtree(base, ignore_errors=True)
    sig_dir, buck_dir, rem_dir = (os.path.join(base, x) for x in ("sigs", "buckets", "remove"))
    cfg = MinhashConfig()

    t = time.process_time()
    st1 = MinhashDedupSignature(output_folder=sig_dir, config=cfg)
    st1.word_tokenizer.word_tokenize("warm up the tokenizer")  # spaCy loads lazily: not part of the timing
    t = time.process_time()
    st1.run(iter(docs), rank=0, world_size=1)
    t_sig = time.process_time() - t

    t = time.process_time()
    for b in range(cfg.num_buckets):
        MinhashDedupBuckets(input_folder=sig_dir, output_folder=buck_dir, config=cfg).run(
            None, rank=b, world_size=cfg.num_buckets
        )
    t_buckets = time.process_time() - t

    t = time.process_time()
    MinhashDedupCluster(input_folder=buck_dir, output_folder=rem_dir, config=cfg, save_cluster_id=True).run(None, 0, 1)
    t_cluster = time.process_time() - t

    removed = set()
    p = os.path.join(rem_dir, "000000.remove")
    if os.path.exists(p):
        with open(p, "rb") as f:
            data = f.read()
        removed = set(struct.unpack(f"<{len(data) // 4}I", data))
    clusters = {}
    p = os.path.join(rem_dir, "000000.clusters")
    if os.path.exists(p):
        with open(p, "rb") as f:
            data = f.read()
        vals = struct.unpack(f"<{len(data) // 4}I", data)
        for i in range(0, len(vals), 2):
            clusters[vals[i]] = vals[i + 1]

    print(f"datatrove {importlib.metadata.version('datatrove')}: {len(docs)} documents, {mb:.1f} MB, 1 process")
    print(f"  stage 1 signatures  {t_sig:8.2f} s  {mb / t_sig:8.2f} MB/s")
    print(f"  stage 2 buckets     {t_buckets:8.2f} s")
    print(f"  stage 3 clusters    {t_cluster:8.2f} s")
    tot = t_sig + t_buckets + t_cluster
    print(f"  whole               {tot:8.2f} s  {mb / tot:8.2f} MB/s")
    print(f"  {len(removed)} documents removed, {len(set(clusters.values()))} clusters")
    if args.times:
        with open(args.times, "w") as f:
            f.write(f"{t_sig} {t_buckets} {t_cluster}\n")

    if args.lmforge_sigs:
        # datatrove's signatures, reassembled from its 14 sorted bucket files (8 x uint64 + uint32 doc index each)
        import numpy as np

        H, R = cfg.num_buckets * cfg.hashes_per_bucket, cfg.hashes_per_bucket
        ours = np.fromfile(args.lmforge_sigs, dtype="<u8").reshape(-1, H)
        theirs = np.full_like(ours, np.iinfo(np.uint64).max)
        rec = np.dtype([("h", "<u8", (R,)), ("doc", "<u4")])
        signed = set()
        for b in range(cfg.num_buckets):
            arr = np.fromfile(os.path.join(sig_dir, f"bucket_{b:03d}", "00000.minhash.sig"), dtype=rec)
            theirs[arr["doc"], b * R:(b + 1) * R] = arr["h"]
            signed.update(arr["doc"].tolist())
        same = (ours == theirs).all(axis=1)
        print(f"signatures: {int(same.sum())} of {len(ours)} documents identical bit for bit "
              f"({len(signed)} signed by datatrove, {len(ours) - len(signed)} with fewer than 5 words)")
        for d in np.nonzero(~same)[0][:5]:
            print(f"  differs: document {d}: {docs[d].text[:100]!r}")

    if args.lmforge:
        rep = {}
        with open(args.lmforge) as f:
            for line in f:
                a, b = map(int, line.split())
                rep[a] = b
        lm_removed = {d for d, k in rep.items() if d != k}
        # partitions: group clustered docs by cluster
        dt_groups = {}
        for d, c in clusters.items():
            dt_groups.setdefault(c, set()).add(d)
        lm_groups = {}
        for d, k in rep.items():
            if d != k:
                lm_groups.setdefault(k, {k}).add(d)
        dt_part = {frozenset(g) for g in dt_groups.values() if len(g) > 1}
        lm_part = {frozenset(g) for g in lm_groups.values()}
        same = dt_part & lm_part
        print("comparison with lmforge (its datatrove-equivalent mode, no verification):")
        print(f"  clusters: datatrove {len(dt_part)}, lmforge {len(lm_part)}, identical {len(same)}"
              f" -> {'AGREE' if dt_part == lm_part else 'DIFFER'}")
        print(f"  removed: datatrove {len(removed)}, lmforge {len(lm_removed)}, in both {len(removed & lm_removed)}; "
              f"documents: {len(docs)}, same keep/remove decision for "
              f"{len(docs) - len(removed ^ lm_removed)} ({100 * (1 - len(removed ^ lm_removed) / len(docs)):.2f}%)")
        if dt_part == lm_part:
            diff = removed ^ lm_removed
            print(f"  the {len(diff)} differing decisions are all representative choices inside identical clusters: "
                  "datatrove keeps its union-by-size root, lmforge the lowest id")
        else:
            for g in list(dt_part - lm_part)[:5]:
                print("  only datatrove:", sorted(g))
            for g in list(lm_part - dt_part)[:5]:
                print("  only lmforge:", sorted(g))
        # removed examples
        ex = sorted(lm_removed)[:3]
        for d in ex:
            print(f"  example: document {d} removed as a near-duplicate of {rep[d]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
