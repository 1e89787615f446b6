/* status.h — recording failures for lmf_last_error(), and the assert/abort helpers for the two other error classes
 * (broken invariants and out-of-memory), as STYLE.md describes. */
#ifndef LMF_CORE_STATUS_H
#define LMF_CORE_STATUS_H

#include "lmforge.h"

#include <stdio.h>
#include <stdlib.h>

/* Records a formatted message as this thread's last error and returns s, so callers write
 *   return lmf_fail(LMF_ERR_FORMAT, "%s: offset %zu: ...", path, off); */
lmf_status lmf_fail(lmf_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lmf_clear_error(void);

/* A broken invariant is a bug: report file:line and abort, in every build type. */
#define LMF_CHECK(cond)                                                                                            \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            fprintf(stderr, "lmforge: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
            abort();                                                                                               \
        }                                                                                                          \
    } while (0)

#define LMF_TRY(expr)                                                                                              \
    do {                                                                                                           \
        lmf_status s_ = (expr);                                                                                    \
        if (s_ != LMF_OK) return s_;                                                                               \
    } while (0)

/* For validators of arguments and configs: returns lmf_fail(LMF_ERR_ARG, fmt, ...) when cond is false. */
#define LMF_REQUIRE_ARG(cond, ...)                                                                                 \
    do {                                                                                                           \
        if (!(cond)) return lmf_fail(LMF_ERR_ARG, __VA_ARGS__);                                                    \
    } while (0)

/* For parsers of enum names: the position of name in names[0..n), or -1 (the caller words the error). */
int lmf_name_index(const char *name, const char *const *names, int n);

#endif
