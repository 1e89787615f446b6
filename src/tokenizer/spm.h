/* spm.h — the SentencePiece BPE model (tokenizer.ggml.model "llama": Llama 1/2, Mistral, Mixtral, TinyLlama, ...):
 * the vocabulary with a score per piece, and encoding one fragment of text (the text between special tokens).
 *
 * Encoding, as SentencePiece's BPE and llama.cpp's llm_tokenizer_spm do it: spaces become U+2581 "▁" (and one "▁"
 * is put before the fragment when the vocabulary says add_space_prefix), the text is split into UTF-8 characters,
 * then the adjacent pair whose concatenation is the highest-scoring piece is merged (leftmost on a tie) until no
 * pair is a piece. A character left that is no piece becomes its bytes' <0xAB> tokens (byte fallback), or the
 * unknown token in a vocabulary without them. There is no pre-tokenizer; the fragment is merged a word at a time
 * only where the vocabulary makes that exact (lmf_spm_chunk_end), with a binary heap of candidate pairs (O(n log
 * n)). Control, byte and unused pieces never come out of merging, as in SentencePiece.
 *
 * tokenizer.json's Llama / Mistral form is Hugging Face's BPE with byte fallback: the first symbols are each
 * character's piece or its byte tokens, and ranked merges of two pieces replace the scores (lmf_spm_set_merges).
 *
 * The decoding side lives in the lmf_bpe token table the tokenizer shares with byte-level BPE: each token's bytes
 * with "▁" turned back into spaces, byte tokens as their byte. */
#ifndef LMF_TOKENIZER_SPM_H
#define LMF_TOKENIZER_SPM_H

#include "lmforge.h"
#include "tokenizer/bpe.h"

/* llama.cpp's token types (tokenizer.ggml.token_type), kept as read so a written GGUF has them back. */
enum { LMF_SPM_NORMAL = 1, LMF_SPM_UNKNOWN = 2, LMF_SPM_CONTROL = 3, LMF_SPM_USER = 4, LMF_SPM_UNUSED = 5,
       LMF_SPM_BYTE = 6 };

typedef struct {
    int32_t n_vocab;
    uint32_t *off;  /* [n_vocab + 1]: piece i is text[off[i] .. off[i+1]) as the vocabulary spells it ("▁the") */
    char *text;
    float *score;   /* [n_vocab] */
    uint8_t *kind;  /* [n_vocab] LMF_SPM_* */
    int32_t *slots; /* text -> id of the NORMAL and USER pieces (open addressing); -1 = free */
    size_t mask;
    int32_t byte_id[256]; /* <0xAB> tokens, -1 where absent */
    int32_t unk;          /* the unknown token, -1 if none */
    int has_bytes;        /* any <0xAB> token: byte fallback */
    int prefix;           /* LMF_SPM_PREFIX_*: where a "▁" goes before a fragment */
    int split_words;      /* no merge crosses a word start (lmf_spm_chunk_end) */
    int split_marks;      /* tokenizer.json's Metaspace split: every "▁" starts a chunk */
    int metaspace;        /* tokenizer.json's Metaspace: no "▁" put before a fragment that starts with one */
    int fuse_unk;         /* tokenizer.json: a run of unknown characters is one unknown token */
    const lmf_bpe *merges; /* tokenizer.json: ranked merges (Hugging Face's BPE with byte fallback), or NULL */
} lmf_spm;

/* Where the "▁" of add_space_prefix goes: never, before every fragment (llama.cpp; tokenizer.json's Prepend
 * normalizer or Metaspace "always"), before the first fragment of a text only (Metaspace "first"). */
enum { LMF_SPM_PREFIX_NEVER = 0, LMF_SPM_PREFIX_ALWAYS = 1, LMF_SPM_PREFIX_FIRST = 2 };

/* Builds the model and fills `m` (token bytes for decoding, lmf_token_type per id; no merges) from n tokens with
 * their scores and llama.cpp types (NULL: all NORMAL). Fails naming the token at fault: a byte token that is not
 * <0xAB>, two byte tokens for one byte, an unknown type. Of two pieces spelled alike the first is kept. */
lmf_status lmf_spm_build(lmf_spm *s, lmf_bpe *m, int n, const char *const *tokens, const float *scores,
                         const uint8_t *kinds, int prefix, int32_t unk, const char *origin);
/* Hugging Face's form (tokenizer.json, model BPE with byte_fallback): merges "a b" in rank order replace the
 * scores. Each side is a piece (byte tokens included) and the two spell a piece, or the merge is refused by
 * number. The scores become llama.cpp's view of the same order (a merge's result -rank, a piece no merge makes
 * below all), so a GGUF written from it tokenizes alike in llama.cpp wherever the merges list every split of
 * their pieces, as converted Llama tokenizers do. */
lmf_status lmf_spm_set_merges(lmf_spm *s, lmf_bpe *m, int n, const char *const *merges, const char *origin);
void lmf_spm_destroy(lmf_spm *s);

/* "<0xAB>" -> 0xAB (a byte token's text), or -1. */
int lmf_spm_byte_token(const char *t, size_t n);

/* Id of the NORMAL or USER piece spelled text[0, n), or -1. */
int32_t lmf_spm_lookup(const lmf_spm *s, const char *text, size_t n);

/* Working memory of the encoder (zero-initialise, then destroy): the escaped text, and the symbols and pair heap
 * of the chunk being merged. */
typedef struct {
    uint8_t *buf;
    size_t buf_cap;
    void *sym, *heap;
    size_t sym_cap, heap_cap;
} lmf_spm_scratch;
void lmf_spm_scratch_destroy(lmf_spm_scratch *sc);

/* One fragment (the text between special tokens; `first`: it starts the text) escaped into sc: spaces as "▁", a
 * "▁" before it as s->prefix says. Returns the buffer (valid until the next escape) and its length. */
const uint8_t *lmf_spm_escape(const lmf_spm *s, lmf_spm_scratch *sc, const uint8_t *text, size_t n, int first,
                              size_t *len);
/* Where the chunk of buf[0, len) starting at `from` ends: at the next "▁" with split_marks; otherwise merging is
 * local: when no piece holds a space mark after
 * another character (Llama's runs of spaces aside), no merge crosses a word start, so each word ("▁the", with the
 * spaces before it) is merged alone and its ids can be cached. Otherwise the whole fragment is one chunk. Chunks
 * start at character starts of the whole buffer, so a broken UTF-8 sequence splits as in one pass. */
size_t lmf_spm_chunk_end(const lmf_spm *s, const uint8_t *buf, size_t from, size_t len);
/* Merges one chunk and writes its ids to out (room for len ids); returns how many. */
size_t lmf_spm_encode_chunk(const lmf_spm *s, lmf_spm_scratch *sc, const uint8_t *buf, size_t len, int32_t *out);

#endif
