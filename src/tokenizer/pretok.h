/* pretok.h — pre-tokenization: splitting text into the pieces inside which BPE merges.
 *
 * A pre-tokenizer is a sequence of 1..LMF_PRETOK_MAX_STAGES regexes (PCRE2, UTF + UCP, so \p{L}, \p{N} and \s are
 * the real Unicode categories; JIT-compiled where the platform allows). Each stage splits every piece of the stage
 * before it: the matches and the gaps between them all become pieces ("Isolated" in Hugging Face terms), so no
 * byte is ever dropped. Invalid UTF-8 never matches (PCRE2_MATCH_INVALID_UTF) and so lands in gap pieces: any
 * byte string splits, and the pieces concatenate back to it.
 *
 * The compiled patterns are read-only and shared; matching needs an lmf_pretok_scratch per thread.
 *
 * Matching is bounded: a pattern from a file can backtrack catastrophically (`(a+)+$` on 'a' x 5000 + 'b' runs
 * for minutes), so each match call may take at most LMF_PRETOK_MATCH_LIMIT steps of PCRE2's matcher (its default,
 * set explicitly), recurse LMF_PRETOK_DEPTH_LIMIT deep and use LMF_PRETOK_HEAP_LIMIT KiB of heap (the interpreter;
 * the JIT's stack is capped at 8 MiB). A split that hits a limit stops with LMF_ERR_FORMAT naming the origin (the
 * tokenizer file), the pattern and the byte offset: it fails fast, on the first hit, and never quietly splits
 * differently. The built-in patterns (GPT-2, Llama-3, SmolLM, Qwen2) stay far below the limits: each of their match
 * calls is linear in the piece it finds. */
#ifndef LMF_TOKENIZER_PRETOK_H
#define LMF_TOKENIZER_PRETOK_H

#include "lmforge.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stddef.h>
#include <stdint.h>

#define LMF_PRETOK_MAX_STAGES 4
#define LMF_PRETOK_MATCH_LIMIT 10000000u
#define LMF_PRETOK_DEPTH_LIMIT 10000000u
#define LMF_PRETOK_HEAP_LIMIT 262144u /* KiB: 256 MiB of backtracking frames (PCRE2 would allow 20 GB) */

extern const char *const lmf_pretok_gpt2_pattern;
extern const char *const lmf_pretok_llama3_pattern;
extern const char *const lmf_pretok_qwen2_pattern;

typedef struct {
    lmf_pretok kind;
    int n_stages;
    pcre2_code *code[LMF_PRETOK_MAX_STAGES];
    int jit[LMF_PRETOK_MAX_STAGES];        /* stage was JIT-compiled */
    char *pattern[LMF_PRETOK_MAX_STAGES];  /* source text (owned), for saving tokenizer.json */
    char *origin;                          /* where the patterns came from (owned), for messages */
} lmf_pretokenizer;

/* Compiles the stages of a named kind, or for LMF_PRETOK_CUSTOM the given patterns. Errors name `origin`, the
 * pattern and PCRE2's message with the offset. */
lmf_status lmf_pretok_init(lmf_pretokenizer *p, lmf_pretok kind, const char *const *patterns, int n_patterns,
                           const char *origin);
void lmf_pretok_destroy(lmf_pretokenizer *p);

typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
} lmf_pretok_scratch;

void lmf_pretok_scratch_init(lmf_pretok_scratch *sc);
void lmf_pretok_scratch_destroy(lmf_pretok_scratch *sc);

/* Called for each piece text[s, e) in order; top is the start of the first-stage piece that contains it. */
typedef void (*lmf_piece_fn)(void *ctx, const uint8_t *text, size_t s, size_t e, size_t top);

/* Splits text[0, n) and calls fn for every non-empty piece. LMF_ERR_FORMAT when a pattern exceeds a match limit
 * (see above); the pieces before that point have been delivered. */
lmf_status lmf_pretok_split(const lmf_pretokenizer *p, lmf_pretok_scratch *sc, const uint8_t *text, size_t n,
                      lmf_piece_fn fn, void *ctx);

#endif
