/* minhash.c — near-duplicate detection with MinHash + LSH, reproducing datatrove's MinhashDedup stages (v0.10,
 * MinhashConfig defaults: 5-gram word shingles, 14 buckets x 8 hashes, seed 1, 64-bit xxhash) in one streaming,
 * thread-safe, memory-bounded object. See dedup.h for the API and docs/data-dedup.md for the design.
 *
 * Per document (add, no lock): simplify the text like datatrove's simplify_text, split it into words like spaCy's
 * blank English tokenizer (lmf_text_words of text.c, the splitter datatrove assigns to English), hash every run of
 * n_grams words joined by spaces with xxh64, take the minimum of each of the H = buckets * rows universal hashes
 * over the shingles, and hash each band (rows consecutive minima) to a 64-bit key. Under the lock: append (key,
 * doc_id) per band to an external sorter and, when verification is on, store the signature (low 32 bits of each
 * minimum: 4H bytes) by doc id.
 *
 * finish: read the band records in key order; documents that share a key in the same band are candidates and are
 * linked in a union-find (without verification every candidate links, as datatrove does; with it, only pairs whose
 * signatures agree on at least verify_threshold of the H values). Every document of a cluster except its lowest id
 * is removed. */
#include "data/dedup.h"
#include "data/filters.h"
#include "data/text.h"

#include "core/alloc.h"
#include "core/cpu.h"
#include "core/status.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>
#include <xxhash.h>

#define MERSENNE61 ((1ULL << 61) - 1)

/* ---- tables ---- */
/* datatrove.utils.text.PUNCTUATION: 129 code points (simplify_text replaces them by spaces) */
static const int32_t PUNCT_CPS[] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16, 17,
    18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 58, 59, 60,
    61, 62, 63, 64, 91, 92, 93, 94, 95, 96, 123, 124, 125, 126, 127, 128,
    129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144,
    145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 171,
    180, 187, 8211, 8212, 8217, 8220, 8221, 8222, 8230, 8758, 9473, 9658, 12289, 12290, 12296, 12297,
    12298, 12299, 12300, 12301, 12304, 12305, 65281, 65285, 65288, 65289, 65292, 65294, 65297, 65306, 65307, 65311,
    65374,
};

/* ---- hash parameters: numpy.random.RandomState(seed).randint(lo, 2^61 - 1, dtype=uint64), bit for bit ---- */

typedef struct {
    uint32_t mt[624];
    int i;
} mt19937;

static void mt_seed(mt19937 *m, uint32_t s) { /* init_genrand, what RandomState(int) does */
    m->mt[0] = s;
    for (int i = 1; i < 624; i++) m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

static uint32_t mt_next(mt19937 *m) {
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->mt[k] & 0x80000000u) | (m->mt[(k + 1) % 624] & 0x7fffffffu);
            m->mt[k] = m->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
        }
        m->i = 0;
    }
    uint32_t y = m->mt[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* numpy's legacy bounded uint64 draw for a range wider than 32 bits: masked rejection on (hi32 << 32 | lo32). */
static uint64_t mt_bounded(mt19937 *m, uint64_t lo, uint64_t hi_excl) {
    uint64_t rng = hi_excl - 1 - lo, mask = rng;
    mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8, mask |= mask >> 16, mask |= mask >> 32;
    LMF_CHECK(rng > 0xffffffffULL); /* the 32-bit path of numpy is never needed for the 2^61 - 1 range */
    uint64_t v;
    do {
        uint64_t h = mt_next(m);
        v = ((h << 32) | mt_next(m)) & mask;
    } while (v > rng);
    return lo + v;
}

/* ---- text simplification: datatrove.utils.text.simplify_text with the default TextNormConfig ---- */

/* ASCII tables, built once: punctuation flags, and simplify_ascii's classes (0 keep, 1 space, 2 digit). */
static uint8_t punct_ascii[128], ascii_cls[256];
static pthread_once_t ascii_once = PTHREAD_ONCE_INIT;
static int is_space_cp(int32_t c);
static void ascii_init(void) {
    for (size_t i = 0; i < sizeof PUNCT_CPS / sizeof *PUNCT_CPS; i++)
        if (PUNCT_CPS[i] < 128) punct_ascii[PUNCT_CPS[i]] = 1;
    for (int c = 0; c < 128; c++) ascii_cls[c] = (c >= '0' && c <= '9') ? 2 : (punct_ascii[c] || is_space_cp(c));
}

static int is_punct_cp(int32_t c) {
    if (c < 128) return punct_ascii[c]; /* ascii_once has run: both simplify paths start with it */
    size_t lo = 0, hi = sizeof PUNCT_CPS / sizeof *PUNCT_CPS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (PUNCT_CPS[mid] == c) return 1;
        if (PUNCT_CPS[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* Python's str.isspace (what re's \s and str.strip use). */
static int is_space_cp(int32_t c) {
    if (c < 0x80) return (c >= 9 && c <= 13) || (c >= 28 && c <= 32);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static inline int is_nd(int32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return utf8proc_category(c) == UTF8PROC_CATEGORY_ND;
}

static inline int is_num_sep(int32_t c) { /* [.,،٫⎖⎗⎘] of datatrove's NUMBERS_PATTERN */
    return c == '.' || c == ',' || c == 0x060C || c == 0x066B || c == 0x2396 || c == 0x2397 || c == 0x2398;
}

/* Per-thread scratch, reused across documents. */
typedef struct {
    char *s;         /* simplified text */
    size_t s_cap;
    int32_t *cp;     /* code points (slow path) */
    size_t cp_cap;
    char *t;         /* tokens joined by single spaces */
    size_t t_cap;
    uint32_t *tok;   /* token start offsets in t; tok[ntok] = end + 1 */
    size_t tok_cap;
    uint64_t *sh;    /* shingle hashes */
    size_t sh_cap;
    lmf_scratch *words; /* text.c's word splitter state */
} scratch;

static void grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    *p = lmf_xrealloc(*p, c * elem);
    *cap = c;
}

static void scratch_free(void *p) {
    scratch *s = p;
    if (!s) return;
    free(s->s), free(s->cp), free(s->t), free(s->tok), free(s->sh);
    lmf_scratch_free(s->words);
    free(s);
}

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static scratch *get_scratch(void) {
    pthread_once(&scratch_once, scratch_key_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = lmf_xcalloc(1, sizeof *s);
        pthread_setspecific(scratch_key, s);
    }
    return s;
}

/* ASCII-only text: every step is a byte operation. Output: words of [a-z0-9] separated by single spaces. */
static size_t simplify_ascii(const uint8_t *in, size_t len, char *out) {
    const uint8_t *cls = ascii_cls;
    size_t n = 0, i = 0;
    int space = 0;
    while (i < len) {
        uint8_t c = in[i];
        uint8_t k = cls[c];
        if (k == 1) {
            space = 1, i++;
            continue;
        }
        if (space && n) out[n++] = ' ';
        space = 0;
        if (k == 2) { /* \d+([.,]\d+)? -> 0 */
            while (i < len && cls[in[i]] == 2) i++;
            if (i + 1 < len && (in[i] == '.' || in[i] == ',') && cls[in[i + 1]] == 2) {
                i++;
                while (i < len && cls[in[i]] == 2) i++;
            }
            out[n++] = '0';
            continue;
        }
        out[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        i++;
    }
    return n;
}

static int is_cased(int32_t c) {
    if ((c >= 0x2160 && c <= 0x217F) || (c >= 0x24B6 && c <= 0x24E9)) return 1; /* Other_Upper/Lowercase: Ⅻ, Ⓐ */
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* Unicode Case_Ignorable (approximately: Mn, Me, Cf, Lm, Sk and the Word_Break MidLetter / MidNumLet /
 * Single_Quote characters), for the Final_Sigma rule. */
static int is_case_ignorable(int32_t c) {
    switch (c) {
    case '\'': case '.': case ':': case '^': case '`': case 0xB7: case 0x387: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    }
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

static size_t put_utf8(char *out, int32_t c) { return (size_t)utf8proc_encode_char(c, (uint8_t *)out); }

/* General path: the same steps on code points (invalid UTF-8 bytes read as U+FFFD, as a lenient decoder would).
 * lower (simple case mapping; U+0130 -> i + U+0307 as Python's full mapping), digits, punctuation, whitespace, then
 * per character NFD with nonspacing marks (Mn) dropped. out needs room for 4 * 4 bytes per input byte. */
static size_t simplify_unicode(scratch *sc, const uint8_t *in, size_t len, char *out) {
    grow((void **)&sc->cp, &sc->cp_cap, 2 * len + 1, sizeof(int32_t));
    size_t m = 0;
    for (size_t i = 0; i < len;) {
        int32_t c;
        utf8proc_ssize_t k = in[i] < 0x80 ? (c = in[i], 1) : utf8proc_iterate(in + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) c = 0xFFFD, k = 1;
        i += (size_t)k;
        if (c == 0x130) {
            sc->cp[m++] = 'i', sc->cp[m++] = 0x307;
        } else if (c == 0x3A3) { /* Python's Final_Sigma: after a cased letter and not before one -> final form */
            int before = 0, after = 0;
            for (size_t b = m; b-- > 0;)
                if (!is_case_ignorable(sc->cp[b])) {
                    before = is_cased(sc->cp[b]);
                    break;
                }
            for (size_t f = i; f < len;) {
                int32_t nx;
                utf8proc_ssize_t k2 = utf8proc_iterate(in + f, (utf8proc_ssize_t)(len - f), &nx);
                if (k2 <= 0) break;
                f += (size_t)k2;
                if (!is_case_ignorable(nx)) {
                    after = is_cased(nx);
                    break;
                }
            }
            sc->cp[m++] = before && !after ? 0x3C2 : 0x3C3;
        } else {
            sc->cp[m++] = c < 0x80 ? (c >= 'A' && c <= 'Z' ? c + 32 : c) : utf8proc_tolower(c);
        }
    }
    int32_t *cp = sc->cp;
    size_t n = 0;
    int space = 0;
    for (size_t i = 0; i < m;) {
        int32_t c = cp[i];
        if (is_nd(c)) {
            while (i < m && is_nd(cp[i])) i++;
            if (i + 1 < m && is_num_sep(cp[i]) && is_nd(cp[i + 1])) {
                i++;
                while (i < m && is_nd(cp[i])) i++;
            }
            if (space && n) out[n++] = ' ';
            space = 0;
            out[n++] = '0';
            continue;
        }
        i++;
        if (is_punct_cp(c) || is_space_cp(c)) {
            space = 1;
            continue;
        }
        if (space && n) out[n++] = ' ';
        space = 0;
        if (c < 0x80) {
            out[n++] = (char)c;
            continue;
        }
        utf8proc_int32_t dec[16];
        int last;
        utf8proc_ssize_t nd = utf8proc_decompose_char(c, dec, 16, UTF8PROC_DECOMPOSE, &last);
        if (nd < 0 || nd > 16) dec[0] = c, nd = 1;
        for (utf8proc_ssize_t j = 0; j < nd; j++)
            if (utf8proc_category(dec[j]) != UTF8PROC_CATEGORY_MN) n += put_utf8(out + n, dec[j]);
    }
    /* Dropped marks can leave a space at either end (the words are split on spaces later, so inner doubles are
     * harmless, as in datatrove where spaCy makes them whitespace tokens that strip_strings drops). */
    while (n && out[n - 1] == ' ') n--;
    size_t lead = 0;
    while (lead < n && out[lead] == ' ') lead++;
    if (lead) memmove(out, out + lead, n - lead), n -= lead;
    return n;
}

static size_t simplify_into(scratch *sc, const char *text, size_t len) {
    pthread_once(&ascii_once, ascii_init);
    const uint8_t *in = (const uint8_t *)text;
    int ascii = 1;
    for (size_t i = 0; i < len; i++)
        if (in[i] & 0x80) {
            ascii = 0;
            break;
        }
    grow((void **)&sc->s, &sc->s_cap, (ascii ? len : 16 * len) + 1, 1);
    size_t n = ascii ? simplify_ascii(in, len, sc->s) : simplify_unicode(sc, in, len, sc->s);
    sc->s[n] = 0;
    return n;
}

char *lmf_minhash_simplify(const char *text, size_t len, size_t *out_len) {
    scratch *sc = get_scratch();
    size_t n = simplify_into(sc, text, len);
    char *r = lmf_xmalloc(n + 1);
    memcpy(r, sc->s, n + 1);
    if (out_len) *out_len = n;
    return r;
}

/* ---- words: spaCy's English tokenizer (text.c's lmf_text_words, the one the filters use) on simplified text ---- */

/* Words of the simplified text s[0..n) joined by single spaces into sc->t, their starts in sc->tok; returns the
 * count. Token k spans t[tok[k] .. tok[k+1] - 1): a shingle of g words is one contiguous run of t. */
static size_t tokenize(scratch *sc, const char *s, size_t n) {
    if (!sc->words) sc->words = lmf_scratch_new();
    size_t nw;
    const lmf_span *w = lmf_text_words(sc->words, s, n, &nw);
    grow((void **)&sc->t, &sc->t_cap, 2 * n + 2, 1);
    grow((void **)&sc->tok, &sc->tok_cap, nw + 2, sizeof(uint32_t));
    size_t tn = 0;
    for (size_t k = 0; k < nw; k++) {
        sc->tok[k] = (uint32_t)tn;
        memcpy(sc->t + tn, s + w[k].off, w[k].len);
        tn += w[k].len;
        sc->t[tn++] = ' ';
    }
    sc->tok[nw] = (uint32_t)tn;
    return nw;
}

/* ---- shingles and signatures ---- */

struct lmf_minhash {
    lmf_minhash_config cfg;
    char *tmp_dir;
    int H, R, B; /* hashes, rows per band, bands */
    uint64_t *a, *b;
    void (*sig_fn)(const uint64_t *, size_t, const uint64_t *, const uint64_t *, int, uint64_t *);
    pthread_mutex_t mu;
    lmf_extsort *bands;
    /* verification signatures: 4H bytes per doc id, in RAM (sig) or in a file (sig_fd) */
    uint32_t *sig;
    size_t vrec;       /* bytes per document: 4H (signature) or 4(k + 1) (bottom-k sketch: count, k values) */
    uint64_t sig_ids;  /* ids the RAM array covers */
    size_t sig_budget; /* bytes */
    int sig_fd;
    uint64_t n_docs, n_signed;
    /* results */
    int finished;
    uint64_t max_id;
    uint64_t *bitmap;   /* removed documents */
    uint64_t *twins;    /* kept documents that have a removed near-duplicate (same size as bitmap) */
    size_t bitmap_words;
    uint64_t *removed; /* (doc, kept) pairs sorted by doc */
    size_t n_removed, removed_pos;
    lmf_minhash_stats st;
};

/* Shingle hashes of text into sc->sh; returns the count. */
static size_t shingles_into(const lmf_minhash *m, scratch *sc, const char *text, size_t len) {
    size_t n = simplify_into(sc, text, len);
    size_t nt = tokenize(sc, sc->s, n);
    size_t g = (size_t)m->cfg.n_grams;
    if (nt < g) return 0;
    size_t ns = nt - g + 1;
    grow((void **)&sc->sh, &sc->sh_cap, ns, sizeof(uint64_t));
    for (size_t i = 0; i < ns; i++) /* words i..i+g-1 joined by single spaces: contiguous in sc->t */
        sc->sh[i] = XXH64(sc->t + sc->tok[i], sc->tok[i + g] - 1 - sc->tok[i], 0);
    return ns;
}

size_t lmf_minhash_shingles(const lmf_minhash *m, const char *text, size_t len, uint64_t **out) {
    scratch *sc = get_scratch();
    size_t ns = shingles_into(m, sc, text, len);
    *out = NULL;
    if (ns) {
        *out = lmf_xmalloc(ns * sizeof(uint64_t));
        memcpy(*out, sc->sh, ns * sizeof(uint64_t));
    }
    return ns;
}

/* sig[j] = min over shingles s of ((a_j * s + b_j) mod 2^64) mod (2^61 - 1): numpy's uint64 arithmetic wraps, and
 * datatrove's formula inherits the wrap, so we do too. x mod (2^61 - 1) = (x & p) + (x >> 61), minus p if >= p. */
void lmf_minhash_sig_ref(const uint64_t *sh, size_t ns, const uint64_t *a, const uint64_t *b, int H, uint64_t *sig) {
    for (int j = 0; j < H; j++) sig[j] = UINT64_MAX;
    for (size_t i = 0; i < ns; i++) {
        const uint64_t s = sh[i];
        for (int j = 0; j < H; j++) {
            uint64_t x = s * a[j] + b[j];
            uint64_t r = (x & MERSENNE61) + (x >> 61);
            r = r >= MERSENNE61 ? r - MERSENNE61 : r;
            sig[j] = r < sig[j] ? r : sig[j];
        }
    }
}

static void signature_of(const lmf_minhash *m, const uint64_t *sh, size_t ns, uint64_t *sig) {
    m->sig_fn(sh, ns, m->a, m->b, m->H, sig);
}

int lmf_minhash_signature(const lmf_minhash *m, const char *text, size_t len, uint64_t *sig) {
    scratch *sc = get_scratch();
    size_t ns = shingles_into(m, sc, text, len);
    if (!ns) return 0;
    signature_of(m, sc->sh, ns, sig);
    return 1;
}

void lmf_minhash_params(const lmf_minhash *m, const uint64_t **a, const uint64_t **b) {
    *a = m->a;
    *b = m->b;
}

/* The bottom-k sketch: out[0] = count c <= k, out[1..c] = the c smallest distinct values of the high 32 bits of
 * the shingle hashes, ascending. LSD radix sort (4 byte passes) on scratch, then a unique pass. */
static void bottom_k(scratch *sc, size_t ns, int k, uint32_t *out) {
    grow((void **)&sc->cp, &sc->cp_cap, 2 * ns, sizeof(int32_t));
    uint32_t *a = (uint32_t *)sc->cp, *b = a + ns;
    for (size_t i = 0; i < ns; i++) a[i] = (uint32_t)(sc->sh[i] >> 32);
    for (int shift = 0; shift < 32; shift += 8) {
        size_t cnt[257] = {0};
        for (size_t i = 0; i < ns; i++) cnt[((a[i] >> shift) & 255) + 1]++;
        for (int d = 0; d < 256; d++) cnt[d + 1] += cnt[d];
        for (size_t i = 0; i < ns; i++) b[cnt[(a[i] >> shift) & 255]++] = a[i];
        uint32_t *t = a;
        a = b, b = t;
    }
    uint32_t c = 0;
    for (size_t i = 0; i < ns && c < (uint32_t)k; i++)
        if (!c || a[i] != out[c]) out[++c] = a[i];
    out[0] = c;
}

/* ---- the deduplicator ---- */

void lmf_minhash_config_default(lmf_minhash_config *cfg) {
    *cfg = (lmf_minhash_config){.n_grams = 5, .num_buckets = 14, .hashes_per_bucket = 8, .seed = 1,
                                .verify_threshold = 0.8, .verify_window = 16, .verify_sketch = 256,
                                .mem_budget = (size_t)256 << 20, .tmp_dir = NULL};
}

lmf_status lmf_minhash_create(const lmf_minhash_config *cfg, lmf_minhash **out) {
    *out = NULL;
    if (cfg->n_grams < 1 || cfg->n_grams > 64)
        return lmf_fail(LMF_ERR_ARG, "minhash n_grams = %d: expected 1..64", cfg->n_grams);
    if (cfg->num_buckets < 1 || cfg->hashes_per_bucket < 1 ||
        (long)cfg->num_buckets * cfg->hashes_per_bucket > LMF_MINHASH_MAX_HASHES)
        return lmf_fail(LMF_ERR_ARG, "minhash num_buckets = %d, hashes_per_bucket = %d: expected >= 1 each and a "
                        "product <= %d", cfg->num_buckets, cfg->hashes_per_bucket, LMF_MINHASH_MAX_HASHES);
    if (!(cfg->verify_threshold >= 0 && cfg->verify_threshold <= 1))
        return lmf_fail(LMF_ERR_ARG, "minhash verify_threshold = %g: expected 0 (off) or a value in (0, 1]",
                        cfg->verify_threshold);
    if (cfg->verify_threshold > 0 && cfg->verify_window < 1)
        return lmf_fail(LMF_ERR_ARG, "minhash verify_window = %d: expected >= 1", cfg->verify_window);
    if (cfg->verify_sketch < 0 || cfg->verify_sketch > LMF_MINHASH_MAX_SKETCH)
        return lmf_fail(LMF_ERR_ARG, "minhash verify_sketch = %d: expected 0 (use the signature) or 1..%d",
                        cfg->verify_sketch, LMF_MINHASH_MAX_SKETCH);
    lmf_minhash *m = lmf_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    if (cfg->tmp_dir) m->tmp_dir = strdup(cfg->tmp_dir);
    m->cfg.tmp_dir = m->tmp_dir;
    m->B = cfg->num_buckets, m->R = cfg->hashes_per_bucket, m->H = m->B * m->R;
    m->a = lmf_xmalloc((size_t)m->H * sizeof(uint64_t));
    m->b = lmf_xmalloc((size_t)m->H * sizeof(uint64_t));
    mt19937 *mt = lmf_xmalloc(sizeof *mt);
    mt_seed(mt, cfg->seed);
    for (int j = 0; j < m->H; j++) m->a[j] = mt_bounded(mt, 1, MERSENNE61);
    for (int j = 0; j < m->H; j++) m->b[j] = mt_bounded(mt, 0, MERSENNE61);
    free(mt);
    m->sig_fn = lmf_cpu_isa() == LMF_ISA_AVX512 ? lmf_minhash_sig_avx512 : lmf_minhash_sig_ref;
    m->vrec = cfg->verify_sketch ? 4 * ((size_t)cfg->verify_sketch + 1) : 4 * (size_t)m->H;
    size_t band_budget = cfg->verify_threshold > 0 ? cfg->mem_budget / 2 : cfg->mem_budget;
    m->sig_budget = cfg->mem_budget - band_budget;
    m->sig_fd = -1;
    pthread_mutex_init(&m->mu, NULL);
    lmf_status s = lmf_extsort_create(2, band_budget, m->tmp_dir, &m->bands);
    if (s != LMF_OK) {
        lmf_minhash_free(m);
        return s;
    }
    *out = m;
    return LMF_OK;
}

static lmf_status sig_pwrite(lmf_minhash *m, const void *p, size_t n, off_t off) {
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(m->sig_fd, c, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return lmf_fail(LMF_ERR_IO, "minhash signature file: write of %zu bytes at %lld failed: %s", n,
                                    (long long)off, w < 0 ? strerror(errno) : "no space");
        c += w, n -= (size_t)w, off += w;
    }
    return LMF_OK;
}

/* Stores the verification signature of doc_id (under the lock). */
static lmf_status store_sig(lmf_minhash *m, uint64_t doc_id, const uint32_t *s32) {
    size_t rec = m->vrec;
    if (m->sig_fd < 0 && doc_id >= m->sig_ids) {
        uint64_t want = m->sig_ids ? m->sig_ids : 1024;
        while (want <= doc_id) want *= 2;
        if (want * rec <= m->sig_budget || doc_id < m->sig_budget / rec) {
            if (want * rec > m->sig_budget) want = m->sig_budget / rec;
            m->sig = lmf_xrealloc(m->sig, want * rec);
            memset((char *)m->sig + m->sig_ids * rec, 0, (want - m->sig_ids) * rec);
            m->sig_ids = want;
        } else { /* over budget: move what we have to a file (sparse, indexed by id) and continue there */
            if ((m->sig_fd = lmf_dedup_tmpfile(m->tmp_dir)) < 0) return LMF_ERR_IO;
            if (m->sig_ids) LMF_TRY(sig_pwrite(m, m->sig, m->sig_ids * rec, 0));
            free(m->sig);
            m->sig = NULL;
            m->sig_ids = 0;
        }
    }
    if (m->sig_fd < 0) {
        memcpy((char *)m->sig + doc_id * rec, s32, rec);
        return LMF_OK;
    }
    return sig_pwrite(m, s32, rec, (off_t)(doc_id * rec));
}

static lmf_status load_sig(lmf_minhash *m, uint64_t doc_id, uint32_t *s32) {
    size_t rec = m->vrec;
    if (m->sig_fd < 0) {
        LMF_CHECK(doc_id < m->sig_ids);
        memcpy(s32, (char *)m->sig + doc_id * rec, rec);
        return LMF_OK;
    }
    char *c = (char *)s32;
    size_t n = rec;
    off_t off = (off_t)(doc_id * rec);
    while (n) {
        ssize_t r = pread(m->sig_fd, c, n, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return lmf_fail(LMF_ERR_IO, "minhash signature file: read at %lld failed: %s", (long long)off,
                                    r < 0 ? strerror(errno) : "unexpected end of file");
        c += r, n -= (size_t)r, off += r;
    }
    return LMF_OK;
}

lmf_status lmf_minhash_add(lmf_minhash *m, uint64_t doc_id, const char *text, size_t len) {
    scratch *sc = get_scratch();
    size_t ns = shingles_into(m, sc, text, len);
    uint64_t sig[LMF_MINHASH_MAX_HASHES], keys[LMF_MINHASH_MAX_HASHES];
    uint32_t s32[LMF_MINHASH_MAX_SKETCH + 1];
    if (ns) {
        signature_of(m, sc->sh, ns, sig);
        for (int k = 0; k < m->B; k++) /* band key: 64-bit hash of the band's R values, seeded by the band */
            keys[k] = XXH3_64bits_withSeed(sig + (size_t)k * m->R, (size_t)m->R * 8, (uint64_t)k);
        if (m->cfg.verify_threshold > 0) {
            if (m->cfg.verify_sketch) bottom_k(sc, ns, m->cfg.verify_sketch, s32);
            else
                for (int j = 0; j < m->H; j++) s32[j] = (uint32_t)sig[j];
        }
    }
    lmf_status s = LMF_OK;
    pthread_mutex_lock(&m->mu);
    LMF_CHECK(!m->finished);
    m->n_docs++;
    if (doc_id > m->max_id) m->max_id = doc_id;
    if (ns) {
        m->n_signed++;
        for (int k = 0; k < m->B && s == LMF_OK; k++) {
            uint64_t rec[2] = {keys[k], doc_id};
            s = lmf_extsort_push(m->bands, rec);
        }
        if (s == LMF_OK && m->cfg.verify_threshold > 0) s = store_sig(m, doc_id, s32);
    }
    pthread_mutex_unlock(&m->mu);
    return s;
}

/* Jaccard estimate of two bottom-k sketches: among the k smallest values of the union, the share in both. Exact
 * (up to 32-bit hash collisions) when both documents have at most k distinct shingles. */
static double sketch_jaccard(const uint32_t *x, const uint32_t *y, int k) {
    uint32_t nx = x[0], ny = y[0];
    x++, y++;
    uint32_t i = 0, j = 0, uni = 0, both = 0;
    while (uni < (uint32_t)k && (i < nx || j < ny)) {
        if (j == ny || (i < nx && x[i] < y[j])) i++;
        else if (i == nx || y[j] < x[i]) j++;
        else i++, j++, both++;
        uni++;
    }
    return uni ? (double)both / uni : 1.0;
}

/* 1 if the estimated Jaccard similarity of x and y is at least verify_threshold. */
static lmf_status verify(lmf_minhash *m, uint64_t x, uint64_t y, int *ok) {
    uint32_t sx[LMF_MINHASH_MAX_SKETCH + 1], sy[LMF_MINHASH_MAX_SKETCH + 1];
    LMF_TRY(load_sig(m, x, sx));
    LMF_TRY(load_sig(m, y, sy));
    double est;
    if (m->cfg.verify_sketch) {
        est = sketch_jaccard(sx, sy, m->cfg.verify_sketch);
    } else {
        int eq = 0;
        for (int j = 0; j < m->H; j++) eq += sx[j] == sy[j];
        est = (double)eq / m->H;
    }
    *ok = est >= m->cfg.verify_threshold - 1e-9;
    return LMF_OK;
}

static int cmp_pair(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

lmf_status lmf_minhash_finish(lmf_minhash *m) { return lmf_minhash_finish_skipping(m, NULL, NULL); }

lmf_status lmf_minhash_finish_skipping(lmf_minhash *m, int (*skip)(const void *ctx, uint64_t doc_id),
                                       const void *ctx) {
    LMF_CHECK(!m->finished);
    m->finished = 1;
    m->st.n_spills = lmf_extsort_spills(m->bands);
    LMF_TRY(lmf_extsort_finish(m->bands));
    m->st.n_spills = lmf_extsort_spills(m->bands);
    lmf_unionfind *uf = lmf_unionfind_create();
    const int verifying = m->cfg.verify_threshold > 0;
    const int W = verifying ? m->cfg.verify_window : 1;
    uint64_t *reps = lmf_xmalloc((size_t)W * sizeof *reps);
    int nreps = 0;
    uint64_t rec[2], key = 0;
    int have = 0, g;
    uint64_t skipped_recs = 0;
    lmf_status s = LMF_OK;
    while ((g = lmf_extsort_next(m->bands, rec)) == 1) {
        /* a skipped document's records are passed over as if never pushed: the buckets, the verification window
         * and every counter are then exactly those of a run without it */
        if (skip && skip(ctx, rec[1])) {
            skipped_recs++;
            continue;
        }
        if (!have || rec[0] != key) { /* a new bucket: this document opens it */
            key = rec[0], have = 1;
            reps[0] = rec[1], nreps = 1;
            continue;
        }
        /* Same band values as the bucket's earlier documents. Without verification link to the first (datatrove
         * links consecutive ones: the same clusters). With it, try up to W distinct groups of the bucket. */
        int linked = 0;
        for (int r = 0; r < nreps && !linked; r++) {
            if (lmf_unionfind_same(uf, rec[1], reps[r])) {
                linked = 1;
                break;
            }
            m->st.n_candidates++;
            int ok = 1;
            if (verifying && (s = verify(m, rec[1], reps[r], &ok)) != LMF_OK) goto out;
            if (ok) {
                m->st.n_edges += (uint64_t)lmf_unionfind_union(uf, rec[1], reps[r]);
                linked = 1;
            } else {
                m->st.n_verify_failed++;
            }
        }
        if (!linked && nreps < W) reps[nreps++] = rec[1];
    }
    if (g < 0) {
        s = LMF_ERR_IO;
        goto out;
    }
    /* Every clustered document except the lowest id of its cluster is removed. */
    size_t nu = lmf_unionfind_size(uf);
    m->removed = lmf_xmalloc((nu ? nu : 1) * 2 * sizeof(uint64_t));
    m->bitmap_words = m->n_docs ? (size_t)(m->max_id / 64 + 1) : 0;
    m->bitmap = lmf_xcalloc(m->bitmap_words ? m->bitmap_words : 1, sizeof *m->bitmap);
    m->twins = lmf_xcalloc(m->bitmap_words ? m->bitmap_words : 1, sizeof *m->twins);
    for (size_t i = 0; i < nu; i++) {
        uint64_t id = lmf_unionfind_id(uf, i), keep = lmf_unionfind_min(uf, id);
        if (id == keep) {
            m->st.n_clusters++;
            continue;
        }
        m->removed[2 * m->n_removed] = id;
        m->removed[2 * m->n_removed + 1] = keep;
        m->n_removed++;
        m->bitmap[id / 64] |= 1ULL << (id % 64);
        m->twins[keep / 64] |= 1ULL << (keep % 64);
    }
    if (skip) { /* each signed document pushed one record per band; unsigned ones are found by asking skip */
        m->n_signed -= skipped_recs / (uint64_t)m->B;
        uint64_t n_skipped = 0;
        for (uint64_t id = 0; m->n_docs && id <= m->max_id; id++) n_skipped += skip(ctx, id) != 0;
        m->n_docs -= n_skipped;
    }
    qsort(m->removed, m->n_removed, 2 * sizeof(uint64_t), cmp_pair);
    m->st.n_removed = m->n_removed;
out:
    free(reps);
    lmf_unionfind_free(uf);
    /* Band records and signatures are no longer needed. */
    lmf_extsort_free(m->bands);
    m->bands = NULL;
    free(m->sig);
    m->sig = NULL;
    if (m->sig_fd >= 0) close(m->sig_fd), m->sig_fd = -1, m->st.sigs_on_disk = 1;
    return s;
}

int lmf_minhash_is_duplicate(const lmf_minhash *m, uint64_t doc_id) {
    LMF_CHECK(m->finished);
    if (doc_id / 64 >= m->bitmap_words) return 0;
    return (int)((m->bitmap[doc_id / 64] >> (doc_id % 64)) & 1);
}

int lmf_minhash_has_duplicates(const lmf_minhash *m, uint64_t doc_id) {
    LMF_CHECK(m->finished);
    if (doc_id / 64 >= m->bitmap_words) return 0;
    return (int)((m->twins[doc_id / 64] >> (doc_id % 64)) & 1);
}

int lmf_minhash_next_removed(lmf_minhash *m, uint64_t *doc_id, uint64_t *kept_id) {
    LMF_CHECK(m->finished);
    if (m->removed_pos == m->n_removed) return 0;
    *doc_id = m->removed[2 * m->removed_pos];
    *kept_id = m->removed[2 * m->removed_pos + 1];
    m->removed_pos++;
    return 1;
}

void lmf_minhash_get_stats(const lmf_minhash *m, lmf_minhash_stats *st) {
    *st = m->st;
    st->n_docs = m->n_docs;
    st->n_signed = m->n_signed;
    if (m->sig_fd >= 0) st->sigs_on_disk = 1;
}

void lmf_minhash_free(lmf_minhash *m) {
    if (!m) return;
    lmf_extsort_free(m->bands);
    if (m->sig_fd >= 0) close(m->sig_fd);
    pthread_mutex_destroy(&m->mu);
    LMF_FREE_ALL(m->sig, m->a, m->b, m->bitmap, m->twins, m->removed, m->tmp_dir, m);
}
