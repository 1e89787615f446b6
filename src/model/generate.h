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

/* Generated ids to final text: the streaming decoder (special tokens skipped) followed by the holdback. One per
 * sequence; lmf_generate and the server's engine both stream through it. */
typedef struct {
    lmf_holdback hb;
    lmf_tokenizer_decoder *dec;
    lmf_text piece;
    int done; /* a stop string appeared, or finish ran: nothing more is released */
} lmf_detok;
void lmf_detok_init(lmf_detok *d, const lmf_tokenizer *tok, const char *const *stops, int n_stops);
/* Adds one id. *text / *len receive the bytes that became final (valid until the next call). Returns 1 when a stop
 * string appeared (the released text ends just before it). */
int lmf_detok_push(lmf_detok *d, int32_t id, const char **text, size_t *len);
/* The end of the sequence: what the decoder and the holdback still keep (an incomplete UTF-8 character may complete
 * a stop string: returns 1 then, as push does). */
int lmf_detok_finish(lmf_detok *d, const char **text, size_t *len);
void lmf_detok_free(lmf_detok *d);

#endif
