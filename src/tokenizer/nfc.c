/* nfc.c — Unicode NFC (canonical decomposition, then composition) of byte strings, for tokenizers whose
 * tokenizer.json normalizes before pre-tokenizing (Qwen2's and Qwen3's "normalizer": {"type": "NFC"}).
 *
 * utf8proc does the Unicode work (utf8proc_map with STABLE | COMPOSE is its NFC). Tokenizer input is any bytes,
 * and Hugging Face only ever sees valid UTF-8, so valid stretches are composed and any other byte passes through
 * as it is: a byte that is not UTF-8 has no character to compose with. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <utf8proc.h>

/* Below U+0300 every character is its own NFC and none composes with the character before it (the first
 * combining marks start at U+0300, and every other character that combines with a predecessor, Hangul vowels and
 * trailing consonants among them, lies above): text without a byte >= 0xCC (the lead byte of U+0300) is already
 * NFC. Nearly all English and code passes this test. */
int lmf_nfc_identity(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0xCC) return 0;
    return 1;
}

static void push_nfc(const uint8_t *s, size_t n, lmf_text *out) {
    if (!n) return;
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t k = utf8proc_map(s, (utf8proc_ssize_t)n, &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k >= 0) lmf_text_push(out, d, (size_t)k);
    else lmf_text_push(out, s, n); /* only out of memory: utf8proc_map was given valid UTF-8 */
    free(d);
}

void lmf_nfc_append(const uint8_t *s, size_t n, lmf_text *out) {
    lmf_text_push(out, "", 0); /* out is a NUL-terminated buffer even when s is empty */
    size_t run = 0, i = 0;
    while (i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        push_nfc(s + run, i - run, out); /* the valid stretch before the stray byte, then the byte itself */
        lmf_text_push(out, s + i, 1);
        run = ++i;
    }
    push_nfc(s + run, n - run, out);
}

size_t lmf_nfc_safe_prefix(const uint8_t *s, size_t n) {
    /* before an ASCII character: it never composes with what precedes it and ends any run of combining marks,
     * so NFC(s[0, p)) + NFC(s[p, ...)) is NFC of the whole whatever follows */
    for (size_t p = n; p > 0; p--)
        if (s[p - 1] < 0x80) return p - 1;
    return 0;
}
