/* http.c — libmicrohttpd glue: routing, limits, authentication, and the hand-off between the HTTP threads and the
 * engine thread (see http.h).
 *
 * A request (struct req) lives from its first header callback to the last of two releases: MHD's "request
 * completed" notification and, for a stream, the response's free callback (whichever comes last frees it). Its
 * engine request is cancelled first when it has not finished, and lmf_engine_cancel guarantees no callback follows,
 * so the engine never touches freed memory.
 *
 * Suspension: a non-streaming request suspends its connection right after submitting and is resumed by the
 * engine's last event; a stream's content reader suspends when it has nothing to send and is resumed by the next
 * event. The decision to suspend and the engine's check whether to resume both happen under the request's mutex, so
 * no wake-up is lost. MHD does not time out or notice disconnects of suspended connections: a stream is resumed at
 * every token, so a vanished client is found within one token (its write fails); for a whole reply the engine's
 * callback peeks at the socket at every token (peer_closed). */
#include "serve/http.h"

#include "core/progress.h"
#include "core/status.h"
#include "serve/metrics.h"
#include "serve/webui.h"
#include "tokenizer/tokenizer.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { STATE_LOADING = 0, STATE_READY = 1, STATE_STOPPING = 2 };

struct lmf_http {
    lmf_http_config cfg;
    char *bearer; /* "Bearer <key>", or NULL: no authentication */
    struct MHD_Daemon *d;
    int port;
    /* engine and model: read-locked around submit / cancel / stats, write-locked to set and to free the engine, so
     * no request calls into an engine being freed */
    pthread_rwlock_t lock;
    lmf_engine *engine;
    const lmf_openai_model *model;
    atomic_int state;
    atomic_int starting; /* inside MHD_start_daemon: MHD's messages are logged */
    atomic_int suspended; /* connections suspended now: stop waits for none before MHD_stop_daemon */
    atomic_uint_fast64_t counter;
    uint64_t salt; /* random at start: ids and default seeds differ between runs */
    long started;
    lmf_metrics metrics;
};

lmf_http_config lmf_http_defaults(void) {
    return (lmf_http_config){.host = "127.0.0.1", .port = 8080, .max_body = 1 << 20, .max_header = 32 << 10,
                             .max_connections = 512, .timeout_s = 60, .threads = 2};
}

/* splitmix64: request ids and default seeds from a counter and the start-up salt */
static uint64_t next_random(lmf_http *h) {
    uint64_t z = h->salt + 0x9E3779B97F4A7C15ull * (atomic_fetch_add(&h->counter, 1) + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- requests -------------------------------------------------------------------------------------------------- */

typedef enum {
    ROUTE_NONE,
    ROUTE_WEBUI,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_MODELS,
    ROUTE_MODEL,
    ROUTE_CHAT,
    ROUTE_COMPLETION,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
} route;

/* An engine event copied for the HTTP thread: its text is in req.evtext at text_off, its alternatives in top. */
typedef struct {
    lmf_engine_event ev;
    size_t text_off;
    lmf_engine_logprob top[LMF_ENGINE_TOP_MAX];
} queued;

typedef struct {
    queued *evs;
    size_t n, cap;
    lmf_text text;
} event_queue;

typedef struct {
    lmf_http *h;
    struct MHD_Connection *mc;
    route route;
    char method[8], url[160];
    int refs; /* MHD's request + the stream's response: touched on the connection's HTTP thread only */
    int responded, status;
    double t0;
    lmf_text body;
    /* a generation */
    lmf_openai_request q;
    lmf_openai_reply reply;
    uint64_t id;
    int submitted, waiting, ended, client_left;
    int fd; /* the connection's socket: the engine thread peeks at it while the connection is suspended */
    lmf_openai_error error; /* the engine's ERROR, once drained */
    int failed;
    lmf_engine_event done; /* DONE's numbers, for the log */
    lmf_text out;          /* SSE bytes not yet handed to MHD, from out_pos */
    size_t out_pos;
    /* shared with the engine thread, under mu */
    pthread_mutex_t mu;
    event_queue queue;
    char errmsg[256];
    int finished;  /* the engine sent its last event (DONE or ERROR) */
    int gone;      /* the client left: the callback asks the engine to cancel */
    int suspended; /* the connection is suspended and waits for the engine */
    int hung_up;   /* the client closed while its whole reply was being generated */
} req;

static void log_line(lmf_http *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(lmf_http *h, const char *fmt, ...) {
    if (!h->cfg.sink || !h->cfg.sink->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    h->cfg.sink->log(h->cfg.sink->ctx, LMF_LOG_INFO, line);
}

static req *req_new(lmf_http *h, struct MHD_Connection *mc, const char *method, const char *url) {
    req *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "lmforge: out of memory (%zu bytes)\n", sizeof *r);
        abort();
    }
    r->h = h, r->mc = mc, r->refs = 1, r->t0 = lmf_now();
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->url, sizeof r->url, "%s", url);
    pthread_mutex_init(&r->mu, NULL);
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = info ? info->connect_fd : -1;
    return r;
}

static void queue_free(event_queue *q) {
    free(q->evs);
    free(q->text.data);
    memset(q, 0, sizeof *q);
}

/* Drops one reference; the last one cancels the engine request if it still runs, logs and frees. */
static void req_release(req *r) {
    if (--r->refs > 0) return;
    lmf_http *h = r->h;
    if (r->submitted) {
        pthread_mutex_lock(&r->mu);
        r->gone = 1;
        int finished = r->finished;
        pthread_mutex_unlock(&r->mu);
        if (!finished) {
            pthread_rwlock_rdlock(&h->lock);
            if (h->engine) lmf_engine_cancel(h->engine, r->id); /* no callback runs once it returns */
            pthread_rwlock_unlock(&h->lock);
        }
        /* a callback that set `finished` may still hold the mutex for its last lines: wait it out */
        pthread_mutex_lock(&r->mu);
        pthread_mutex_unlock(&r->mu);
    }
    if (r->hung_up && !r->responded) { /* MHD saw the close itself on resuming, before our handler could answer */
        r->responded = 1, r->status = 499;
        lmf_metrics_count(&h->metrics, 499);
    }
    double dt = lmf_now() - r->t0;
    if (r->submitted && r->done.kind == LMF_ENGINE_DONE)
        log_line(h, "%s %s %d %.3fs prompt %d (cached %d) gen %d, ttft %.3fs, %.1f tokens/s%s", r->method, r->url,
                 r->status, dt, r->done.prompt_tokens, r->done.cached_tokens, r->done.gen_tokens, r->done.ttft_s,
                 r->done.gen_s > 0 ? r->done.gen_tokens / r->done.gen_s : 0.0, r->client_left ? " (client left)" : "");
    else if (r->responded)
        log_line(h, "%s %s %d %.3fs%s", r->method, r->url, r->status, dt, r->client_left ? " (client left)" : "");
    lmf_openai_request_free(&r->q);
    lmf_openai_reply_free(&r->reply);
    queue_free(&r->queue);
    free(r->body.data);
    free(r->out.data);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- the engine's side: runs on the engine thread, copies and wakes ---------------------------------------------- */

/* Whether the peer has closed its end (or reset): a zero-timeout poll, cheap next to a decode step. MHD watches no
 * suspended connection, so a client waiting for a whole reply would otherwise be found gone only after it. As Go's
 * net/http does, a half-close counts as leaving; HTTP clients do not half-close while they wait for a reply. */
static int peer_closed(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int on_event(void *ctx, const lmf_engine_event *ev) {
    req *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->gone) {
        pthread_mutex_unlock(&r->mu);
        return 1;
    }
    /* suspended: MHD keeps the socket open until the connection is resumed, so the fd is still this client's */
    if (!r->q.stream && r->suspended && ev->kind == LMF_ENGINE_TOKEN && peer_closed(r->fd)) {
        r->hung_up = r->gone = r->finished = 1; /* no event follows: the engine cancels on our non-zero return */
        r->suspended = 0;
        atomic_fetch_sub(&r->h->suspended, 1);
        MHD_resume_connection(r->mc);
        pthread_mutex_unlock(&r->mu);
        return 1;
    }
    event_queue *q = &r->queue;
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 16;
        q->evs = realloc(q->evs, q->cap * sizeof *q->evs);
        if (!q->evs) {
            fprintf(stderr, "lmforge: out of memory (%zu bytes)\n", q->cap * sizeof *q->evs);
            abort();
        }
    }
    queued *e = &q->evs[q->n++];
    e->ev = *ev;
    e->ev.text = NULL, e->ev.top = NULL, e->ev.message = NULL;
    e->text_off = q->text.len;
    if (ev->len) lmf_text_push(&q->text, ev->text, ev->len);
    e->ev.n_top = ev->kind == LMF_ENGINE_TOKEN && ev->top ? ev->n_top : 0;
    if (e->ev.n_top > LMF_ENGINE_TOP_MAX) e->ev.n_top = LMF_ENGINE_TOP_MAX;
    if (e->ev.n_top) memcpy(e->top, ev->top, (size_t)e->ev.n_top * sizeof *e->top);
    if (ev->kind == LMF_ENGINE_ERROR) snprintf(r->errmsg, sizeof r->errmsg, "%s", ev->message ? ev->message : "");
    if (ev->kind != LMF_ENGINE_TOKEN) r->finished = 1;
    /* a stream wants every token; a whole reply only the end */
    if (r->suspended && (r->q.stream || r->finished)) {
        r->suspended = 0;
        atomic_fetch_sub(&r->h->suspended, 1);
        MHD_resume_connection(r->mc);
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* Suspends the connection unless events are waiting (or the request finished, for a whole reply). Returns 1 when
 * it suspended. Called from the access handler or the content reader, as MHD requires. */
static int suspend_unless_ready(req *r) {
    pthread_mutex_lock(&r->mu);
    int ready = r->q.stream ? r->queue.n > 0 || r->finished : r->finished;
    if (!ready) {
        r->suspended = 1;
        atomic_fetch_add(&r->h->suspended, 1);
        MHD_suspend_connection(r->mc);
    }
    pthread_mutex_unlock(&r->mu);
    return !ready;
}

/* Turns the queued events into the reply (stream: SSE bytes in r->out). HTTP thread. */
static void drain(req *r) {
    pthread_mutex_lock(&r->mu);
    event_queue q = r->queue;
    memset(&r->queue, 0, sizeof r->queue);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < q.n && !r->ended; i++) {
        lmf_engine_event ev = q.evs[i].ev;
        ev.text = q.text.data ? q.text.data + q.evs[i].text_off : "";
        ev.top = q.evs[i].top;
        if (ev.kind == LMF_ENGINE_ERROR) {
            pthread_mutex_lock(&r->mu);
            int stopping = atomic_load(&r->h->state) == STATE_STOPPING;
            lmf_openai_error_set(&r->error, stopping ? 503 : 500, NULL, NULL, "%s", r->errmsg);
            pthread_mutex_unlock(&r->mu);
            r->failed = r->ended = 1;
            if (r->q.stream) lmf_openai_reply_error(&r->reply, &r->error, &r->out);
            continue;
        }
        lmf_openai_reply_event(&r->reply, &ev, &r->out);
        if (ev.kind == LMF_ENGINE_DONE) {
            r->ended = 1;
            r->done = ev;
            r->done.text = NULL, r->done.top = NULL;
            lmf_metrics_done(&r->h->metrics, &ev);
        }
    }
    queue_free(&q);
}

/* ---- responses ------------------------------------------------------------------------------------------------- */

static enum MHD_Result send_response(req *r, int status, struct MHD_Response *resp) {
    r->responded = 1, r->status = status;
    lmf_metrics_count(&r->h->metrics, status);
    enum MHD_Result ok = MHD_queue_response(r->mc, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* body: malloc'd, handed to MHD */
static enum MHD_Result respond(req *r, int status, const char *ctype, char *body) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    return send_response(r, status, resp);
}

static enum MHD_Result respond_json(req *r, int status, char *json) {
    return respond(r, status, "application/json", json);
}

static enum MHD_Result respond_error(req *r, const lmf_openai_error *e) {
    struct MHD_Response *resp;
    char *json = lmf_openai_error_json(e);
    resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (e->status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (e->status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->route == ROUTE_CHAT || r->route == ROUTE_COMPLETION || r->route == ROUTE_TOKENIZE ||
                                        r->route == ROUTE_DETOKENIZE
                                    ? "POST"
                                    : "GET");
    return send_response(r, e->status, resp);
}

static enum MHD_Result fail(req *r, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result fail(req *r, int status, const char *param, const char *code, const char *fmt, ...) {
    lmf_openai_error e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lmf_openai_error_set(&e, status, param, code, "%s", msg);
    return respond_error(r, &e);
}

/* ---- streams --------------------------------------------------------------------------------------------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    req *r = cls;
    for (;;) {
        if (r->out_pos < r->out.len) {
            size_t n = r->out.len - r->out_pos < max ? r->out.len - r->out_pos : max;
            memcpy(buf, r->out.data + r->out_pos, n);
            r->out_pos += n;
            if (r->out_pos == r->out.len) r->out.len = r->out_pos = 0;
            return (ssize_t)n;
        }
        if (r->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (suspend_unless_ready(r)) return 0; /* resumed by the next event */
        drain(r);
    }
}

static void stream_free(void *cls) { req_release(cls); }

/* ---- endpoints ------------------------------------------------------------------------------------------------- */

static enum MHD_Result not_ready(req *r) {
    int loading = atomic_load(&r->h->state) == STATE_LOADING;
    return fail(r, 503, NULL, loading ? "model_loading" : "shutting_down", "%s",
                loading ? "the model is loading: try again shortly" : "the server is shutting down");
}

/* A whole reply once the engine is done with it. */
static enum MHD_Result finish_waiting(req *r) {
    if (r->hung_up) /* nobody will read it; nginx's code for it, for the log and the metrics */
        return fail(r, 499, NULL, "client_closed", "the client closed the connection before the reply was ready");
    drain(r);
    if (r->failed) return respond_error(r, &r->error);
    return respond_json(r, 200, lmf_openai_reply_json(&r->reply));
}

static enum MHD_Result generate(req *r) {
    lmf_http *h = r->h;
    pthread_rwlock_rdlock(&h->lock);
    if (!h->engine || atomic_load(&h->state) != STATE_READY) {
        pthread_rwlock_unlock(&h->lock);
        return not_ready(r);
    }
    lmf_openai_kind kind = r->route == ROUTE_CHAT ? LMF_OPENAI_CHAT : LMF_OPENAI_COMPLETION;
    lmf_openai_error err;
    if (lmf_openai_parse(h->model, kind, r->body.data ? r->body.data : "", r->body.len, &r->q, &err)) {
        pthread_rwlock_unlock(&h->lock);
        return respond_error(r, &err);
    }
    if (!r->q.seeded) r->q.req.sampling.seed = next_random(h);
    r->q.req.cb = on_event;
    r->q.req.ctx = r;
    char suffix[40];
    snprintf(suffix, sizeof suffix, "%016llx", (unsigned long long)next_random(h));
    lmf_openai_reply_init(&r->reply, h->model, &r->q, suffix, (long)time(NULL));
    lmf_status st = lmf_engine_submit(h->engine, &r->q.req, &r->id);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", st == LMF_OK ? "" : lmf_last_error());
    pthread_rwlock_unlock(&h->lock);
    if (st == LMF_ERR_BUSY) return fail(r, 429, NULL, "queue_full", "the server is busy (%s): try again later", msg);
    if (st == LMF_ERR_ARG)
        return fail(r, 400, kind == LMF_OPENAI_CHAT ? "messages" : "prompt", "invalid_value", "%s", msg);
    if (st != LMF_OK) return fail(r, 500, NULL, NULL, "the engine refused the request: %s", msg);
    r->submitted = 1;
    r->q.req.grammar = NULL; /* the engine's now */
    if (r->q.stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, stream_read, r,
                                                                      stream_free);
        r->refs++;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        return send_response(r, 200, resp);
    }
    r->waiting = 1;
    if (suspend_unless_ready(r)) return MHD_YES; /* the last event resumes us: on_request calls finish_waiting */
    return finish_waiting(r);
}

static enum MHD_Result with_model(req *r) {
    lmf_http *h = r->h;
    pthread_rwlock_rdlock(&h->lock);
    const lmf_openai_model *m = atomic_load(&h->state) == STATE_READY ? h->model : NULL;
    enum MHD_Result res;
    char *json = NULL;
    lmf_openai_error err;
    int rc = 0;
    if (!m) {
        pthread_rwlock_unlock(&h->lock);
        return not_ready(r);
    }
    const char *body = r->body.data ? r->body.data : "";
    switch (r->route) {
    case ROUTE_MODELS: json = lmf_openai_models_json(m, h->started); break;
    case ROUTE_MODEL:
        if (strcmp(r->url + strlen("/v1/models/"), m->id))
            rc = lmf_openai_error_set(&err, 404, "model", "model_not_found", "the model '%.128s' does not exist",
                                      r->url + strlen("/v1/models/"));
        else json = lmf_openai_model_json(m, h->started);
        break;
    case ROUTE_TOKENIZE: rc = lmf_openai_tokenize(m, body, r->body.len, &json, &err); break;
    default: rc = lmf_openai_detokenize(m, body, r->body.len, &json, &err); break;
    }
    pthread_rwlock_unlock(&h->lock);
    res = rc ? respond_error(r, &err) : respond_json(r, 200, json);
    return res;
}

static enum MHD_Result health(req *r) {
    int state = atomic_load(&r->h->state);
    const char *s = state == STATE_READY ? "ok" : state == STATE_LOADING ? "loading" : "stopping";
    char body[48];
    snprintf(body, sizeof body, "{\"status\":\"%s\"}", s);
    return respond_json(r, state == STATE_READY ? 200 : 503, strdup(body));
}

static enum MHD_Result metrics(req *r) {
    lmf_http *h = r->h;
    lmf_engine_stats st;
    pthread_rwlock_rdlock(&h->lock);
    int have = h->engine != NULL;
    if (have) lmf_engine_get_stats(h->engine, &st);
    pthread_rwlock_unlock(&h->lock);
    lmf_text t = {0};
    lmf_metrics_render(&h->metrics, have ? &st : NULL, &t);
    return respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", t.data ? t.data : strdup(""));
}

static enum MHD_Result webui(req *r) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(lmf_webui_html_len, (void *)lmf_webui_html, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    return send_response(r, 200, resp);
}

static enum MHD_Result dispatch(req *r) {
    switch (r->route) {
    case ROUTE_WEBUI: return webui(r);
    case ROUTE_HEALTH: return health(r);
    case ROUTE_METRICS: return metrics(r);
    case ROUTE_CHAT:
    case ROUTE_COMPLETION: return generate(r);
    default: return with_model(r);
    }
}

/* ---- the access handler ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *path;
    const char *method;
    route route;
    int prefix; /* path is a prefix ("/v1/models/" + id) */
    int open;   /* no API key needed: the page itself and the load balancer's probe */
} route_entry;

static const route_entry ROUTES[] = {
    {"/", "GET", ROUTE_WEBUI, 0, 1},
    {"/health", "GET", ROUTE_HEALTH, 0, 1},
    {"/metrics", "GET", ROUTE_METRICS, 0, 0},
    {"/v1/models", "GET", ROUTE_MODELS, 0, 0},
    {"/v1/models/", "GET", ROUTE_MODEL, 1, 0},
    {"/v1/chat/completions", "POST", ROUTE_CHAT, 0, 0},
    {"/v1/completions", "POST", ROUTE_COMPLETION, 0, 0},
    {"/tokenize", "POST", ROUTE_TOKENIZE, 0, 0},
    {"/detokenize", "POST", ROUTE_DETOKENIZE, 0, 0},
};

/* Constant-time in the key's length: how much of a guess matches must not show in the time of the answer. */
static int auth_ok(const lmf_http *h, struct MHD_Connection *mc) {
    if (!h->bearer) return 1;
    const char *got = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t n = strlen(h->bearer), m = got ? strlen(got) : 0;
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(h->bearer[i] ^ (i < m ? got[i] : 0));
    return diff == 0;
}

/* The first call of a request: the headers are in. Routing, authentication and the declared body size are checked
 * before any body byte is read. */
static enum MHD_Result begin(req *r, const char *url, const char *method) {
    const route_entry *match = NULL;
    int path_known = 0;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        const route_entry *e = &ROUTES[i];
        int hit = e->prefix ? !strncmp(url, e->path, strlen(e->path)) && url[strlen(e->path)] : !strcmp(url, e->path);
        if (!hit) continue;
        path_known = 1;
        r->route = e->route;
        if (!strcmp(method, e->method)) match = e;
    }
    if (!path_known) {
        r->route = ROUTE_NONE;
        return fail(r, 404, NULL, "unknown_url", "no endpoint %.100s %.100s", method, url);
    }
    if (!match) return fail(r, 405, NULL, "method_not_allowed", "%.100s does not take %.16s", url, method);
    if (!match->open && !auth_ok(r->h, r->mc))
        return fail(r, 401, NULL, "invalid_api_key",
                    "missing or wrong API key: send the header \"Authorization: Bearer <key>\"");
    const char *cl = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > r->h->cfg.max_body)
        return fail(r, 413, NULL, "request_too_large", "the body has %.24s bytes; this server takes at most %zu", cl,
                    r->h->cfg.max_body);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    lmf_http *h = cls;
    req *r = *con_cls;
    if (!r) {
        *con_cls = r = req_new(h, mc, method, url);
        return begin(r, url, method);
    }
    if (r->responded) { /* refused before the body arrived: MHD discards it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->body.len + *upload_size > h->cfg.max_body) {
            *upload_size = 0;
            return fail(r, 413, NULL, "request_too_large", "the body exceeds %zu bytes", h->cfg.max_body);
        }
        lmf_text_push(&r->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->waiting) return finish_waiting(r); /* resumed: the reply is complete */
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) r->client_left = 1;
    req_release(r);
}

/* MHD's own messages: while starting (why a bind failed) only. Once serving, what it reports is clients breaking
 * off or misbehaving, which every hostile or flaky client would otherwise turn into a log line of ours. */
/* The kernel's send buffer of a connection, bounded: by default it grows to 4 MiB (tcp_wmem), so a client that stops
 * reading would hold megabytes of kernel memory per connection and, an SSE stream being small, never make a write
 * block, so --timeout would never see it stall. 128 KiB (the kernel doubles it) holds hundreds of stream events. */
#define SEND_BUFFER (128 << 10)

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code) {
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    int size = SEND_BUFFER;
    if (info) setsockopt(info->connect_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap) {
    lmf_http *h = cls;
    if (!h->starting || !h->cfg.sink || !h->cfg.sink->log) return;
    char line[512];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    while (n > 0 && n < (int)sizeof line && line[n - 1] == '\n') line[--n] = 0; /* MHD ends its messages in \n */
    h->cfg.sink->log(h->cfg.sink->ctx, LMF_LOG_WARN, line);
}

/* ---- life ------------------------------------------------------------------------------------------------------ */

static int addr_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

int lmf_http_host_is_loopback(const char *host) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return 0;
    int all = 1;
    for (struct addrinfo *a = res; a; a = a->ai_next) all &= addr_is_loopback(a->ai_addr);
    freeaddrinfo(res);
    return all;
}

lmf_status lmf_http_start(const lmf_http_config *cfg, lmf_http **out) {
    *out = NULL;
    LMF_REQUIRE_ARG(cfg->port >= 0 && cfg->port <= 65535, "--port: %d is not a port (0..65535)", cfg->port);
    LMF_REQUIRE_ARG(cfg->max_body > 0, "--max-body: must be at least 1 byte");
    LMF_REQUIRE_ARG(cfg->max_header >= 1024, "--max-header: must be at least 1024 bytes, got %zu", cfg->max_header);
    LMF_REQUIRE_ARG(cfg->max_connections >= 1, "--max-connections: must be at least 1, got %d", cfg->max_connections);
    LMF_REQUIRE_ARG(cfg->timeout_s >= 1, "--timeout: must be at least 1 second, got %d", cfg->timeout_s);
    LMF_REQUIRE_ARG(cfg->threads >= 1 && cfg->threads <= 64, "--http-threads: expected 1..64, got %d", cfg->threads);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host, port, &hints, &res);
    if (gai != 0) return lmf_fail(LMF_ERR_ARG, "--host %s: %s", cfg->host, gai_strerror(gai));
    lmf_http *h = calloc(1, sizeof *h);
    h->cfg = *cfg;
    if (cfg->api_key && *cfg->api_key) {
        h->bearer = malloc(strlen(cfg->api_key) + 8);
        sprintf(h->bearer, "Bearer %s", cfg->api_key);
    }
    pthread_rwlock_init(&h->lock, NULL);
    lmf_metrics_init(&h->metrics);
    if (getrandom(&h->salt, sizeof h->salt, 0) != sizeof h->salt) h->salt = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    h->started = (long)time(NULL);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->starting = 1;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, h, /* first, so that it catches everything */
                            MHD_OPTION_SOCK_ADDR, res->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->max_header,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            /* MHD's default SO_REUSEADDR only: a restart binds at once, but a second server on a port
                             * in use fails (LISTENING_ADDRESS_REUSE 1 set SO_REUSEPORT on Linux, and the kernel shared
                             * the connections between both servers) */
                            MHD_OPTION_END);
    h->starting = 0;
    freeaddrinfo(res);
    if (!h->d) {
        lmf_http_stop(h);
        return lmf_fail(LMF_ERR_IO, "cannot listen on %s:%d (address in use, or not an address of this machine?)",
                        cfg->host, cfg->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->port;
    *out = h;
    return LMF_OK;
}

int lmf_http_port(const lmf_http *h) { return h->port; }

void lmf_http_set_model(lmf_http *h, lmf_engine *e, const lmf_openai_model *m) {
    pthread_rwlock_wrlock(&h->lock);
    h->engine = e;
    h->model = m;
    atomic_store(&h->state, STATE_READY);
    pthread_rwlock_unlock(&h->lock);
}

void lmf_http_stop(lmf_http *h) {
    if (!h) return;
    atomic_store(&h->state, STATE_STOPPING); /* new generations get a 503 from here on */
    MHD_socket ls = h->d ? MHD_quiesce_daemon(h->d) : MHD_INVALID_SOCKET;
    /* Freeing the engine sends every waiting or running request its ERROR, which resumes its connection; under the
     * write lock so no cancel or submit runs into it meanwhile. */
    pthread_rwlock_wrlock(&h->lock);
    if (h->engine) lmf_engine_free(h->engine);
    h->engine = NULL;
    pthread_rwlock_unlock(&h->lock);
    /* MHD must not be stopped with suspended connections: wait (briefly) until the resumed ones have run */
    for (int i = 0; i < 500 && atomic_load(&h->suspended) > 0; i++) usleep(10000);
    if (h->d) MHD_stop_daemon(h->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    lmf_metrics_destroy(&h->metrics);
    pthread_rwlock_destroy(&h->lock);
    free(h->bearer);
    free(h);
}
