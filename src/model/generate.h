/* generate.h — the generation loop's internals (lmf_generate itself is public, in lmforge.h).
 *
 * The stop-string holdback: generated text arrives in pieces (whole UTF-8 characters from the streaming decoder);
 * a stop string may span pieces, so the tail of the text that could still grow into one is held back until the
 * next piece shows whether it does. What is released is final: it never contains (part of) a stop string. The
 * server streams through the same filter as the CLI, so it lives here, in the library. */
#ifndef LMF_MODEL_GENERATE_H
#define LMF_MODEL_GENERATE_H

#include "lmforge.h"

typedef struct {
    lmf_text all;             /* the text so far (cut before the stop string once one appears); owned */
    size_t released;          /* bytes of `all` released so far */
    const char *const *stops; /* not owned; empty strings are ignored */
    int n_stops;
    int hit;                  /* a stop string has appeared: `all` ends where it began */
} lmf_holdback;

/* Adds n bytes. Returns 1 when a stop string has appeared (all is cut just before it, and stays so: later pushes
 * are ignored). Afterwards all[released, *safe) may be released (the caller sets released = *safe once it has). */
int lmf_holdback_push(lmf_holdback *h, const char *s, size_t n, size_t *safe);
void lmf_holdback_free(lmf_holdback *h);

#endif
