/* dedup.h — document deduplication for the data pipeline: exact (hash of normalized text) and near-duplicate
 * (MinHash + LSH, datatrove's algorithm and defaults), both streaming and memory-bounded.
 *
 * Both deduplicators have the same two-phase life:
 *
 *   create(cfg)                      once
 *   add(doc_id, text, len)           once per document, from any number of threads at once (thread-safe)
 *   finish()                         once, after the last add; finds the duplicates
 *   is_duplicate(doc_id)             any number of times, from any thread (read-only after finish)
 *   next_removed(&doc, &kept)        iterates removed documents in increasing doc id order, each with the id of
 *                                    the document it duplicates (the one kept: the lowest id of its group)
 *   free()
 *
 * Document ids are the caller's (e.g. a reader's sequence number). They should be dense (0..N-1): is_duplicate
 * uses a bitmap of (max id + 1) bits. Each id is added at most once. The kept document of a group is always the
 * lowest id, whatever the order or the threads the documents arrived in, so results are deterministic.
 *
 * Memory bound (details and numbers in docs/data-dedup.md). Per document only fixed-size records are kept: exact
 * dedup 24 bytes (128-bit hash + id), MinHash 16 bytes per band (64-bit band hash + id: 224 bytes with 14 bands)
 * plus, when candidates are verified, the verification sketch (4(k+1) = 1028 bytes with the default k = 256).
 * Records live in a buffer of at most cfg.mem_budget bytes; when it is full the buffer is sorted and spilled to an
 * unlinked temporary file in cfg.tmp_dir, and finish() merges the sorted runs (external sort, multi-pass when the
 * runs outnumber what the budget can buffer). Verification sketches move to a file (read back with pread) once
 * they outgrow their half of the budget. What finish() holds in RAM beyond the budget: the bitmap (N/8 bytes), and
 * for MinHash the union-find over documents that have a duplicate edge (~44 bytes each; datatrove's clustering
 * stage holds the same set) and their removal list (16 bytes per removed document).
 *
 * Errors: I/O failures on temporary files return LMF_ERR_IO with a message (lmf_last_error()); bad configs
 * LMF_ERR_ARG; out of memory aborts with the size. After an error in add(), the deduplicator should be freed. */
#ifndef LMF_DATA_DEDUP_H
#define LMF_DATA_DEDUP_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Exact deduplication: XXH3-128 of the normalized text. With the default normalization (Unicode lowercase, every
 * run of Unicode whitespace collapsed to one space, leading and trailing whitespace removed) "Hello  World\n" and
 * "hello world" are duplicates; with both switched off the raw bytes are hashed. The first occurrence (lowest id)
 * is kept. A 128-bit hash makes a false match (two different texts, same hash) a ~2^-128 event per pair. */

typedef struct {
    int lowercase;           /* 1 (default): Unicode simple lowercase (utf8proc) before hashing */
    int collapse_whitespace; /* 1 (default): whitespace runs -> one space, trimmed */
    size_t mem_budget;       /* bytes of records kept in RAM before spilling; default 256 MiB, minimum 4 KiB */
    const char *tmp_dir;     /* where spill files go (unlinked at once); NULL: $TMPDIR, else /tmp */
} lmf_exact_dedup_config;

typedef struct lmf_exact_dedup lmf_exact_dedup;

void lmf_exact_dedup_config_default(lmf_exact_dedup_config *cfg);
lmf_status lmf_exact_dedup_create(const lmf_exact_dedup_config *cfg, lmf_exact_dedup **out);
/* Thread-safe. text need not be NUL-terminated; invalid UTF-8 bytes are hashed as they are. */
lmf_status lmf_exact_dedup_add(lmf_exact_dedup *d, uint64_t doc_id, const char *text, size_t len);
lmf_status lmf_exact_dedup_finish(lmf_exact_dedup *d);
/* After finish: 1 if doc_id is a duplicate to remove, 0 if kept or never added. */
int lmf_exact_dedup_is_duplicate(const lmf_exact_dedup *d, uint64_t doc_id);
/* After finish: 1 if doc_id is the kept document of a group from which others were removed (their "twin"): a caller
 * that names twins in its output records the place of these documents only. */
int lmf_exact_dedup_has_duplicates(const lmf_exact_dedup *d, uint64_t doc_id);
/* After finish: the next removed document (increasing id) and the id it duplicates. 1 = got one, 0 = end,
 * -1 = I/O error (message in lmf_last_error()). Not thread-safe (one iterator per deduplicator). */
int lmf_exact_dedup_next_removed(lmf_exact_dedup *d, uint64_t *doc_id, uint64_t *kept_id);
/* Counters, valid after finish. */
uint64_t lmf_exact_dedup_n_docs(const lmf_exact_dedup *d);
uint64_t lmf_exact_dedup_n_removed(const lmf_exact_dedup *d);
size_t lmf_exact_dedup_n_spills(const lmf_exact_dedup *d); /* sorted runs written to disk (0: all in RAM) */
void lmf_exact_dedup_free(lmf_exact_dedup *d);
/* The 128-bit key of one text under cfg (out[0] = high, out[1] = low half). */
void lmf_exact_dedup_hash(const lmf_exact_dedup_config *cfg, const char *text, size_t len, uint64_t out[2]);

/* ---------------------------------------------------------------------------------------------------------------
 * MinHash near-duplicate detection, reproducing datatrove's MinhashDedup{Signature,Buckets,Cluster} (v0.10):
 *  - text simplified like datatrove.utils.text.simplify_text (lowercase, digit runs -> "0", punctuation -> space,
 *    whitespace collapsed, NFD with nonspacing marks dropped) and split into words like its English word tokenizer
 *    (spaCy's blank "en" tokenizer: contractions "dont" -> "do nt", units "0km" -> "0 km", symbols split off);
 *  - shingles: xxh64 (seed 0) of the n_grams consecutive words joined by one space; documents with fewer than
 *    n_grams words get no signature and are never duplicates (as in datatrove);
 *  - num_buckets * hashes_per_bucket hash functions h_i(s) = ((a_i * s + b_i) mod 2^64) mod (2^61 - 1), with (a, b)
 *    drawn exactly as numpy.random.RandomState(seed).randint does, so signatures equal datatrove's bit for bit;
 *  - a band collision (all hashes_per_bucket values equal) makes a candidate pair; candidate pairs are clustered
 *    with union-find and one document per cluster is kept (the lowest id).
 * Verification (lmforge's addition, on by default; verify_threshold = 0 gives datatrove's exact behaviour): a
 * candidate pair links only if its Jaccard similarity, estimated from a bottom-k sketch of the shingle hashes
 * (verify_sketch = k values, or from the signature with verify_sketch = 0), is at least verify_threshold. LSH alone
 * links pairs along a soft S-curve (14 bands of 8 link a pair of Jaccard 0.65 with probability 0.36); verification
 * turns it into a sharp cut at the threshold. docs/data-dedup.md has the numbers and the trade-off. */

typedef struct {
    int n_grams;             /* 5 */
    int num_buckets;         /* 14 (bands) */
    int hashes_per_bucket;   /* 8 (rows per band); num_buckets * hashes_per_bucket <= LMF_MINHASH_MAX_HASHES */
    uint32_t seed;           /* 1: the seed of datatrove's MinhashConfig */
    double verify_threshold; /* 0.8 (default): a candidate links only if its estimated Jaccard >= this; 0: off,
                              * every band collision links, exactly datatrove's algorithm and output clusters */
    int verify_window;       /* distinct groups per band bucket a new document is verified against; default 16 */
    int verify_sketch;       /* what verification estimates Jaccard from: k > 0 (default 256) a bottom-k sketch of
                              * the shingle hashes (4(k+1) bytes per document, error sd ~ sqrt(J(1-J)/k)); 0 the
                              * MinHash signature itself (4H bytes, sd ~ sqrt(J(1-J)/H)) */
    size_t mem_budget;       /* bytes of band records (+ signatures) in RAM before spilling; default 256 MiB */
    const char *tmp_dir;     /* NULL: $TMPDIR, else /tmp */
} lmf_minhash_config;

#define LMF_MINHASH_MAX_HASHES 1024
#define LMF_MINHASH_MAX_SKETCH 4096

typedef struct lmf_minhash lmf_minhash;

void lmf_minhash_config_default(lmf_minhash_config *cfg);
lmf_status lmf_minhash_create(const lmf_minhash_config *cfg, lmf_minhash **out);
/* Thread-safe: the signature is computed without a lock, only the records are appended under one. */
lmf_status lmf_minhash_add(lmf_minhash *m, uint64_t doc_id, const char *text, size_t len);
lmf_status lmf_minhash_finish(lmf_minhash *m);
/* finish() behind another deduplicator: documents for which skip(ctx, id) is 1 (the exact duplicates a stage before
 * this one removed) count as never added: they join no cluster and no counter, so the clusters and the stats are
 * those of the documents this stage actually has to judge. skip may be 1 only for ids that were added. */
lmf_status lmf_minhash_finish_skipping(lmf_minhash *m, int (*skip)(const void *ctx, uint64_t doc_id), const void *ctx);
int lmf_minhash_is_duplicate(const lmf_minhash *m, uint64_t doc_id);
/* As lmf_exact_dedup_has_duplicates: doc_id is the kept (lowest) id of a cluster with removed members. */
int lmf_minhash_has_duplicates(const lmf_minhash *m, uint64_t doc_id);
/* Same contract as lmf_exact_dedup_next_removed; kept_id is the lowest id of doc_id's cluster. */
int lmf_minhash_next_removed(lmf_minhash *m, uint64_t *doc_id, uint64_t *kept_id);

typedef struct {
    uint64_t n_docs;          /* documents added (less those finish_skipping skipped) */
    uint64_t n_signed;        /* of which with at least one shingle (the others cannot be duplicates) */
    uint64_t n_candidates;    /* band-collision pairs looked at in finish() */
    uint64_t n_verify_failed; /* candidate pairs rejected by verification */
    uint64_t n_edges;         /* pairs that joined two clusters */
    uint64_t n_clusters;      /* clusters of size >= 2 */
    uint64_t n_removed;       /* documents to remove */
    size_t n_spills;          /* sorted runs written to disk */
    int sigs_on_disk;         /* 1 if the verification sketches moved to a file */
} lmf_minhash_stats;
void lmf_minhash_get_stats(const lmf_minhash *m, lmf_minhash_stats *st);
void lmf_minhash_free(lmf_minhash *m);

/* The building blocks, exposed for tests and benchmarks. */
/* datatrove's simplify_text with its default TextNormConfig; returns a malloc'd NUL-terminated string. */
char *lmf_minhash_simplify(const char *text, size_t len, size_t *out_len);
/* The shingle hashes of text in document order (duplicates kept, as datatrove's get_shingles); *out is malloc'd
 * (NULL when there are none). Returns the count. */
size_t lmf_minhash_shingles(const lmf_minhash *m, const char *text, size_t len, uint64_t **out);
/* Signature of text into sig[num_buckets * hashes_per_bucket]; returns 0 when the text has no shingle. */
int lmf_minhash_signature(const lmf_minhash *m, const char *text, size_t len, uint64_t *sig);
/* The hash parameters a_i, b_i (datatrove's `parameters`), for comparison with numpy. */
void lmf_minhash_params(const lmf_minhash *m, const uint64_t **a, const uint64_t **b);

/* ---------------------------------------------------------------------------------------------------------------
 * Internal helpers shared by the two deduplicators (not thread-safe; the owners lock). */

/* External sort of fixed-size records of nw uint64 words, ordered lexicographically by word. push() appends;
 * when mem_budget bytes are used the buffer is sorted and spilled to an unlinked temp file. finish() prepares a
 * merged read (in RAM when nothing was spilled); next() returns 1 per record, 0 at the end, -1 on I/O error. */
typedef struct lmf_extsort lmf_extsort;
lmf_status lmf_extsort_create(int nw, size_t mem_budget, const char *tmp_dir, lmf_extsort **out);
lmf_status lmf_extsort_push(lmf_extsort *s, const uint64_t *rec);
lmf_status lmf_extsort_finish(lmf_extsort *s);
int lmf_extsort_next(lmf_extsort *s, uint64_t *rec);
uint64_t lmf_extsort_count(const lmf_extsort *s);
size_t lmf_extsort_spills(const lmf_extsort *s);
void lmf_extsort_free(lmf_extsort *s);
/* An unlinked read-write temp file in dir (NULL: $TMPDIR or /tmp); returns the fd or -1 with the error recorded. */
int lmf_dedup_tmpfile(const char *dir);

/* The signature kernel, sig[j] = min_i ((a_j * sh[i] + b_j) mod 2^64) mod (2^61 - 1), j < H (sig all-ones when
 * ns = 0): the scalar reference and the AVX-512 variant (picked at run time, LMF_ISA=ref forces the reference). */
void lmf_minhash_sig_ref(const uint64_t *sh, size_t ns, const uint64_t *a, const uint64_t *b, int H, uint64_t *sig);
void lmf_minhash_sig_avx512(const uint64_t *sh, size_t ns, const uint64_t *a, const uint64_t *b, int H,
                            uint64_t *sig);

/* Union-find over arbitrary 64-bit ids (hash map id -> node; union by size, path halving). */
typedef struct lmf_unionfind lmf_unionfind;
lmf_unionfind *lmf_unionfind_create(void);
/* Returns 1 if a and b were in different sets (now joined), 0 if already together. */
int lmf_unionfind_union(lmf_unionfind *u, uint64_t a, uint64_t b);
int lmf_unionfind_same(lmf_unionfind *u, uint64_t a, uint64_t b);
/* The smallest id in x's set (x itself if x was never united). */
uint64_t lmf_unionfind_min(lmf_unionfind *u, uint64_t x);
size_t lmf_unionfind_size(const lmf_unionfind *u); /* ids known */
uint64_t lmf_unionfind_id(const lmf_unionfind *u, size_t i); /* i-th known id, 0 <= i < size */
void lmf_unionfind_free(lmf_unionfind *u);

#endif
