/* pii.c — PII masking. E-mail and IPv4 follow datatrove's PIIFormatter exactly (its regexes, its replacements,
 * only globally routable IPv4 addresses by default, Python 3.11 ipaddress.is_global); IPv6 addresses and phone
 * numbers are our additions (datatrove has none): candidates found by a regex, then validated (inet_pton for IPv6,
 * 9..15 digits for phones). Passes run in that order over the previous pass's output, as datatrove does. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/filters.h"
#include "data/text.h"

static const char *const default_emails[] = {"email@example.com", "firstname.lastname@example.org"};
static const char *const default_ips[] = {"22.214.171.124", "126.96.36.199", "188.8.131.52",
                                          "184.108.40.206", "220.127.116.11", "18.104.22.168"};

static const char EMAIL_RE[] =
    "\\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
    "A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\\[(?:(?:25[0-5]|2[0-4][0-9]|["
    "01]?[0-9][0-9]?)\\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])";
static const char IPV4_RE[] =
    "(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)";
static const char IPV6_RE[] = "(?<![\\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?<=:):|(?:\\d{1,3}\\.){3}\\d{1,3})"
                              "(?![\\w:])|(?<![\\w:.])::(?![\\w:])";
static const char PHONE_RE[] =
    "(?<![\\w+.\\-])(?:\\+\\d{1,3}[ .\\-]?)?(?:\\(\\d{2,4}\\)[ .\\-]?|\\d{1,4}[ .\\-])(?:\\d{2,4}[ .\\-])?"
    "\\d{3,4}[ .\\-]\\d{3,4}(?![\\w\\-]|\\.\\d)";

static pcre2_code *re_email, *re_ipv4, *re_ipv6, *re_phone;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
    re_email = lmf_regex_builtin(EMAIL_RE);
    re_ipv4 = lmf_regex_builtin(IPV4_RE);
    re_ipv6 = lmf_regex_builtin(IPV6_RE);
    re_phone = lmf_regex_builtin(PHONE_RE);
}

void lmf_pii_defaults(lmf_pii_cfg *c) {
    memset(c, 0, sizeof *c);
    c->emails = c->ipv4 = c->ipv6 = c->phones = 1;
    c->only_public_ips = 1;
}

/* Python 3.11 ipaddress: IPv4Address(s) (no leading zeros), then is_global = not private and not 100.64/10. */
static int ipv4_replace(const char *s, size_t n, int only_public) {
    uint32_t a = 0;
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        size_t st = i;
        uint32_t v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') v = v * 10 + (uint32_t)(s[i++] - '0');
        if (i - st > 1 && s[st] == '0') return 0; /* "01": ValueError in ipaddress -> not replaced */
        a = (a << 8) | v;
        parts++;
        if (i < n) i++; /* the dot */
    }
    if (parts != 4) return 0;
    if (!only_public) return 1;
    static const struct {
        uint32_t net;
        int bits;
    } priv[] = {{0x00000000, 8},  {0x0A000000, 8},  {0x7F000000, 8},  {0xA9FE0000, 16}, {0xAC100000, 12},
                {0xC0000000, 29}, {0xC00000AA, 31}, {0xC0000200, 24}, {0xC0A80000, 16}, {0xC6120000, 15},
                {0xC6336400, 24}, {0xCB007100, 24}, {0xF0000000, 4},  {0xFFFFFFFF, 32}, {0x64400000, 10}};
    for (size_t k = 0; k < sizeof priv / sizeof *priv; k++) {
        uint32_t mask = priv[k].bits == 32 ? 0xFFFFFFFFu : ~(0xFFFFFFFFu >> priv[k].bits);
        if ((a & mask) == priv[k].net) return 0;
    }
    return 1;
}

/* Python 3.11 IPv6Address.is_global = not is_private. */
static int ipv6_replace(const char *s, size_t n, int only_public) {
    char buf[64];
    unsigned char b[16];
    if (n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    if (inet_pton(AF_INET6, buf, b) != 1) return 0;
    if (!only_public) return 1;
    static const struct {
        unsigned char p[16];
        int bits;
    } priv[] = {{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
                {{0}, 128},
                {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, 96},
                {{0x01, 0x00}, 64},
                {{0x20, 0x01}, 23},
                {{0x20, 0x01, 0x00, 0x02}, 48},
                {{0x20, 0x01, 0x0D, 0xB8}, 32},
                {{0x20, 0x01, 0x00, 0x10}, 28},
                {{0xFC}, 7},
                {{0xFE, 0x80}, 10}};
    for (size_t k = 0; k < sizeof priv / sizeof *priv; k++) {
        int bits = priv[k].bits, ok = 1;
        for (int q = 0; q < 16 && ok; q++) {
            int nb = bits - 8 * q;
            if (nb <= 0) break;
            unsigned char mask = nb >= 8 ? 0xFF : (unsigned char)(0xFF << (8 - nb));
            ok = (b[q] & mask) == (priv[k].p[q] & mask);
        }
        if (ok) return 0;
    }
    return 1;
}

static int phone_ok(const char *s, size_t n) {
    int d = 0, dots = 0, group = 0, maxgroup = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            d++;
            if (++group > maxgroup) maxgroup = group;
        } else {
            dots += s[i] == '.';
            other += s[i] != '.';
            group = 0;
        }
    }
    /* four dot-separated groups of at most three digits is an IPv4 address (or one of the IPv4 replacements) */
    if (dots == 3 && !other && maxgroup <= 3) return 0;
    return d >= 9 && d <= 15;
}

enum { K_EMAIL, K_IPV4, K_IPV6, K_PHONE };

static int is_hex(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f'); }
static int is_dig(unsigned char c) { return c >= '0' && c <= '9'; }

/* Where a match of this kind could start at the earliest (a cheap scan; the regex then starts there), or n when
 * nothing in the text can match: most documents have no PII, and this keeps them at memchr speed. */
static size_t first_candidate(int kind, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    const size_t back = 48; /* further back than any match can reach before its telltale character */
    size_t i;
    switch (kind) {
    case K_EMAIL: {
        const char *at = memchr(s, '@', n);
        if (!at) return n;
        /* the local part can be long: start at the beginning of its run of non-space bytes */
        i = (size_t)(at - s);
        while (i > 0 && u[i - 1] > ' ') i--;
        return i;
    }
    case K_IPV4: /* digit '.' digit */
        for (const char *p = memchr(s, '.', n); p; p = memchr(p + 1, '.', n - (size_t)(p + 1 - s))) {
            i = (size_t)(p - s);
            if (i > 0 && i + 1 < n && is_dig(u[i - 1]) && is_dig(u[i + 1])) return i > back ? i - back : 0;
        }
        return n;
    case K_IPV6: /* a colon between hex digits or colons */
        for (const char *p = memchr(s, ':', n); p; p = memchr(p + 1, ':', n - (size_t)(p + 1 - s))) {
            i = (size_t)(p - s);
            int before = i > 0 && (is_hex(u[i - 1]) || u[i - 1] == ':');
            int after = i + 1 < n && (is_hex(u[i + 1]) || u[i + 1] == ':');
            if ((before && after) || (i + 1 < n && u[i + 1] == ':')) return i > back ? i - back : 0;
        }
        return n;
    default: { /* phones: 9 digits within 24 bytes */
        size_t win[9];
        size_t k = 0;
        for (i = 0; i < n; i++) {
            if (!is_dig(u[i])) continue;
            win[k % 9] = i;
            k++;
            if (k >= 9 && i - win[(k - 9) % 9] < 24) {
                size_t st = win[(k - 9) % 9];
                return st > back ? st - back : 0;
            }
        }
        return n;
    }
    }
}

/* One pass: every match of re in [src, n) validated and replaced (in turn from reps) into out; returns count. */
static size_t pass(pcre2_code *re, int kind, const lmf_pii_cfg *c, const char *src, size_t n, lmf_scratch *s,
                   lmf_textbuf *out, const char *const *reps, size_t nreps) {
    pcre2_match_data *md = lmf_scratch_match_data(s);
    size_t off = first_candidate(kind, src, n), last = 0, count = 0, rot = 0;
    out->len = 0;
    if (off >= n) return 0;
    lmf_textbuf_reserve(out, n + 1);
    while (off <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)src, n, off, 0, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* no pattern here matches empty; guard anyway */
            off = b + 1;
            continue;
        }
        int ok = kind == K_EMAIL   ? 1
                 : kind == K_IPV4  ? ipv4_replace(src + a, b - a, c->only_public_ips)
                 : kind == K_IPV6  ? ipv6_replace(src + a, b - a, c->only_public_ips)
                                   : phone_ok(src + a, b - a);
        if (ok) {
            lmf_textbuf_append(out, src + last, a - last);
            const char *r = reps[rot];
            rot = (rot + 1) % nreps;
            lmf_textbuf_append(out, r, strlen(r));
            last = b;
            count++;
        }
        off = b;
    }
    lmf_textbuf_append(out, src + last, n - last);
    return count;
}

void lmf_pii_mask(const lmf_pii_cfg *c, const char *text, size_t len, lmf_scratch *s, lmf_textbuf *out,
                  lmf_pii_counts *counts) {
    pthread_once(&once, init);
    lmf_pii_counts dummy;
    if (!counts) counts = &dummy;
    memset(counts, 0, sizeof *counts);
    /* ping-pong between out and a temporary; cheap pre-checks skip passes that cannot match */
    lmf_textbuf tmp = {0};
    out->len = 0;
    lmf_textbuf_append(out, text, len);
    const char *ipv6_rep[1] = {c->ipv6_replacement ? c->ipv6_replacement : "2001:db8::1"};
    const char *phone_rep[1] = {c->phone_replacement ? c->phone_replacement : "555-0100"};
    struct {
        int on, kind;
        pcre2_code *re;
        const char *const *reps;
        size_t nreps;
        size_t *count;
    } passes[4] = {
        {c->emails, K_EMAIL, re_email, c->email_replacements ? c->email_replacements : default_emails,
         c->email_replacements ? c->n_email_replacements : 2, &counts->emails},
        {c->ipv4, K_IPV4, re_ipv4, c->ip_replacements ? c->ip_replacements : default_ips,
         c->ip_replacements ? c->n_ip_replacements : 6, &counts->ipv4},
        {c->ipv6, K_IPV6, re_ipv6, ipv6_rep, 1, &counts->ipv6},
        {c->phones, K_PHONE, re_phone, phone_rep, 1, &counts->phones},
    };
    for (int p = 0; p < 4; p++) {
        if (!passes[p].on || passes[p].nreps == 0) continue;
        size_t k = pass(passes[p].re, passes[p].kind, c, out->data, out->len, s, &tmp, passes[p].reps,
                        passes[p].nreps);
        if (k) {
            *passes[p].count = k;
            lmf_textbuf t = *out;
            *out = tmp;
            tmp = t;
        }
    }
    lmf_textbuf_free(&tmp);
}
