/* cmd_generate.c — `lmforge generate` (continue a prompt, streaming) and `lmforge chat` (a conversation through
 * the model's chat template, interactive or one turn with -p). Both share the model/sampling flags below. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "model/chat.h"
#include "tokenizer/tokenizer.h"
#include "model/lora.h"
#include "core/status.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompt, *system, *chat_format, *chat_kwargs, *chat_template, *lora, *messages;
    const char *json_schema, *json_schema_file;
    const char *bias_v[64];
    cli_list biases;      /* --logit-bias ID(+|-)BIAS */
    int32_t bias_ids[64];
    float bias[64];
    int n_bias;
    lmf_grammar *grammar; /* from either, made by parse_gen */
    float lora_scale;
    const char *stop_v[8];
    cli_list stops;
    int n_predict, n_ctx, threads, verbose, verbose_prompt, logprobs, no_special;
    lmf_kv_type cache_type;
    lmf_sampler_params sp;
} gen_opts;

static void gen_defaults(gen_opts *o, int n_predict) {
    *o = (gen_opts){.n_predict = n_predict, .n_ctx = 2048, .lora_scale = 1.0f, .logprobs = -1,
                    .sp = lmf_sampler_defaults()};
    o->stops = (cli_list){o->stop_v, 0, 8};
    o->biases = (cli_list){o->bias_v, 0, 64};
}

/* The flags generate and chat share, then each one's own; returns how many were written to t. */
static int gen_table(gen_opts *o, int chat, cli_opt *t) {
    int n = 0;
    t[n++] = (cli_opt)CLI_OPT("-m", "--model", CLI_STR, &o->model, "PATH",
                              "GGUF file, Hugging Face folder (config.json + safetensors) or lmforge checkpoint");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--lora", CLI_STR, &o->lora, "PATH",
                              "apply a LoRA adapter without merging: a PEFT folder or a GGUF adapter");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--lora-scale", CLI_FLOAT, &o->lora_scale, "S",
                              "multiply the adapter's scale by S");
    if (chat) {
        t[n++] = (cli_opt)CLI_OPT("-p", "--prompt", CLI_STR, &o->prompt, "TEXT", "answer this one message and exit");
        t[n++] = (cli_opt)CLI_OPT(NULL, "--messages", CLI_STR, &o->messages, "FILE",
                                  "answer the last user (or tool) turn of a conversation: a JSON list of OpenAI's "
                                  "messages (tool calls and results included), or a body holding them and "
                                  "\"tools\"; - = stdin");
        t[n++] = (cli_opt)CLI_OPT(NULL, "--system", CLI_STR, &o->system, "TEXT", "system message",
                                  .def = "the template's own, if any");
        t[n++] = (cli_opt)CLI_OPT(NULL, "--chat-format", CLI_STR, &o->chat_format, "F",
                                  "chatml, llama2 or llama3: a built-in renderer instead of the model's template",
                                  .def = "the model's template");
        t[n++] = (cli_opt)CLI_OPT(NULL, "--chat-template", CLI_STR, &o->chat_template, "FILE",
                                  "a Jinja chat template file instead of the model's", .def = "the model's template");
        t[n++] = (cli_opt)CLI_OPT(NULL, "--chat-template-kwargs", CLI_STR, &o->chat_kwargs, "JSON",
                                  "extra variables for the template, e.g. '{\"enable_thinking\": false}'");
    } else {
        t[n++] = (cli_opt)CLI_OPT("-p", "--prompt", CLI_STR, &o->prompt, "TEXT", "the prompt (required)");
        t[n++] = (cli_opt)CLI_OPT(NULL, "--no-special", CLI_BOOL, &o->no_special, NULL,
                                  "read special-token text in the prompt (<|im_start|>) as plain text; by default "
                                  "it is the special token, as in `lmforge tokenize`");
    }
    t[n++] = (cli_opt)CLI_OPT("-n", "--n-predict", CLI_INT, &o->n_predict, "N", "tokens to generate at most");
    t[n++] = (cli_opt)CLI_OPT("-c", "--ctx", CLI_INT, &o->n_ctx, "N",
                              "context length in tokens (KV cache size; capped at the model's)", .lo = 1);
    t[n++] = (cli_opt)CLI_OPT(NULL, "--cache-type", CLI_FN, &o->cache_type, "T", CLI_CACHE_TYPE_HELP, .def = "f32",
                              .fn = cli_kv_type);
    t[n++] = (cli_opt)CLI_OPT("-t", "--threads", CLI_INT, &o->threads, "N", "threads",
                              .def = "OMP_NUM_THREADS or all cores", .lo = 1);
    t[n++] = (cli_opt)CLI_OPT(NULL, "--temp", CLI_FLOAT, &o->sp.temperature, "T",
                              "temperature; 0 = greedy, deterministic");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--top-k", CLI_INT, &o->sp.top_k, "K", "keep the K most likely tokens; 0 = off");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--top-p", CLI_FLOAT, &o->sp.top_p, "P",
                              "keep the smallest set with probability >= P; 1 = off");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--min-p", CLI_FLOAT, &o->sp.min_p, "P",
                              "drop tokens below P x the top probability; 0 = off");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--repeat-penalty", CLI_FLOAT, &o->sp.repeat_penalty, "R",
                              "penalise the last --repeat-last-n tokens; 1 = off");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--repeat-last-n", CLI_INT, &o->sp.repeat_last_n, "N",
                              "tokens --repeat-penalty looks at");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--seed", CLI_U64, &o->sp.seed, "S", "random seed");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--stop", CLI_LIST, &o->stops, "STR",
                              "stop when the output contains STR (repeatable, up to 8)", .def = "");
    t[n++] = (cli_opt)CLI_OPT("-l", "--logit-bias", CLI_LIST, &o->biases, "ID+B",
                              "add B to token ID's logit before sampling (ID-B subtracts, ID-inf bans it; llama.cpp's "
                              "form; repeatable, up to 64)", .def = "");
    t[n++] = (cli_opt)CLI_OPT("-j", "--json-schema", CLI_STR, &o->json_schema, "SCHEMA",
                              "constrain the reply to JSON following this JSON Schema (the subset docs/serving.md "
                              "lists); '{}' for any JSON object or array");
    t[n++] = (cli_opt)CLI_OPT("-jf", "--json-schema-file", CLI_STR, &o->json_schema_file, "FILE",
                              "as --json-schema, the schema read from FILE");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--verbose-prompt", CLI_BOOL, &o->verbose_prompt, NULL,
                              "print the prompt as the model sees it (rendered text, then each token id and its "
                              "text) to stderr");
    t[n++] = (cli_opt)CLI_OPT(NULL, "--logprobs", CLI_INT, &o->logprobs, "N",
                              "after the reply, print each generated token's id, text and log-probability with the "
                              "N most likely alternatives (0..20) to stderr", .def = "off");
    t[n++] = (cli_opt)CLI_OPT("-v", "--verbose", CLI_BOOL, &o->verbose, NULL,
                              "print timings (prompt and generation tokens/s) to stderr");
    return n;
}

/* Returns 1 to run, 0 on a bad flag (message printed), -1 when --help was printed. */
static int parse_gen(const char *cmd, const char *usage, int chat, int argc, char **argv, gen_opts *o) {
    cli_opt t[32];
    cli_cmd c = {.cmd = cmd, .usage = usage, .opts = t, .n_opts = gen_table(o, chat, t)};
    int r = cli_parse(&c, argc, argv);
    if (r <= 0) return r;
    if (o->logprobs > LMF_LOGPROBS_MAX) {
        fprintf(stderr, "lmforge %s: --logprobs expects 0..%d alternatives, got %d\n", cmd, LMF_LOGPROBS_MAX,
                o->logprobs);
        return 0;
    }
    if (!o->model) {
        fprintf(stderr, "lmforge %s: -m MODEL is required (see --help)\n", cmd);
        return 0;
    }
    for (int i = 0; i < o->biases.n; i++) {
        const char *b = o->biases.v[i], *sign = b + strspn(b, "0123456789");
        char *end;
        long id = strtol(b, NULL, 10);
        float x = (*sign == '+' || *sign == '-') && sign > b ? strtof(sign, &end) : NAN;
        if (isnan(x) || *end || id > INT32_MAX) {
            fprintf(stderr, "lmforge %s: --logit-bias '%s': expected TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043+1.5, "
                    "15043-inf)\n", cmd, b);
            return 0;
        }
        o->bias_ids[o->n_bias] = (int32_t)id, o->bias[o->n_bias++] = x;
    }
    if (o->json_schema && o->json_schema_file) {
        fprintf(stderr, "lmforge %s: --json-schema and --json-schema-file exclude each other\n", cmd);
        return 0;
    }
    if (o->json_schema || o->json_schema_file) {
        char *text = NULL;
        size_t len;
        if (o->json_schema_file && cli_read_all(o->json_schema_file, &text, &len) != LMF_OK) {
            fprintf(stderr, "lmforge %s: %s\n", cmd, lmf_last_error()); /* names the file */
            return 0;
        }
        lmf_status st = lmf_grammar_json(text ? text : o->json_schema, &o->grammar);
        free(text);
        if (st != LMF_OK) {
            fprintf(stderr, "lmforge %s: %s: %s\n", cmd, o->json_schema_file ? o->json_schema_file : "--json-schema",
                    lmf_last_error());
            return 0;
        }
    }
    return 1;
}

/* A token's text for --verbose-prompt and --logprobs: its bytes (special tokens as their text) quoted, with
 * controls and bytes that are not UTF-8 escaped, so every token shows on one line. */
static void put_token(lmf_text *out, const lmf_tokenizer *tok, int32_t id) {
    lmf_text t = {0};
    char buf[8];
    lmf_tokenizer_decode(tok, &id, 1, 0, &t);
    lmf_text_push(out, "\"", 1);
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.data[i];
        if (c == '"' || c == '\\') snprintf(buf, sizeof buf, "\\%c", c);
        else if (c == '\n') snprintf(buf, sizeof buf, "\\n");
        else if (c == '\t') snprintf(buf, sizeof buf, "\\t");
        else if (c < 0x20 || c == 0x7f) snprintf(buf, sizeof buf, "\\x%02x", c);
        else buf[0] = (char)c, buf[1] = 0;
        lmf_text_push(out, buf, strlen(buf));
    }
    lmf_text_push(out, "\"", 1);
    free(t.data);
}

/* --verbose-prompt: the text the model is given and its token ids, one a line (llama.cpp's layout). */
static void print_prompt(const lmf_tokenizer *tok, const char *text, const lmf_ids *ids) {
    lmf_text out = {0};
    fprintf(stderr, "prompt: %zu tokens\n%s\n", ids->len, text);
    for (size_t i = 0; i < ids->len; i++) {
        out.len = 0;
        put_token(&out, tok, ids->data[i]);
        fprintf(stderr, "%8d -> %.*s\n", ids->data[i], (int)out.len, out.data);
    }
    free(out.data);
}

/* What one reply streams to: the text to stdout; with --logprobs a table collected for stderr. */
typedef struct {
    const lmf_tokenizer *tok;
    lmf_text table;
    int n;
} gen_out;

static int write_out(void *ctx, const char *text, size_t len) {
    (void)ctx; /* it streams; a failed write stops generating */
    return fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : -1;
}

static int on_token(void *ctx, const lmf_token_info *t) {
    gen_out *g = ctx;
    char num[64];
    int k = snprintf(num, sizeof num, "%5d %8d %9.4f  ", ++g->n, t->id, (double)t->logprob);
    lmf_text_push(&g->table, num, (size_t)k);
    put_token(&g->table, g->tok, t->id);
    for (int i = 0; i < t->n_top; i++) {
        lmf_text_push(&g->table, i ? "  " : "  |", i ? 2 : 3);
        lmf_text_push(&g->table, " ", 1);
        put_token(&g->table, g->tok, t->top[i].id);
        k = snprintf(num, sizeof num, " %.4f", (double)t->top[i].logprob);
        lmf_text_push(&g->table, num, (size_t)k);
    }
    lmf_text_push(&g->table, "\n", 1);
    return 0;
}

typedef struct {
    double prompt_s, gen_s;
    int prompt_tokens, gen_tokens;
} timings;

/* One reply through lmf_generate: evaluates the last n_new ids of hist, streams the generated text to stdout and
 * appends it to *text; adds the timings to *tm (chat sums them over the turns). Says on stderr when the context
 * filled, and prints the --logprobs table after the reply. */
static lmf_status reply(const char *cmd, lmf_session *s, lmf_sampler *smp, const gen_opts *o, lmf_ids *hist,
                        size_t n_new, lmf_text *text, timings *tm) {
    gen_out g = {.tok = lmf_weights_tokenizer(lmf_session_weights(s))};
    lmf_generate_params p = {.n_predict = o->n_predict, .stops = o->stops.v, .n_stops = o->stops.n,
                             .on_text = write_out, .ctx = &g, .on_token = o->logprobs >= 0 ? on_token : NULL,
                             .n_logprobs = o->logprobs > 0 ? o->logprobs : 0, .grammar = o->grammar,
                             .bias_ids = o->bias_ids, .bias = o->bias, .n_bias = o->n_bias};
    lmf_generate_result r;
    lmf_status st = lmf_generate(s, smp, hist, n_new, &p, text, &r);
    if (st == LMF_OK && r.stop_reason == LMF_STOP_CALLBACK)
        st = lmf_fail(LMF_ERR_IO, "standard output: write failed: %s", strerror(errno ? errno : EIO));
    tm->prompt_s += r.prompt_s, tm->prompt_tokens += r.prompt_tokens;
    tm->gen_s += r.gen_s, tm->gen_tokens += r.gen_tokens;
    if (st == LMF_OK && r.stop_reason == LMF_STOP_CONTEXT)
        fprintf(stderr, "\nlmforge %s: the context is full (%d tokens): stopped after %d generated tokens of %d; "
                "raise -c for a longer reply\n", cmd, lmf_session_n_ctx(s), r.gen_tokens, o->n_predict);
    if (o->logprobs >= 0 && g.n) {
        fprintf(stderr, "\nlogprobs (log-softmax of the model's logits before sampling):\n    #       id   logprob  "
                "token%s\n", o->logprobs ? "  | the most likely tokens" : "");
        fwrite(g.table.data, 1, g.table.len, stderr);
    }
    free(g.table.data);
    return st;
}

static void print_timings(const timings *tm) {
    fprintf(stderr, "\n[prompt: %d tokens in %.3f s, %.1f tok/s | generation: %d tokens in %.3f s, %.1f tok/s]\n",
            tm->prompt_tokens, tm->prompt_s, tm->prompt_s > 0 ? tm->prompt_tokens / tm->prompt_s : 0.0,
            tm->gen_tokens, tm->gen_s, tm->gen_s > 0 ? tm->gen_tokens / tm->gen_s : 0.0);
}

/* Loads the model (with a tokenizer), its adapter when asked, a session and a sampler. */
static lmf_status open_model(const gen_opts *o, lmf_weights **w, lmf_lora **lora, lmf_session **s,
                             lmf_sampler **smp) {
    if (o->threads > 0) omp_set_num_threads(o->threads);
    LMF_TRY(lmf_weights_load(o->model, w));
    if (!lmf_weights_tokenizer(*w))
        return lmf_fail(LMF_ERR_ARG, "%s: the model carries no tokenizer (add tokenizer.json to the folder)",
                        o->model);
    if (o->lora) LMF_TRY(cli_open_lora(o->lora, *w, o->lora_scale, lora));
    LMF_TRY(lmf_session_create_kv(*w, o->n_ctx, o->cache_type, s));
    if (*lora) lmf_session_set_lora(*s, *lora);
    return lmf_sampler_create(&o->sp, lmf_weights_config(*w)->vocab_size, smp);
}

/* The prompt must leave room for one generated token. */
static lmf_status check_fits(const lmf_session *s, size_t n_prompt) {
    int n_ctx = lmf_session_n_ctx(s), max = lmf_weights_config(lmf_session_weights(s))->max_seq_len;
    if (n_prompt >= (size_t)n_ctx)
        return lmf_fail(LMF_ERR_ARG, "the prompt has %zu tokens, which leaves no room in the context of %d (-c %d)%s",
                        n_prompt, n_ctx, n_ctx,
                        n_prompt >= (size_t)max ? ": it exceeds the model's context length" : ": raise -c");
    return LMF_OK;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    gen_defaults(&o, 128);
    int r = parse_gen("generate", "usage: lmforge generate -m MODEL -p PROMPT [flags]\n\nContinues PROMPT, streaming "
                      "tokens to stdout as they are produced. Special-token text in PROMPT (<|im_start|>, "
                      "<|endoftext|>)\nis read as the special token, as llama.cpp and transformers do; --no-special "
                      "reads it as plain text.\n", 0, argc, argv, &o);
    if (r > 0 && !o.prompt) {
        fprintf(stderr, "lmforge generate: -p PROMPT is required (see --help)\n");
        r = 0;
    }
    if (r <= 0) {
        lmf_grammar_free(o.grammar);
        return r < 0 ? 0 : 2;
    }
    lmf_weights *w = NULL;
    lmf_session *s = NULL;
    lmf_sampler *smp = NULL;
    lmf_lora *lora = NULL;
    lmf_status st = open_model(&o, &w, &lora, &s, &smp);
    int rc = 0;
    if (st == LMF_OK) {
        lmf_ids hist = {0};
        int add_bos;
        int32_t bos = lmf_weights_bos(w, &add_bos);
        if (add_bos) lmf_ids_push(&hist, &bos, 1);
        st = lmf_tokenizer_encode(lmf_weights_tokenizer(w), o.prompt, strlen(o.prompt),
                                  o.no_special ? 0 : LMF_ENCODE_ALLOW_SPECIAL, &hist);
        if (st == LMF_OK && o.verbose_prompt) print_prompt(lmf_weights_tokenizer(w), o.prompt, &hist);
        if (st == LMF_OK && hist.len == 0) st = lmf_fail(LMF_ERR_ARG, "the prompt is empty");
        else if (st == LMF_OK) st = check_fits(s, hist.len);
        if (st == LMF_OK) {
            lmf_text text = {0};
            timings tm = {0};
            fputs(o.prompt, stdout);
            fflush(stdout);
            st = reply("generate", s, smp, &o, &hist, hist.len, &text, &tm);
            fputc('\n', stdout);
            if (o.verbose) print_timings(&tm);
            free(text.data);
        }
        free(hist.data);
    }
    if (st != LMF_OK) rc = cli_fail("generate", st);
    lmf_sampler_free(smp);
    lmf_grammar_free(o.grammar);
    lmf_session_free(s);
    lmf_lora_free(lora);
    lmf_weights_free(w);
    return rc;
}

/* Reads one line from stdin into *line (without the newline); 0 at end of input. */
static int read_line(char **line, size_t *cap) {
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) return 0;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
    return 1;
}

enum { MAX_MESSAGES = 256 };

/* Whether every message of list is a plain {"role": system | user | assistant, "content": string}. */
static int plain_messages(const cJSON *list) {
    for (const cJSON *m = list->child; m; m = m->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(role) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content")) ||
            (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
             strcmp(role->valuestring, "assistant")))
            return 0;
    }
    return 1;
}

/* --messages FILE holding more than role and content (tool calls, tool results, reasoning, text parts, "tools"):
 * the messages as the template sees them (model/chat.h), checked, with --system first unless the file has one, as
 * JSON text in *json (and the tools in *tools, or NULL). The last must be a user or tool turn: the one answered. */
static lmf_status read_messages_json(const char *path, cJSON *root, cJSON *list, const char *system, char **json,
                                     char **tools) {
    const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "tools") : NULL;
    if (t && !cJSON_IsNull(t) && !cJSON_IsArray(t))
        return lmf_fail(LMF_ERR_ARG, "%s: \"tools\" is not a list of tool objects", path);
    if (lmf_chat_messages_prepare(list, NULL, 0) != LMF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", lmf_last_error());
        return lmf_fail(LMF_ERR_ARG, "%s: %s", path, msg);
    }
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(list->child, "role");
    if (system && strcmp(first->valuestring, "system")) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", system);
        cJSON_InsertItemInArray(list, 0, m);
    }
    const cJSON *last = list->child;
    while (last->next) last = last->next;
    const char *role = cJSON_GetObjectItemCaseSensitive(last, "role")->valuestring;
    if (strcmp(role, "user") && strcmp(role, "tool"))
        return lmf_fail(LMF_ERR_ARG, "%s: the last message must be the user's or a tool result, to answer (it is %s)",
                        path, role);
    *json = cJSON_PrintUnformatted(list);
    *tools = cJSON_IsArray(t) ? cJSON_PrintUnformatted(t) : NULL;
    return LMF_OK;
}

/* --messages FILE: OpenAI's messages, a list of {"role", "content"} (or an object holding it as "messages"), into
 * msgs (contents owned through owned[]). The last must be a user turn: that is the one answered. Messages with more
 * than role and content, or a "tools" list beside them, go to *json / *tools instead (read_messages_json). */
static lmf_status read_messages(const char *path, const char *system, lmf_chat_message *msgs, char **owned, int *n,
                                int *n_owned, char **json, char **tools) {
    char *text;
    size_t len;
    LMF_TRY(cli_read_all(path, &text, &len));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    lmf_status st = LMF_OK;
    const cJSON *list = root;
    if (!root) {
        st = lmf_fail(LMF_ERR_ARG, "%s: not valid JSON (near byte %zu)", path, end ? (size_t)(end - text) : 0);
        goto done;
    }
    if (cJSON_IsObject(root)) list = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(list)) {
        st = lmf_fail(LMF_ERR_ARG, "%s: expected a JSON list of messages ([{\"role\": \"user\", \"content\": "
                      "\"...\"}]) or an object with \"messages\"", path);
        goto done;
    }
    if (list->child && (!plain_messages(list) || (cJSON_IsObject(root) && cJSON_GetObjectItemCaseSensitive(root,
                                                                                                       "tools")))) {
        st = read_messages_json(path, root, (cJSON *)list, system, json, tools);
        goto done;
    }
    int i = 0;
    for (const cJSON *m = list->child; m; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (*n >= MAX_MESSAGES - 1) {
            st = lmf_fail(LMF_ERR_ARG, "%s: more than %d messages", path, MAX_MESSAGES - 1);
            goto done;
        }
        if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !cJSON_IsString(content)) {
            st = lmf_fail(LMF_ERR_ARG, "%s: messages[%d]: expected {\"role\": STRING, \"content\": STRING}", path, i);
            goto done;
        }
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant")) {
            st = lmf_fail(LMF_ERR_ARG, "%s: messages[%d].role: '%s' (expected system, user or assistant)", path, i,
                          role->valuestring);
            goto done;
        }
        owned[(*n_owned)++] = strdup(role->valuestring);
        owned[(*n_owned)++] = strdup(content->valuestring);
        msgs[(*n)++] = (lmf_chat_message){owned[*n_owned - 2], owned[*n_owned - 1]};
    }
    if (*n == 0 || strcmp(msgs[*n - 1].role, "user"))
        st = lmf_fail(LMF_ERR_ARG, "%s: the last message must be the user's turn to answer (it is %s)", path,
                      *n ? msgs[*n - 1].role : "missing: the list is empty");
done:
    cJSON_Delete(root);
    free(text);
    return st;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    gen_defaults(&o, 512);
    int r = parse_gen("chat", "usage: lmforge chat -m MODEL [-p MESSAGE | --messages FILE] [flags]\n\nChats "
                      "through the model's chat template (its tokenizer.chat_template, run as transformers runs it).\n"
                      "Interactive: type a message and Enter; an empty line or end of input quits, /reset clears the "
                      "history.\nWith -p: answers one message and exits. With --messages: answers the last user turn "
                      "of a\nconversation and exits (no terminal needed).\n", 1, argc, argv, &o);
    if (r > 0 && o.prompt && o.messages) {
        fprintf(stderr, "lmforge chat: -p and --messages exclude each other (put the message last in FILE)\n");
        r = 0;
    }
    if (r <= 0) {
        lmf_grammar_free(o.grammar);
        return r < 0 ? 0 : 2;
    }
    lmf_weights *w = NULL;
    lmf_session *s = NULL;
    lmf_sampler *smp = NULL;
    lmf_chat_template tmpl = {0};
    lmf_lora *lora = NULL;
    lmf_chat_message msgs[MAX_MESSAGES];
    char *owned[2 * MAX_MESSAGES];
    int n = 0, n_owned = 0;
    if (o.system) msgs[n++] = (lmf_chat_message){"system", o.system};
    lmf_status st = LMF_OK;
    char *msgs_json = NULL, *tools_json = NULL; /* --messages beyond role and content */
    /* the conversation is read before the model loads: a bad file fails fast */
    if (o.chat_template && o.chat_format) {
        fprintf(stderr, "lmforge chat: --chat-template and --chat-format exclude each other\n");
        return 2;
    }
    if (o.messages) {
        n = 0;
        st = read_messages(o.messages, o.system, msgs, owned, &n, &n_owned, &msgs_json, &tools_json);
        if (st == LMF_OK && !msgs_json && o.system && strcmp(msgs[0].role, "system")) { /* the file's own wins */
            memmove(msgs + 1, msgs, (size_t)n * sizeof *msgs);
            msgs[0] = (lmf_chat_message){"system", o.system};
            n++;
        }
    }
    if (st == LMF_OK) st = open_model(&o, &w, &lora, &s, &smp);
    if (st == LMF_OK)
        st = o.chat_template ? lmf_chat_template_from_file(w, o.chat_template, &tmpl)
                             : lmf_chat_template_from_weights(w, &tmpl);
    if (st == LMF_OK && o.chat_format && (st = lmf_chat_format_parse(o.chat_format, &tmpl.format)) == LMF_OK)
        lmf_chat_template_use_builtin(&tmpl);
    if (st == LMF_OK && o.chat_kwargs) st = lmf_chat_template_set_kwargs(&tmpl, o.chat_kwargs);
    if (st != LMF_OK) {
        int rc = cli_fail("chat", st);
        for (int i = 0; i < n_owned; i++) free(owned[i]);
        cJSON_free(msgs_json), cJSON_free(tools_json);
        lmf_chat_template_free(&tmpl);
        lmf_sampler_free(smp), lmf_session_free(s), lmf_lora_free(lora), lmf_weights_free(w);
        lmf_grammar_free(o.grammar);
        return rc;
    }
    int interactive = o.prompt == NULL && o.messages == NULL;
    if (interactive)
        fprintf(stderr, "lmforge chat: %s (%s template%s). Empty line or Ctrl-D quits, /reset clears the history.\n",
                o.model, lmf_chat_format_name(tmpl.format), tmpl.jinja ? "" : ", built-in renderer");
    int first = o.system ? 1 : 0, first_owned = n_owned;
    lmf_ids hist = {0}; /* token ids the session holds */
    timings tm = {0};
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (interactive) {
            fprintf(stderr, "\n> ");
            if (!read_line(&line, &cap) || !line[0]) break;
            if (!strcmp(line, "/reset")) {
                for (int i = first_owned; i < n_owned; i++) free(owned[i]);
                n = first, n_owned = first_owned;
                continue;
            }
            if (n + 2 > MAX_MESSAGES) {
                fprintf(stderr, "the conversation is too long (%d messages); /reset to start over\n", MAX_MESSAGES);
                continue;
            }
            owned[n_owned++] = strdup(line);
            msgs[n++] = (lmf_chat_message){"user", owned[n_owned - 1]};
        } else if (o.prompt) {
            msgs[n++] = (lmf_chat_message){"user", o.prompt};
        } /* else --messages: the conversation is in msgs, ending with the user's turn */
        /* render the whole conversation; the session keeps the longest common token prefix, so only the new
         * turn is evaluated */
        lmf_ids ids = {0};
        int add_bos;
        int32_t bos = lmf_weights_bos(w, &add_bos);
        lmf_text rendered = {0};
        st = msgs_json ? lmf_chat_render_messages_json(&tmpl, msgs_json, tools_json, 1, &rendered)
                       : lmf_chat_render(&tmpl, msgs, n, 1, &rendered);
        if (st == LMF_OK)
            st = lmf_chat_encode_text(lmf_weights_tokenizer(w), &tmpl, add_bos ? bos : -1, rendered.data,
                                      rendered.len, &ids);
        if (st == LMF_OK && o.verbose_prompt)
            print_prompt(lmf_weights_tokenizer(w), rendered.data ? rendered.data : "", &ids);
        free(rendered.data);
        if (st == LMF_OK) st = check_fits(s, ids.len);
        if (st != LMF_OK) {
            free(ids.data);
            if (!interactive) break;
            fprintf(stderr, "%s; /reset to start over\n", lmf_last_error());
            st = LMF_OK;
            n--;
            continue;
        }
        size_t common = 0;
        while (common < ids.len && common < hist.len && ids.data[common] == hist.data[common]) common++;
        if (common == ids.len) common--; /* re-evaluate the last token to get fresh logits */
        lmf_session_rewind(s, (int)common);
        free(hist.data);
        hist = ids;
        lmf_text text = {0};
        /* the session may hold less than asked: windowed layers that cannot go back start over */
        st = reply("chat", s, smp, &o, &hist, hist.len - (size_t)lmf_session_pos(s), &text, &tm);
        fputc('\n', stdout);
        fflush(stdout);
        /* the session holds every sampled token but the last; keep hist in step with it */
        hist.len = (size_t)lmf_session_pos(s) < hist.len ? (size_t)lmf_session_pos(s) : hist.len;
        if (!interactive || st != LMF_OK) {
            free(text.data);
            break;
        }
        owned[n_owned++] = text.data ? text.data : strdup("");
        msgs[n++] = (lmf_chat_message){"assistant", owned[n_owned - 1]};
    }
    if (o.verbose) print_timings(&tm);
    int rc = st == LMF_OK ? 0 : cli_fail("chat", st);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    cJSON_free(msgs_json), cJSON_free(tools_json);
    free(line);
    free(hist.data);
    lmf_chat_template_free(&tmpl);
    lmf_sampler_free(smp);
    lmf_grammar_free(o.grammar);
    lmf_session_free(s);
    lmf_lora_free(lora);
    lmf_weights_free(w);
    return rc;
}
