/* bpe.h — the byte-level BPE model: token bytes, the merge table, and merging one piece into ids.
 *
 * Tokens are kept as raw bytes (the byte-level text of tokenizer.json decoded). A merge (left, right) has a rank
 * (its line in the merges list) and a result token (the token whose bytes are left's then right's). Encoding a
 * piece starts from one token per byte and repeatedly applies the lowest-ranked merge among adjacent pairs, the
 * leftmost on a tie, until none applies: GPT-2's encoder, tiktoken and Hugging Face `tokenizers` all agree on that.
 *
 * Short pieces use a flat array (a scan per merge); long ones a linked list with a binary heap of candidate pairs
 * (O(n log n)), so a hostile megabyte-long word costs milliseconds, not minutes. */
#ifndef LMF_TOKENIZER_BPE_H
#define LMF_TOKENIZER_BPE_H

#include "lmforge.h"

#include <stddef.h>
#include <stdint.h>

#define LMF_BPE_NO_RANK UINT32_MAX

typedef struct {
    uint64_t key; /* (left << 32) | right; UINT64_MAX marks a free slot */
    uint32_t rank;
    int32_t result;
} lmf_bpe_merge_slot;

typedef struct {
    int32_t n_vocab;
    uint32_t *off;   /* [n_vocab + 1]: token i is bytes[off[i] .. off[i+1]) */
    uint8_t *bytes;  /* raw bytes of every token, concatenated */
    uint8_t *type;   /* [n_vocab] lmf_token_type */
    int32_t byte_id[256];
    lmf_bpe_merge_slot *mslots; /* open addressing, mmask + 1 slots */
    size_t mmask;
    int32_t n_merges;
    int32_t *merges;  /* [2 * n_merges]: left, right of each merge in rank order (for saving) */
    int32_t *vslots;  /* raw bytes -> id of NORMAL tokens, open addressing on lmf_hash_bytes; -1 = free */
    size_t vmask;
    int ignore_merges;
    int n_missing_bytes; /* bytes with no token (allowed by lmf_tokenizer_def.missing_bytes_ok): dropped on encode */
} lmf_bpe;

/* Builds the model from a definition (tokens, types, merges): decodes byte-level text, checks that every byte has
 * a token (unless def->missing_bytes_ok), that normal tokens are distinct, and that every merge's parts and result
 * are tokens. */
lmf_status lmf_bpe_build(lmf_bpe *m, const lmf_tokenizer_def *def, const char *origin);
void lmf_bpe_destroy(lmf_bpe *m);

/* The merge table, empty, for up to n merges; then merges added in rank order (a repeated pair keeps its first
 * rank and returns 0). lmf_bpe_build uses them, and the SentencePiece model for tokenizer.json's merges. */
void lmf_bpe_merges_init(lmf_bpe *m, int32_t n);
int lmf_bpe_merge_add(lmf_bpe *m, int32_t a, int32_t b, int32_t res);

/* Id of the NORMAL token with these raw bytes, or -1. */
int32_t lmf_bpe_lookup(const lmf_bpe *m, const uint8_t *bytes, size_t n);

static inline const lmf_bpe_merge_slot *lmf_bpe_merge_find(const lmf_bpe *m, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 40) & m->mmask;
    for (;;) {
        const lmf_bpe_merge_slot *s = &m->mslots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & m->mmask;
    }
}

/* Per-thread working memory of lmf_bpe_encode_piece (grows as needed; zero-initialise, then destroy). */
typedef struct {
    int32_t *sym, *next, *prev;
    uint32_t *rank;
    void *heap;
    size_t cap, heap_cap;
    uint8_t *kept; /* the piece without its token-less bytes (vocabularies with missing bytes only) */
    size_t kept_cap;
} lmf_bpe_scratch;

void lmf_bpe_scratch_destroy(lmf_bpe_scratch *sc);

/* Merges the piece s[0, n) (n >= 1) and writes its ids to out (room for n ids); returns how many (0 only when
 * every byte of the piece lacks a token). */
size_t lmf_bpe_encode_piece(const lmf_bpe *m, lmf_bpe_scratch *sc, const uint8_t *s, size_t n, int32_t *out);

#endif
