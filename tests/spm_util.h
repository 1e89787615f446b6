/* spm_util.h — what the SentencePiece tests share. */
#ifndef LMF_TESTS_SPM_UTIL_H
#define LMF_TESTS_SPM_UTIL_H

#include <stdint.h>
#include <string.h>

/* Whether SentencePiece's decode gives x back: not where x holds U+2581 (which reads as a space), nor where a
 * UTF-8 lead byte claims the space after it (the space's mark, escaped first, is then split across characters). */
static int spm_round_trips(const uint8_t *x, size_t n) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    if (memmem(x, n, "\xe2\x96\x81", 3)) return 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 1; x[i] == ' ' && k <= 3 && k <= i && x[i - k] != ' '; k++)
            if (len[x[i - k] >> 4] > k) return 0;
    return 1;
}

#endif
