/* tiny_chat_tokenizer.h — a hand-built byte-level tokenizer with ChatML's special tokens, for tests and fuzz targets
 * that need chat tokenization without the real model (test_sft, fuzz_sft).
 *   ids 0..255: the bytes (GPT-2's byte-level alphabet), 256: "bc" (one merge, b + c, so a prompt ending in "b" and
 *   a completion starting with "c" merge across the boundary), 257 <|endoftext|>, 258 <|im_start|>, 259 <|im_end|>. */
#ifndef LMF_TESTS_TINY_CHAT_TOKENIZER_H
#define LMF_TESTS_TINY_CHAT_TOKENIZER_H

#include "lmforge.h"

enum { TINY_BC = 256, TINY_EOT = 257, TINY_IM_START = 258, TINY_IM_END = 259, TINY_VOCAB = 260 };

/* NULL when the build fails (lmf_last_error() says why). The caller frees it with lmf_tokenizer_free. */
static inline lmf_tokenizer *tiny_chat_tokenizer(void) {
    static char text[256][4];
    const char *tokens[TINY_VOCAB];
    uint8_t types[TINY_VOCAB] = {0};
    /* GPT-2's byte-to-unicode map (tokenizer/bytelevel.h's lmf_bytelevel_cp, not included: its lmf_utf8_put clashes
     * with data/text.h's, which fuzz_targets.h includes): printable bytes map to themselves, the other 68 to
     * U+0100.. in byte order; all below U+0800, so two UTF-8 bytes at most */
    for (int b = 0, extra = 0; b < 256; b++) {
        int same = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        unsigned cp = same ? (unsigned)b : 256u + (unsigned)extra++;
        if (cp < 0x80) text[b][0] = (char)cp, text[b][1] = 0;
        else text[b][0] = (char)(0xC0 | cp >> 6), text[b][1] = (char)(0x80 | (cp & 0x3F)), text[b][2] = 0;
        tokens[b] = text[b];
    }
    tokens[TINY_BC] = "bc";
    tokens[TINY_EOT] = "<|endoftext|>", tokens[TINY_IM_START] = "<|im_start|>", tokens[TINY_IM_END] = "<|im_end|>";
    types[TINY_EOT] = types[TINY_IM_START] = types[TINY_IM_END] = LMF_TOKEN_CONTROL;
    const char *merges[] = {"b c"};
    lmf_tokenizer_def def = {.n_vocab = TINY_VOCAB, .tokens = tokens, .types = types, .n_merges = 1,
                             .merges = merges};
    lmf_tokenizer *tok;
    return lmf_tokenizer_build(&def, "tiny chat tokenizer", &tok) == LMF_OK ? tok : NULL;
}

#endif
