/* bytelevel.h — GPT-2's byte-to-unicode alphabet, UTF-8 helpers and the hash used by the tokenizer's tables.
 *
 * Byte-level BPE vocabularies store every token as text in which each byte is one printable character: bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves (same code point), and the 68 others (0x00..0x20,
 * 0x7F..0xA0, 0xAD) map in increasing order to U+0100..U+0143. So a space is 'Ġ' (U+0120), a newline 'Ċ' (U+010A).
 * The mapping is closed-form here: no table to initialise. */
#ifndef LMF_TOKENIZER_BYTELEVEL_H
#define LMF_TOKENIZER_BYTELEVEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t lmf_bytelevel_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100 + b;           /* 0x00..0x20 -> U+0100..U+0120 */
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F); /* 0x7F..0xA0 -> U+0121..U+0142 */
    return 0x143;                              /* 0xAD */
}

/* The byte a code point of the alphabet stands for, or -1 if cp is not in the alphabet. */
static inline int lmf_bytelevel_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp >= 0x100 && cp <= 0x120) return (int)(cp - 0x100);
    if (cp >= 0x121 && cp <= 0x142) return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143) return 0xAD;
    return -1;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one (invalid, overlong,
 * surrogate, above U+10FFFF, or cut short by n). *cp receives the code point when valid. */
static inline int lmf_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if (n < (size_t)len) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* Number of bytes at the end of s[0..n) that begin a UTF-8 character still missing bytes (0..3): a valid lead byte
 * followed by fewer continuation bytes than it needs, the second one in the range the lead allows. */
static inline size_t lmf_utf8_incomplete_tail(const uint8_t *s, size_t n) {
    size_t k = 0; /* trailing continuation bytes */
    while (k < 3 && k < n && (s[n - 1 - k] & 0xC0) == 0x80) k++;
    if (k == n) return 0;
    uint8_t c = s[n - 1 - k];
    size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
    if (need <= k + 1) return 0;
    if (k >= 1) {
        uint8_t c1 = s[n - k], lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
        else if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
        if (c1 < lo || c1 > hi) return 0;
    }
    return k + 1;
}

/* Writes the UTF-8 of cp (< 0x110000) to out, returns the length. */
static inline int lmf_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Byte-level text of n raw bytes into out (room for 2n bytes); returns its length. */
static inline size_t lmf_bytelevel_encode(const uint8_t *b, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)lmf_utf8_put(lmf_bytelevel_cp(b[i]), out + k);
    return k;
}

/* Raw bytes of byte-level text s[0..n) into out (room for n bytes). Returns the byte count, or -1 with *bad set
 * to the offset of the first character that is not in the alphabet (or not UTF-8). */
static inline long lmf_bytelevel_decode(const char *s, size_t n, uint8_t *out, size_t *bad) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int l = lmf_utf8_next((const uint8_t *)s + i, n - i, &cp);
        int b = l ? lmf_bytelevel_byte(cp) : -1;
        if (b < 0) {
            *bad = i;
            return -1;
        }
        out[k++] = (uint8_t)b;
        i += (size_t)l;
    }
    return (long)k;
}

/* A fast 64-bit hash of a byte string (8 bytes per multiply), and a mixer for integer keys. */
static inline uint64_t lmf_hash_mix(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t lmf_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = (const uint8_t *)p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8, n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
        h ^= h >> 29;
    }
    return lmf_hash_mix(h);
}

#endif
