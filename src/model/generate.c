/* generate.c — lmf_generate (lmforge.h): evaluate a prompt, then sample, evaluate and decode token by token,
 * streaming final text to the caller; and the stop-string holdback behind the streaming (generate.h).
 *
 * One loop for every caller: the CLI's generate and chat write the pieces to stdout, the trainer's sample to its
 * sink, the server to a socket. The library never prints: text leaves only through the caller's callback. */
#include "model/generate.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* ---- the stop-string holdback ------------------------------------------------------------------------------- */

int lmf_holdback_push(lmf_holdback *h, const char *s, size_t n, size_t *safe) {
    if (h->hit) {
        *safe = h->all.len;
        return 1;
    }
    lmf_text_push(&h->all, s, n);
    size_t len = h->all.len, cut = len, keep = len;
    for (int k = 0; k < h->n_stops; k++) {
        size_t sl = strlen(h->stops[k]);
        if (!sl) continue;
        /* a stop string can only end in the unreleased tail, so it starts at most sl - 1 bytes before it; memmem,
         * not strstr: a byte-level model can generate NUL bytes */
        size_t from = h->released >= sl ? h->released - sl + 1 : 0;
        const char *hit = memmem(h->all.data + from, len - from, h->stops[k], sl);
        if (hit && (size_t)(hit - h->all.data) < cut) cut = (size_t)(hit - h->all.data);
        /* the longest suffix of the text that is a proper prefix of this stop string is held back */
        for (size_t m = sl - 1; m > 0; m--)
            if (m <= len && !memcmp(h->all.data + len - m, h->stops[k], m)) {
                if (len - m < keep) keep = len - m;
                break;
            }
    }
    if (cut < len) {
        /* the earliest stop string wins; the text before it is final (released text never holds a stop's start) */
        h->all.len = cut;
        h->all.data[cut] = 0;
        h->hit = 1;
        *safe = cut > h->released ? cut : h->released;
        return 1;
    }
    *safe = keep > h->released ? keep : h->released;
    return 0;
}

void lmf_holdback_free(lmf_holdback *h) {
    free(h->all.data);
    h->all = (lmf_text){0};
}

/* ---- generation ----------------------------------------------------------------------------------------------- */

typedef struct {
    lmf_holdback hb;
    lmf_text_cb cb;
    void *ctx;
    int cb_stop; /* the callback asked to stop: nothing more is released */
} streamer;

/* Releases hb.all[released, upto) through the callback. */
static void release(streamer *st, size_t upto) {
    if (st->cb_stop || upto <= st->hb.released) return;
    if (st->cb && st->cb(st->ctx, st->hb.all.data + st->hb.released, upto - st->hb.released)) st->cb_stop = 1;
    st->hb.released = upto;
}

/* Adds decoded text; returns LMF_STOP_STRING or LMF_STOP_CALLBACK when the generation must end, else -1. */
static int stream(streamer *st, const char *s, size_t n) {
    size_t safe;
    int hit = lmf_holdback_push(&st->hb, s, n, &safe);
    release(st, safe);
    return st->cb_stop ? (int)LMF_STOP_CALLBACK : hit ? (int)LMF_STOP_STRING : -1;
}

lmf_status lmf_generate(lmf_session *s, lmf_sampler *smp, lmf_ids *hist, size_t n_new, const lmf_generate_params *p,
                        lmf_text *reply, lmf_generate_result *res) {
    lmf_generate_result r = {.stop_reason = LMF_STOP_LENGTH};
    if (res) *res = r;
    const lmf_weights *w = lmf_session_weights(s);
    const lmf_tokenizer *tok = p->tok ? p->tok : lmf_weights_tokenizer(w);
    if (!tok) return lmf_fail(LMF_ERR_ARG, "lmf_generate: no tokenizer (the model carries none; pass params.tok)");
    if (p->n_predict < 0) return lmf_fail(LMF_ERR_ARG, "lmf_generate: n_predict %d must be >= 0", p->n_predict);
    if (p->n_stops < 0 || p->n_stop_ids < 0 || (p->n_stops && !p->stops) || (p->n_stop_ids && !p->stop_ids))
        return lmf_fail(LMF_ERR_ARG, "lmf_generate: bad stop lists (%d strings, %d ids)", p->n_stops, p->n_stop_ids);
    size_t pos = (size_t)lmf_session_pos(s);
    if (n_new > hist->len || (n_new ? pos != hist->len - n_new : pos != hist->len || pos == 0))
        return lmf_fail(LMF_ERR_ARG, "lmf_generate: the session holds %zu tokens, but the history has %zu of which %zu "
                        "are new (it must hold the rest; with none new, all and at least one)", pos, hist->len, n_new);
    if (n_new == 0) {
        /* the last token again, for its logits (the session keeps none between calls) */
        lmf_session_rewind(s, (int)pos - 1);
        n_new = 1;
    }
    int32_t stop_ids[4];
    int n_stop_ids = lmf_weights_stop_tokens(w, stop_ids);

    const float *lg = NULL;
    double t0 = lmf_now();
    lmf_status stt = lmf_session_eval(s, hist->data + hist->len - n_new, (int)n_new, 0, &lg);
    double t1 = lmf_now();
    r.prompt_s = t1 - t0, r.prompt_tokens = (int)n_new;
    if (stt != LMF_OK) {
        if (res) *res = r;
        return stt;
    }
    int V = lmf_weights_config(w)->vocab_size;
    float *logits = lmf_xmalloc(sizeof(float) * (size_t)V);
    lmf_tokenizer_decoder *dec = lmf_tokenizer_decoder_create(tok, LMF_DECODE_SKIP_SPECIAL);
    streamer st = {.hb = {.stops = p->stops, .n_stops = p->n_stops}, .cb = p->on_text, .ctx = p->ctx};
    lmf_text piece = {0};
    int reason = p->n_predict == 0 ? (int)LMF_STOP_LENGTH : -1;
    while (reason < 0) {
        memcpy(logits, lg, sizeof(float) * (size_t)V); /* the sampler works in place; lg is the session's */
        int32_t next = lmf_sampler_sample(smp, logits, hist->data, (int)hist->len);
        int is_stop = 0;
        for (int k = 0; k < n_stop_ids; k++) is_stop |= next == stop_ids[k];
        for (int k = 0; k < p->n_stop_ids; k++) is_stop |= next == p->stop_ids[k];
        if (is_stop) {
            reason = LMF_STOP_TOKEN;
            break;
        }
        lmf_ids_push(hist, &next, 1);
        r.gen_tokens++;
        piece.len = 0;
        /* an id the tokenizer lacks (a model vocabulary larger than it) decodes to nothing */
        (void)lmf_tokenizer_decoder_feed(dec, &next, 1, &piece);
        if (piece.len) reason = stream(&st, piece.data, piece.len);
        if (reason >= 0) break;
        /* n_predict and a full context end the reply; neither is an error */
        if (r.gen_tokens == p->n_predict) reason = LMF_STOP_LENGTH;
        else if (lmf_session_pos(s) == lmf_session_n_ctx(s)) reason = LMF_STOP_CONTEXT;
        else if ((stt = lmf_session_eval(s, &next, 1, 0, &lg)) != LMF_OK) break;
    }
    if (!st.hb.hit && !st.cb_stop) {
        /* what the decoder still holds (an incomplete UTF-8 character) may complete a stop string */
        piece.len = 0;
        lmf_tokenizer_decoder_finish(dec, &piece);
        int last = piece.len ? stream(&st, piece.data, piece.len) : -1;
        if (last >= 0) reason = last;
        release(&st, st.hb.all.len);
    }
    if (reply) lmf_text_push(reply, st.hb.all.data ? st.hb.all.data : "", st.hb.released);
    r.gen_s = lmf_now() - t1;
    r.stop_reason = reason < 0 ? LMF_STOP_LENGTH : (lmf_stop_reason)reason;
    if (res) *res = r;
    lmf_tokenizer_decoder_free(dec);
    lmf_holdback_free(&st.hb);
    free(piece.data);
    free(logits);
    return stt;
}
