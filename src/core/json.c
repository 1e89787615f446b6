/* json.c — see json.h. */
#include "core/json.h"

#include <string.h>

size_t lmf_json_escape(char *dst, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, a = 0; /* plain bytes are copied in runs: text is mostly plain */
    for (size_t i = 0; i <= n; i++) {
        unsigned char ch = i < n ? (unsigned char)s[i] : 0;
        if (i < n && ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) continue;
        if (dst) memcpy(dst + o, s + a, i - a);
        o += i - a;
        a = i + 1;
        if (i == n) break;
        char e[6] = {'\\', (char)ch};
        size_t k = 2;
        switch (ch) {
        case '"': case '\\': break;
        case '\n': e[1] = 'n'; break;
        case '\t': e[1] = 't'; break;
        case '\r': e[1] = 'r'; break;
        default: e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[ch >> 4], e[5] = hex[ch & 15], k = 6;
        }
        if (dst) memcpy(dst + o, e, k);
        o += k;
    }
    return o;
}

void lmf_json_write_string(FILE *f, const char *s) {
    char buf[6 * 64];
    size_t n = s ? strlen(s) : 0;
    fputc('"', f);
    for (size_t i = 0; i < n; i += 64) {
        size_t k = n - i < 64 ? n - i : 64;
        fwrite(buf, 1, lmf_json_escape(buf, s + i, k), f);
    }
    fputc('"', f);
}
