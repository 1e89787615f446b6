/* cmd_serve.c — `lmforge serve`: a model behind the OpenAI API over HTTP (docs/serving.md). Parses the flags, binds
 * the port first (so /health answers "loading" while the model maps), loads the model, adapter and chat template,
 * starts the engine, and serves until SIGINT / SIGTERM. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/status.h"
#include "model/lora.h"
#include "serve/engine.h"
#include "serve/http.h"
#include "serve/openai.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *model, *model_name, *lora, *chat_format, *chat_kwargs, *chat_template, *reasoning_format, *kv_size;
    const char *api_key, *api_key_file;
    float lora_scale;
    int threads, no_auth;
    lmf_engine_config ecfg;
    lmf_http_config hcfg;
    int max_body, max_header;
} serve_opts;

/* Returns 1 on success, 0 on a bad flag (message printed), -1 for --help. */
static int parse(int argc, char **argv, serve_opts *o) {
    const cli_opt opts[] = {
        CLI_HEADING("model"),
        CLI_OPT("-m", "--model", CLI_STR, &o->model, "PATH",
                "GGUF file, Hugging Face folder or lmforge checkpoint (with a tokenizer)"),
        CLI_OPT(NULL, "--model-name", CLI_STR, &o->model_name, "NAME", "the model's id in /v1/models and replies",
                .def = "the file's basename"),
        CLI_OPT(NULL, "--lora", CLI_STR, &o->lora, "PATH",
                "apply a LoRA adapter without merging: a PEFT folder or a GGUF adapter"),
        CLI_OPT(NULL, "--lora-scale", CLI_FLOAT, &o->lora_scale, "S", "multiply the adapter's scale by S"),
        CLI_OPT(NULL, "--chat-format", CLI_STR, &o->chat_format, "F",
                "chatml, llama2 or llama3: a built-in renderer instead of the model's template",
                .def = "the model's template"),
        CLI_OPT(NULL, "--chat-template", CLI_STR, &o->chat_template, "FILE",
                "a Jinja chat template file instead of the model's", .def = "the model's template"),
        CLI_OPT(NULL, "--chat-template-kwargs", CLI_STR, &o->chat_kwargs, "JSON",
                "extra variables for the template, e.g. '{\"enable_thinking\": false}'"),
        CLI_OPT(NULL, "--reasoning-format", CLI_STR, &o->reasoning_format, "F",
                "deepseek: a reply's <think>...</think> goes to reasoning_content (templates that know <think>); "
                "none: it stays in the content", .def = "deepseek"),
        CLI_OPT("-t", "--threads", CLI_INT, &o->threads, "N", "compute threads", .def = "OMP_NUM_THREADS or all cores",
                .lo = 1),
        CLI_HEADING("engine"),
        CLI_OPT(NULL, "--parallel", CLI_INT, &o->ecfg.parallel, "N", "sequences running at once", .lo = 1),
        CLI_OPT(NULL, "--kv-size", CLI_STR, &o->kv_size, "N[MiB]", "KV cache: positions in all, or its size in MiB",
                .def = "parallel x 2048"),
        CLI_OPT(NULL, "--kv-lazy", CLI_BOOL, &o->ecfg.kv_lazy, NULL,
                "commit the KV cache's memory as sequences grow into it, not at start",
                .def = "committed before /health says ok"),
        CLI_OPT(NULL, "--kv-window-full", CLI_BOOL, &o->ecfg.kv_window_full, NULL,
                "sliding-window layers (Gemma 2 / 3, Mistral) keep every position, not only their window",
                .def = "their last window only"),
        CLI_OPT(NULL, "--cache-type", CLI_FN, &o->ecfg.kv_type, "T", CLI_CACHE_TYPE_HELP, .def = "f32",
                .fn = cli_kv_type),
        CLI_OPT("-c", "--ctx-size", CLI_INT, &o->ecfg.n_ctx, "N", "one sequence (prompt + reply) at most",
                .def = "the model's context, capped by the KV cache", .lo = 1),
        CLI_OPT(NULL, "--max-queue", CLI_INT, &o->ecfg.max_queue, "N",
                "requests waiting for a slot at most (0: none); more get 429"),
        CLI_OPT(NULL, "--chunk", CLI_INT, &o->ecfg.chunk, "N", "prompt tokens per prefill step", .lo = 1),
        CLI_HEADING("http"),
        CLI_OPT(NULL, "--host", CLI_STR, &o->hcfg.host, "ADDR", "address to bind"),
        CLI_OPT(NULL, "--port", CLI_INT, &o->hcfg.port, "N", "port; 0 picks a free one"),
        CLI_OPT(NULL, "--api-key", CLI_STR, &o->api_key, "KEY",
                "require \"Authorization: Bearer KEY\" (else --api-key-file, else $LMF_API_KEY)", .def = "none"),
        CLI_OPT(NULL, "--api-key-file", CLI_STR, &o->api_key_file, "F", "the key is F's first line"),
        CLI_OPT(NULL, "--no-auth", CLI_BOOL, &o->no_auth, NULL, "allow a non-loopback --host without a key"),
        CLI_OPT(NULL, "--max-body", CLI_INT, &o->max_body, "N", "request body bytes at most; more is a 413", .lo = 1),
        CLI_OPT(NULL, "--max-header", CLI_INT, &o->max_header, "N",
                "request line + headers bytes at most per connection", .lo = 1024),
        CLI_OPT(NULL, "--max-connections", CLI_INT, &o->hcfg.max_connections, "N", "open connections at most",
                .lo = 1),
        CLI_OPT(NULL, "--timeout", CLI_INT, &o->hcfg.timeout_s, "S", "close a connection idle for S seconds", .lo = 1),
        CLI_OPT(NULL, "--http-threads", CLI_INT, &o->hcfg.threads, "N", "HTTP threads", .lo = 1),
    };
    cli_cmd c = {.cmd = "serve", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
                 .usage = "usage: lmforge serve -m MODEL [flags]\n\n"
                          "Serves MODEL over HTTP with the OpenAI API: POST /v1/chat/completions and /v1/completions "
                          "(streaming or not),\nGET /v1/models, GET /health, GET /metrics (Prometheus), POST "
                          "/tokenize and /detokenize, and a chat page at /.\nRequests run together in one continuous "
                          "batch. Ctrl-C (SIGINT) or SIGTERM stops it. See docs/serving.md.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r <= 0) return r;
    if (!o->model) {
        fprintf(stderr, "lmforge serve: -m MODEL is required (see --help)\n");
        return 0;
    }
    if (o->hcfg.port > 65535) {
        fprintf(stderr, "lmforge serve: --port expects 0..65535, got %d\n", o->hcfg.port);
        return 0;
    }
    if (o->reasoning_format && strcmp(o->reasoning_format, "deepseek") && strcmp(o->reasoning_format, "none")) {
        fprintf(stderr, "lmforge serve: --reasoning-format expects deepseek or none, got '%s'\n", o->reasoning_format);
        return 0;
    }
    if (o->chat_template && o->chat_format) {
        fprintf(stderr, "lmforge serve: --chat-template and --chat-format exclude each other\n");
        return 0;
    }
    o->hcfg.max_body = (size_t)o->max_body, o->hcfg.max_header = (size_t)o->max_header;
    return 1;
}

/* The API key: --api-key, else the first line of --api-key-file, else $LMF_API_KEY; NULL for none. *owned is what
 * the caller frees. */
static lmf_status api_key(const serve_opts *o, const char **key, char **owned) {
    *key = NULL, *owned = NULL;
    if (o->api_key) {
        *key = o->api_key;
    } else if (o->api_key_file) {
        size_t len;
        LMF_TRY(cli_read_all(o->api_key_file, owned, &len));
        (*owned)[strcspn(*owned, "\r\n")] = 0;
        if (!**owned) return lmf_fail(LMF_ERR_ARG, "--api-key-file %s: the first line is empty", o->api_key_file);
        *key = *owned;
    } else if (getenv("LMF_API_KEY") && *getenv("LMF_API_KEY")) {
        *key = getenv("LMF_API_KEY");
    }
    return LMF_OK;
}

/* --kv-size: positions ("8192"), or bytes of cache in MiB ("512MiB"), converted with the model's per-position KV
 * size (K and V, every layer: 2 x n_layer x n_kv_head x head_dim x 4 bytes, 2 with --cache-type f16). */
/* --kv-size: positions, or MiB / GiB (the engine works out the positions that fit). */
static lmf_status kv_size(const char *v, lmf_engine_config *c) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || !(x > 0))
        return lmf_fail(LMF_ERR_ARG, "--kv-size: expected positions (8192) or MiB (512MiB), got '%s'", v);
    if (!strcmp(end, "MiB") || !strcmp(end, "GiB")) {
        c->kv_bytes = x * (end[0] == 'M' ? 1048576.0 : 1073741824.0);
        return LMF_OK;
    }
    if (*end || x != floor(x) || x > 1 << 30)
        return lmf_fail(LMF_ERR_ARG, "--kv-size: expected positions (8192, at most 2^30) or MiB (512MiB), got '%s'",
                        v);
    c->kv_tokens = (int)x;
    return LMF_OK;
}

static void log_stderr(void *ctx, lmf_log_level level, const char *line) {
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "[%s] %s%s\n", ts, level == LMF_LOG_WARN ? "warning: " : "", line);
}

/* Signals: SIGINT / SIGTERM are blocked in every thread (set before any starts, so the HTTP, engine and OpenMP
 * threads all inherit it) and taken by this thread alone. While the model loads a signal ends the process at once
 * (nothing to clean up, and a load can take long); once serving it wakes the main thread for an orderly stop. */
static sem_t stop_sem;
static atomic_int serving, stop_signal;

static void *signal_thread(void *arg) {
    int sig = 0;
    sigwait(arg, &sig);
    if (!atomic_load(&serving)) {
        fprintf(stderr, "lmforge serve: %s while loading: exiting\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        _exit(128 + sig);
    }
    atomic_store(&stop_signal, sig);
    sem_post(&stop_sem);
    return NULL;
}

/* The id the model goes by: --model-name, else the path's last component. */
static const char *model_id(const serve_opts *o, char *buf, size_t cap) {
    if (o->model_name) return o->model_name;
    snprintf(buf, cap, "%s", o->model);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    const char *slash = strrchr(buf, '/');
    return slash ? slash + 1 : buf;
}

int cmd_serve(int argc, char **argv) {
    serve_opts o = {.lora_scale = 1.0f, .ecfg = lmf_engine_defaults(), .hcfg = lmf_http_defaults()};
    o.max_body = (int)o.hcfg.max_body, o.max_header = (int)o.hcfg.max_header;
    int r = parse(argc, argv, &o);
    if (r <= 0) return r < 0 ? 0 : 2;
    /* the engine thread takes the creating thread's setting (lmf_engine_create reads omp_get_max_threads) */
    if (o.threads > 0) omp_set_num_threads(o.threads);

    lmf_status st;
    const char *key;
    char *key_owned = NULL;
    if ((st = api_key(&o, &key, &key_owned)) != LMF_OK) return cli_fail("serve", st);
    if (key && o.no_auth) {
        free(key_owned);
        fprintf(stderr, "lmforge serve: --no-auth and an API key (--api-key, --api-key-file or LMF_API_KEY) "
                "contradict each other: pick one\n");
        return 2;
    }
    if (!key && !o.no_auth && !lmf_http_host_is_loopback(o.hcfg.host)) {
        fprintf(stderr, "lmforge serve: --host %s is reachable from other machines and no API key is set: give "
                "--api-key / --api-key-file / LMF_API_KEY, or --no-auth to serve it open\n", o.hcfg.host);
        return 2;
    }
    o.hcfg.api_key = key;
    lmf_sink sink = {.log = log_stderr};
    o.hcfg.sink = &sink;

    static sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sem_init(&stop_sem, 0, 0);
    pthread_t sig_th;
    pthread_create(&sig_th, NULL, signal_thread, &sigs);
    pthread_detach(sig_th);

    lmf_http *h = NULL;
    lmf_weights *w = NULL;
    lmf_lora *lora = NULL;
    lmf_engine *e = NULL;
    lmf_chat_template tmpl = {0};
    char idbuf[512];
    lmf_openai_model m = {.id = model_id(&o, idbuf, sizeof idbuf)};
    if ((st = lmf_http_start(&o.hcfg, &h)) != LMF_OK) goto done;
    fprintf(stderr, "lmforge serve: listening on http://%s:%d%s (loading %s)\n", o.hcfg.host, lmf_http_port(h),
            key ? ", API key required" : "", o.model);

    double t0 = lmf_now();
    if ((st = lmf_weights_load(o.model, &w)) != LMF_OK) goto done;
    if (!lmf_weights_tokenizer(w)) {
        st = lmf_fail(LMF_ERR_ARG, "%s: the model carries no tokenizer (add tokenizer.json to the folder)", o.model);
        goto done;
    }
    if (o.chat_format) {
        if ((st = lmf_chat_format_parse(o.chat_format, &tmpl.format)) != LMF_OK) goto done;
    } else if (o.chat_template) {
        if ((st = lmf_chat_template_from_file(w, o.chat_template, &tmpl)) != LMF_OK) goto done;
    } else if ((st = lmf_chat_template_from_weights(w, &tmpl)) != LMF_OK) {
        goto done; /* the message names the template's line; --chat-format overrides it */
    }
    if (o.chat_kwargs && (st = lmf_chat_template_set_kwargs(&tmpl, o.chat_kwargs)) != LMF_OK) goto done;
    if (o.lora && (st = cli_open_lora(o.lora, w, o.lora_scale, &lora)) != LMF_OK) goto done;
    if (o.kv_size && (st = kv_size(o.kv_size, &o.ecfg)) != LMF_OK) goto done;
    if ((st = lmf_engine_create(w, lora, &o.ecfg, &e)) != LMF_OK) goto done;
    lmf_engine_stats es;
    lmf_engine_get_stats(e, &es);
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    m.tok = lmf_weights_tokenizer(w);
    m.tmpl = &tmpl;
    m.bos = add_bos ? bos : -1;
    m.n_ctx = es.n_ctx;
    m.reasoning = !o.reasoning_format || !strcmp(o.reasoning_format, "deepseek");
    lmf_http_set_model(h, e, &m);
    e = NULL; /* the server owns it now */
    atomic_store(&serving, 1);
    double load_s = lmf_now() - t0;
    char window[96] = "";
    if (es.kv_window)
        snprintf(window, sizeof window, " + %d for the sliding-window layers' last %d positions", es.kv_window_blocks,
                 es.kv_window);
    fprintf(stderr, "lmforge serve: ready in %.1f s: model '%s' (%s template%s%s%s%s), context %d, %d sequences at "
            "once, KV cache %d blocks of %d positions%s (%s, %.0f MiB%s)\n", load_s, m.id,
            lmf_chat_format_name(tmpl.format),
            tmpl.jinja ? "" : ", built-in renderer", tmpl.jinja && tmpl.hermes_tool_calls ? ", <tool_call> parsed" : "",
            tmpl.jinja && tmpl.thinks && m.reasoning ? ", <think> parsed" : "", lora ? ", LoRA" : "", es.n_ctx,
            es.parallel, es.kv_blocks, es.kv_block_size, window,
            o.ecfg.kv_type == LMF_KV_F16 ? "f16" : "f32", es.kv_bytes / 1048576.0, o.ecfg.kv_lazy ? ", lazy" : "");

    while (sem_wait(&stop_sem) != 0) continue; /* EINTR */
    fprintf(stderr, "lmforge serve: %s: stopping\n", atomic_load(&stop_signal) == SIGINT ? "SIGINT" : "SIGTERM");
done:
    lmf_http_stop(h); /* and the engine it owns */
    if (e) lmf_engine_free(e);
    lmf_lora_free(lora);
    lmf_chat_template_free(&tmpl);
    lmf_weights_free(w);
    free(key_owned);
    return st == LMF_OK ? 0 : cli_fail("serve", st);
}
