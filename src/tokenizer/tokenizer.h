/* tokenizer.h — the lmf_tokenizer behind the public API, shared by the files of this folder:
 *   tokenizer.c       build from a definition, special tokens, encode (with a pre-token cache), decode, streaming
 *   tokenizer_json.c  Hugging Face tokenizer.json and GPT-2 encoder.json + vocab.bpe: load and save
 *   tokenizer_gguf.c  the vocabulary inside a GGUF model file (tokenizer.ggml.*): load
 *   tokenizer_spm_model.c  SentencePiece's own model file (tokenizer.model): load
 *   bpe_train.c       the BPE trainer
 *   bpe.c, pretok.c   the merge model and the regex pre-tokenizer
 *   spm.c             the SentencePiece model (GGUF tokenizer.ggml.model "llama"): scores instead of merges
 *   nfc.c             the NFC normalizer some tokenizer.json files ask for
 *
 * Ownership: the tokenizer owns its model, its compiled regexes, its special-token list and at most one spare
 * encoding state (scratch buffers + pre-token cache) that encode() borrows with an atomic exchange, so concurrent
 * callers never share one (a caller that finds none makes its own and frees it if the slot is taken again). */
#ifndef LMF_TOKENIZER_TOKENIZER_H
#define LMF_TOKENIZER_TOKENIZER_H

#include "lmforge.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretok.h"
#include "tokenizer/spm.h"

#include <stdatomic.h>

typedef struct lmf_enc_state lmf_enc_state;

struct lmf_tokenizer {
    lmf_bpe bpe;             /* byte-level BPE; for SentencePiece only the token table (bytes, types) */
    lmf_spm *spm;            /* a SentencePiece tokenizer: the model that encodes (pre is then unused) */
    lmf_pretokenizer pre;
    int n_special;
    int32_t *special;        /* ids of CONTROL and USER tokens, longest text first */
    uint8_t first_all[32];   /* bitset: first bytes of all special texts */
    uint8_t first_user[32];  /* bitset: first bytes of USER texts (matched even when specials are not allowed) */
    int has_user;
    int nfc;                 /* the input is composed to NFC before anything else (lmf_tokenizer_def.nfc) */
    uint8_t *strip;          /* per id, LMF_STRIP_* of a special token (NULL: none strips); lstrip: some token has it */
    int lstrip;
    int strip_unicode;       /* strips take Unicode's White_Space too (a tokenizer.json's, as Hugging Face), not
                              * only C's isspace (llama.cpp's) */
    _Atomic(lmf_enc_state *) spare;
};

/* A special token that swallows the whitespace before it (LEFT) or after it (RIGHT) in the text, as llama.cpp's
 * LLAMA_TOKEN_ATTR_LSTRIP / RSTRIP (C's isspace) or Hugging Face's lstrip / rstrip (with strip_unicode: every
 * White_Space character, U+00A0 and U+3000 among them); set once after building, before the tokenizer is shared. */
enum { LMF_STRIP_LEFT = 1, LMF_STRIP_RIGHT = 2 };
void lmf_tokenizer_set_strip(lmf_tokenizer *tok, int32_t id, unsigned flags);

/* Appends n ids to *out (growing it). */
void lmf_ids_push(lmf_ids *out, const int32_t *ids, size_t n);
/* Appends n bytes to *out, keeping it NUL-terminated. */
void lmf_text_push(lmf_text *out, const void *bytes, size_t n);

/* NFC (nfc.c). Whether s is NFC as it is (a quick, conservative test); the NFC of s appended to *out (bytes that
 * are not UTF-8 pass through); the length of the longest prefix of s whose NFC does not depend on what may follow
 * (streaming: the rest waits for more text). */
int lmf_nfc_identity(const uint8_t *s, size_t n);
void lmf_nfc_append(const uint8_t *s, size_t n, lmf_text *out);
size_t lmf_nfc_safe_prefix(const uint8_t *s, size_t n);

/* GGUF (tokenizer_gguf.c). Special-token ids and flags of a GGUF vocabulary, -1 where the file has none; every id
 * present is checked to lie inside tokenizer.ggml.tokens. */
struct lmf_gguf;
typedef struct {
    int32_t bos, eos, unk, sep, pad, eot, eom;
    int add_bos, add_eos; /* tokenizer.ggml.add_bos_token / add_eos_token: 0, 1, or -1 if absent */
} lmf_gguf_specials;
/* A SentencePiece tokenizer (spm.h) from its pieces, scores and llama.cpp token types. */
lmf_status lmf_tokenizer_build_spm(int n, const char *const *tokens, const float *scores, const uint8_t *kinds,
                                   int prefix, int32_t unk, const char *origin, lmf_tokenizer **out);
/* A SentencePiece model file (tokenizer.model; tokenizer_spm_model.c). */
lmf_status lmf_tokenizer_load_spm_model(const char *path, lmf_tokenizer **out);
lmf_status lmf_tokenizer_from_gguf(const struct lmf_gguf *g, lmf_tokenizer **out);
lmf_status lmf_tokenizer_load_gguf(const char *path, lmf_tokenizer **out);
lmf_status lmf_tokenizer_gguf_specials(const struct lmf_gguf *g, lmf_gguf_specials *sp);

#endif
