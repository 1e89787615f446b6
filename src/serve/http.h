/* http.h — the HTTP front of `lmforge serve`: libmicrohttpd, the OpenAI endpoints, /health, /metrics, /tokenize,
 * /detokenize and the web page, over one engine (engine.h).
 *
 * Threads. libmicrohttpd runs its own polling thread(s) (epoll); every request is handled there and never blocks:
 * a generation is submitted to the engine and its connection suspended. The engine's callbacks (engine thread)
 * only copy the event into the request's queue under the request's mutex and resume the connection; the HTTP
 * thread turns the queue into JSON or SSE bytes. A client that goes away (closed socket, or an idle timeout while
 * the stream is blocked on a full socket) has its request cancelled in the engine before the request is freed.
 *
 * Life: start (listening; /health says "loading") -> set_model (ready) -> stop. The server can start before the
 * model is loaded so that load balancers see a loading server, not a refused port. */
#ifndef LMF_SERVE_HTTP_H
#define LMF_SERVE_HTTP_H

#include "lmforge.h"
#include "serve/engine.h"
#include "serve/openai.h"

#include <stddef.h>

typedef struct {
    const char *host;    /* numeric address or name to bind ["127.0.0.1"] */
    int port;            /* 0: any free port (lmf_http_port says which) [8080] */
    const char *api_key; /* requests must carry "Authorization: Bearer <key>"; NULL or "": no check */
    size_t max_body;     /* request body bytes at most; more is a 413 [1 MiB] */
    size_t max_header;   /* per-connection memory for the request line and headers; more is a 431 [32 KiB] */
    int max_connections; /* open connections at most; more are refused at accept [512] */
    int timeout_s;       /* a connection idle (nothing read or written) this long is closed [60] */
    int threads;         /* HTTP threads (each polls its share of the connections) [2] */
    const lmf_sink *sink; /* where the access log and errors go (log lines; NULL: silent). Called from the HTTP
                             threads: the callback must be thread-safe */
} lmf_http_config;
lmf_http_config lmf_http_defaults(void);

typedef struct lmf_http lmf_http;

/* Binds and starts serving: /health answers 503 {"status": "loading"} and every model endpoint 503 until
 * lmf_http_set_model. LMF_ERR_ARG for a host that does not resolve, LMF_ERR_IO when binding fails (port in use). */
lmf_status lmf_http_start(const lmf_http_config *cfg, lmf_http **out);
/* The port bound (useful with port 0). */
int lmf_http_port(const lmf_http *h);
/* Serves m (which must outlive the server) through e. The server takes e: lmf_http_stop frees it. */
void lmf_http_set_model(lmf_http *h, lmf_engine *e, const lmf_openai_model *m);
/* Stops accepting, ends every request (the engine's shutdown errors reach their clients), frees the engine and the
 * server. NULL is fine. */
void lmf_http_stop(lmf_http *h);

/* Whether a host (numeric or a name) resolves only to loopback addresses: binding elsewhere without an API key is
 * refused by `lmforge serve` unless --no-auth. */
int lmf_http_host_is_loopback(const char *host);

#endif
