/* generate.c — lmf_generate (lmforge.h): evaluate a prompt, then sample, evaluate and decode token by token,
 * streaming final text to the caller; and the stop-string holdback behind the streaming (generate.h).
 *
 * One loop for every caller: the CLI's generate and chat write the pieces to stdout, the trainer's sample to its
 * sink, the server to a socket. The library never prints: text leaves only through the caller's callback. */
#include "model/generate.h"
#include "core/alloc.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <math.h>
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

const char *lmf_stop_reason_name(lmf_stop_reason r) {
    static const char *const names[] = {"stop token", "stop string", "length", "context full", "callback"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "unknown";
}

void lmf_holdback_free(lmf_holdback *h) {
    free(h->all.data);
    h->all = (lmf_text){0};
}

void lmf_detok_init(lmf_detok *d, const lmf_tokenizer *tok, const char *const *stops, int n_stops) {
    *d = (lmf_detok){.hb = {.stops = stops, .n_stops = n_stops}};
    d->dec = lmf_tokenizer_decoder_create(tok, LMF_DECODE_SKIP_SPECIAL);
}

/* Pushes d->piece through the holdback and hands out what became final. */
static int detok_release(lmf_detok *d, const char **text, size_t *len) {
    size_t from = d->hb.released, safe = from;
    int hit = d->piece.len ? lmf_holdback_push(&d->hb, d->piece.data, d->piece.len, &safe) : 0;
    *text = d->hb.all.data ? d->hb.all.data + from : "";
    *len = safe - from;
    d->hb.released = safe;
    if (hit) d->done = 1;
    return hit;
}

int lmf_detok_push(lmf_detok *d, int32_t id, const char **text, size_t *len) {
    *text = "", *len = 0;
    if (d->done) return d->hb.hit;
    d->piece.len = 0;
    /* an id the tokenizer lacks (a model vocabulary larger than it) decodes to nothing */
    (void)lmf_tokenizer_decoder_feed(d->dec, &id, 1, &d->piece);
    return detok_release(d, text, len);
}

int lmf_detok_finish(lmf_detok *d, const char **text, size_t *len) {
    *text = "", *len = 0;
    if (d->done) return d->hb.hit;
    d->piece.len = 0;
    lmf_tokenizer_decoder_finish(d->dec, &d->piece);
    size_t from = d->hb.released;
    int hit = detok_release(d, text, len);
    /* the end: the tail kept back for a stop string that can no longer come is final too */
    *text = d->hb.all.data ? d->hb.all.data + from : "";
    *len = d->hb.all.len - from;
    d->hb.released = d->hb.all.len;
    d->done = 1;
    return hit;
}

void lmf_detok_free(lmf_detok *d) {
    lmf_tokenizer_decoder_free(d->dec);
    lmf_holdback_free(&d->hb);
    free(d->piece.data);
    *d = (lmf_detok){0};
}

/* ---- generation ----------------------------------------------------------------------------------------------- */

typedef struct {
    lmf_text_cb cb;
    void *ctx;
    lmf_text *reply;
    int cb_stop; /* the callback asked to stop: nothing more is released */
} emitter;

static void emit(emitter *e, const char *text, size_t len) {
    if (e->cb_stop || !len) return;
    if (e->reply) lmf_text_push(e->reply, text, len);
    if (e->cb && e->cb(e->ctx, text, len)) e->cb_stop = 1;
}

lmf_status lmf_generate(lmf_session *s, lmf_sampler *smp, lmf_ids *hist, size_t n_new, const lmf_generate_params *p,
                        lmf_text *reply, lmf_generate_result *res) {
    lmf_generate_result r = {.stop_reason = LMF_STOP_LENGTH};
    if (res) *res = r;
    const lmf_weights *w = lmf_session_weights(s);
    const lmf_tokenizer *tok = p->tok ? p->tok : lmf_weights_tokenizer(w);
    if (!tok) return lmf_fail(LMF_ERR_ARG, "lmf_generate: no tokenizer (the model carries none; pass params.tok)");
    if (p->n_predict < 0) return lmf_fail(LMF_ERR_ARG, "lmf_generate: n_predict %d must be >= 0", p->n_predict);
    if (p->n_logprobs < 0 || p->n_logprobs > LMF_LOGPROBS_MAX)
        return lmf_fail(LMF_ERR_ARG, "lmf_generate: n_logprobs %d must be in [0, %d]", p->n_logprobs, LMF_LOGPROBS_MAX);
    if (p->n_stops < 0 || p->n_stop_ids < 0 || (p->n_stops && !p->stops) || (p->n_stop_ids && !p->stop_ids))
        return lmf_fail(LMF_ERR_ARG, "lmf_generate: bad stop lists (%d strings, %d ids)", p->n_stops, p->n_stop_ids);
    int V = lmf_weights_config(w)->vocab_size;
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias_ids[i] < 0 || p->bias_ids[i] >= V || isnan(p->bias[i]))
            return lmf_fail(LMF_ERR_ARG, "lmf_generate: logit bias %d: token %d is outside the vocabulary [0, %d) or "
                            "the bias is NaN", i, p->bias_ids[i], V);
    size_t pos = (size_t)lmf_session_pos(s);
    if (n_new > hist->len || (n_new ? pos != hist->len - n_new : pos != hist->len || pos == 0))
        return lmf_fail(LMF_ERR_ARG, "lmf_generate: the session holds %zu tokens, but the history has %zu of which %zu "
                        "are new (it must hold the rest; with none new, all and at least one)", pos, hist->len, n_new);
    if (n_new == 0) {
        /* the last token again, for its logits (the session keeps none between calls); a session whose windowed
         * layers cannot go back starts over (lmf_session_rewind) */
        lmf_session_rewind(s, (int)pos - 1);
        n_new = hist->len - (size_t)lmf_session_pos(s);
    }
    int32_t stop_ids[4];
    int n_stop_ids = lmf_weights_stop_tokens(w, stop_ids);
    /* constrained decoding: the stop tokens the grammar lets through once complete are the model's and the caller's */
    lmf_grammar_vocab *gv = NULL;
    lmf_grammar_state *gs = NULL;
    int32_t *ends = NULL;
    int n_ends = 0;
    if (p->grammar) {
        lmf_grammar_vocab_create(tok, &gv);
        gs = lmf_grammar_state_create(p->grammar);
        ends = lmf_xmalloc(sizeof(int32_t) * (size_t)(n_stop_ids + p->n_stop_ids + 1));
        for (int k = 0; k < n_stop_ids; k++) ends[n_ends++] = stop_ids[k];
        for (int k = 0; k < p->n_stop_ids; k++) ends[n_ends++] = p->stop_ids[k];
    }

    const float *lg = NULL;
    double t0 = lmf_now();
    lmf_status stt = lmf_session_eval(s, hist->data + hist->len - n_new, (int)n_new, 0, &lg);
    double t1 = lmf_now();
    r.prompt_s = t1 - t0, r.prompt_tokens = (int)n_new;
    if (stt != LMF_OK) {
        if (res) *res = r;
        return stt;
    }
    float *logits = lmf_xmalloc(sizeof(float) * (size_t)V);
    lmf_detok dt;
    lmf_detok_init(&dt, tok, p->stops, p->n_stops);
    emitter em = {p->on_text, p->ctx, reply, 0};
    const char *text;
    size_t len;
    int reason = p->n_predict == 0 ? (int)LMF_STOP_LENGTH : -1, tok_stop = 0;
    while (reason < 0) {
        /* NaN or Inf logits (weights holding them, or overflowing float) would sample garbage or nothing at all: an
         * error, not an empty reply. A pass over V floats per token is noise next to the forward. */
        int bad = -1;
        for (int i = 0; i < V && bad < 0; i++)
            if (!isfinite(lg[i])) bad = i;
        if (bad >= 0) {
            stt = lmf_fail(LMF_ERR_FORMAT, "the %s model's logits are not finite (logit %d is %g after %zu tokens): its "
                           "weights hold NaN or Inf, or overflow float; check the model file", w->source, bad,
                           (double)lg[bad], hist->len);
            break;
        }
        memcpy(logits, lg, sizeof(float) * (size_t)V); /* the sampler works in place; lg is the session's */
        for (int i = 0; i < p->n_bias; i++) logits[p->bias_ids[i]] += p->bias[i];
        if (gs && !lmf_grammar_mask(gs, gv, ends, n_ends, logits)) {
            reason = LMF_STOP_TOKEN; /* nothing may follow (nesting past the grammar's depth) */
            break;
        }
        int32_t next = lmf_sampler_sample(smp, logits, hist->data, (int)hist->len);
        int is_stop = 0;
        for (int k = 0; k < n_stop_ids; k++) is_stop |= next == stop_ids[k];
        for (int k = 0; k < p->n_stop_ids; k++) is_stop |= next == p->stop_ids[k];
        if (is_stop) {
            reason = LMF_STOP_TOKEN;
            break;
        }
        if (gs) lmf_grammar_accept(gs, gv, next);
        lmf_ids_push(hist, &next, 1);
        r.gen_tokens++;
        if (p->on_token) {
            lmf_token_logprob top[LMF_LOGPROBS_MAX];
            int k = p->n_logprobs < V ? p->n_logprobs : V;
            lmf_token_info ti = {next, lmf_logprobs(lg, V, next, k, top), top, k};
            tok_stop = p->on_token(p->ctx, &ti) != 0; /* after this token: its text is still released */
        }
        int hit = lmf_detok_push(&dt, next, &text, &len);
        emit(&em, text, len);
        if (em.cb_stop) reason = LMF_STOP_CALLBACK;
        else if (hit) reason = LMF_STOP_STRING;
        else if (tok_stop) reason = LMF_STOP_CALLBACK;
        if (reason >= 0) break;
        /* n_predict and a full context end the reply; neither is an error */
        if (r.gen_tokens == p->n_predict) reason = LMF_STOP_LENGTH;
        else if (lmf_session_pos(s) == lmf_session_n_ctx(s)) reason = LMF_STOP_CONTEXT;
        else if ((stt = lmf_session_eval(s, &next, 1, 0, &lg)) != LMF_OK) break;
    }
    if (!em.cb_stop) {
        /* what the decoder still holds (an incomplete UTF-8 character) may complete a stop string */
        int hit = lmf_detok_finish(&dt, &text, &len);
        emit(&em, text, len);
        if (em.cb_stop) reason = LMF_STOP_CALLBACK;
        else if (hit) reason = LMF_STOP_STRING;
    }
    r.gen_s = lmf_now() - t1;
    r.stop_reason = reason < 0 ? LMF_STOP_LENGTH : (lmf_stop_reason)reason;
    if (res) *res = r;
    lmf_detok_free(&dt);
    lmf_grammar_state_free(gs);
    lmf_grammar_vocab_free(gv);
    LMF_FREE_ALL(logits, ends);
    return stt;
}
