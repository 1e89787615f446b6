/* cmd_generate.c — `lmforge generate` (continue a prompt, streaming) and `lmforge chat` (a conversation through
 * the model's chat template, interactive or one turn with -p). Both share the model/sampling flags below. */
#include "cli/cli.h"
#include "model/lora.h"
#include "core/status.h"

#include <omp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model, *prompt, *system, *chat_format, *lora;
    float lora_scale;
    const char *stops[8];
    int n_stops, n_predict, n_ctx, threads, verbose;
    lmf_sampler_params sp;
} gen_opts;

static const char *GEN_FLAGS =
    "  -m, --model PATH       GGUF file, Hugging Face folder (config.json + safetensors) or lmforge checkpoint\n"
    "      --lora PATH        apply a LoRA adapter without merging: a PEFT folder or a GGUF adapter\n"
    "      --lora-scale S     multiply the adapter's scale by S [1]\n"
    "  -p, --prompt TEXT      the prompt (generate: required; chat: answer this one turn and exit)\n"
    "  -n, --n-predict N      tokens to generate at most [generate 128, chat 512]\n"
    "  -c, --ctx N            context length in tokens (KV cache size) [2048, capped at the model's]\n"
    "  -t, --threads N        threads [OMP_NUM_THREADS or all cores]\n"
    "      --temp T           temperature; 0 = greedy and deterministic [0.8]\n"
    "      --top-k K          keep the K most likely tokens; 0 = off [40]\n"
    "      --top-p P          keep the smallest set with probability >= P; 1 = off [0.95]\n"
    "      --min-p P          drop tokens below P x the top probability; 0 = off [0.05]\n"
    "      --repeat-penalty R penalise the last --repeat-last-n tokens; 1 = off [1.0]\n"
    "      --repeat-last-n N  [64]\n"
    "      --seed S           random seed [0]\n"
    "      --stop STR         stop when the output contains STR (repeatable, up to 8)\n"
    "  -v, --verbose          print timings (prompt and generation tokens/s) to stderr\n";

/* Returns 1 on success, 0 on a bad flag (message printed), -1 for --help. */
static int parse_gen(int argc, char **argv, gen_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return -1;
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "lmforge: %s needs a value (or unknown flag)\n", a);
            return 0;
        }
        const char *v = argv[++i];
        int ok = 1, seed;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--chat-format")) o->chat_format = v;
        else if (!strcmp(a, "--lora")) o->lora = v;
        else if (!strcmp(a, "--lora-scale")) ok = cli_parse_float(a, v, &o->lora_scale);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = cli_parse_int(a, v, 0, &o->n_predict);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) ok = cli_parse_int(a, v, 1, &o->n_ctx);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(a, v, 1, &o->threads);
        else if (!strcmp(a, "--temp")) ok = cli_parse_float(a, v, &o->sp.temperature);
        else if (!strcmp(a, "--top-k")) ok = cli_parse_int(a, v, 0, &o->sp.top_k);
        else if (!strcmp(a, "--top-p")) ok = cli_parse_float(a, v, &o->sp.top_p);
        else if (!strcmp(a, "--min-p")) ok = cli_parse_float(a, v, &o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = cli_parse_float(a, v, &o->sp.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) ok = cli_parse_int(a, v, 0, &o->sp.repeat_last_n);
        else if (!strcmp(a, "--seed")) ok = cli_parse_int(a, v, 0, &seed), o->sp.seed = (uint64_t)seed;
        else if (!strcmp(a, "--stop")) {
            if (o->n_stops == 8 || !*v) {
                fprintf(stderr, "lmforge: --stop takes a non-empty string, at most 8 times\n");
                return 0;
            }
            o->stops[o->n_stops++] = v;
        } else {
            fprintf(stderr, "lmforge: unknown flag %s\n", a);
            return 0;
        }
        if (!ok) return 0;
    }
    if (!o->model) {
        fprintf(stderr, "lmforge: -m MODEL is required\n");
        return 0;
    }
    return 1;
}

/* lmf_generate's text callback: generated text straight to stdout, flushed so it streams. */
static int write_out(void *ctx, const char *text, size_t len) {
    return fwrite(text, 1, len, ctx) == len && fflush(ctx) == 0 ? 0 : -1; /* a failed write stops generating */
}

typedef struct {
    double prompt_s, gen_s;
    int prompt_tokens, gen_tokens;
} timings;

/* One reply through lmf_generate: evaluates the last n_new ids of hist, streams the generated text to stdout and
 * appends it to *text; adds the timings to *tm (chat sums them over the turns). */
static lmf_status reply(lmf_session *s, lmf_sampler *smp, const gen_opts *o, lmf_ids *hist, size_t n_new,
                        lmf_text *text, timings *tm) {
    lmf_generate_params p = {.n_predict = o->n_predict, .stops = o->stops, .n_stops = o->n_stops,
                             .on_text = write_out, .ctx = stdout};
    lmf_generate_result r;
    lmf_status st = lmf_generate(s, smp, hist, n_new, &p, text, &r);
    if (st == LMF_OK && r.stop_reason == LMF_STOP_CALLBACK)
        st = lmf_fail(LMF_ERR_IO, "standard output: write failed: %s", strerror(errno ? errno : EIO));
    tm->prompt_s += r.prompt_s, tm->prompt_tokens += r.prompt_tokens;
    tm->gen_s += r.gen_s, tm->gen_tokens += r.gen_tokens;
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
    LMF_TRY(lmf_session_create(*w, o->n_ctx, s));
    if (*lora) lmf_session_set_lora(*s, *lora);
    return lmf_sampler_create(&o->sp, lmf_weights_config(*w)->vocab_size, smp);
}

static void push_id(lmf_ids *ids, int32_t id) {
    if (ids->len == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 256;
        ids->data = realloc(ids->data, ids->cap * sizeof *ids->data);
    }
    ids->data[ids->len++] = id;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {.n_predict = 128, .n_ctx = 2048, .lora_scale = 1.0f, .sp = lmf_sampler_defaults()};
    int r = parse_gen(argc, argv, &o);
    if (r <= 0 || !o.prompt) {
        FILE *f = r < 0 ? stdout : stderr;
        if (r > 0) fprintf(stderr, "lmforge generate: -p PROMPT is required\n");
        fprintf(f, "usage: lmforge generate -m MODEL -p PROMPT [flags]\n\nContinues PROMPT, streaming tokens to "
                "stdout as they are produced.\n\n%s", GEN_FLAGS);
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
        if (add_bos) push_id(&hist, bos);
        st = lmf_tokenizer_encode(lmf_weights_tokenizer(w), o.prompt, strlen(o.prompt), 0, &hist);
        if (st == LMF_OK && hist.len == 0) st = lmf_fail(LMF_ERR_ARG, "the prompt is empty");
        if (st == LMF_OK) {
            lmf_text text = {0};
            timings tm = {0};
            fputs(o.prompt, stdout);
            fflush(stdout);
            st = reply(s, smp, &o, &hist, hist.len, &text, &tm);
            fputc('\n', stdout);
            if (o.verbose) print_timings(&tm);
            free(text.data);
        }
        free(hist.data);
    }
    if (st != LMF_OK) rc = cli_fail("generate", st);
    lmf_sampler_free(smp);
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

int cmd_chat(int argc, char **argv) {
    gen_opts o = {.n_predict = 512, .n_ctx = 2048, .lora_scale = 1.0f, .sp = lmf_sampler_defaults()};
    int r = parse_gen(argc, argv, &o);
    if (r <= 0) {
        fprintf(r < 0 ? stdout : stderr,
                "usage: lmforge chat -m MODEL [-p MESSAGE] [flags]\n\nChats through the model's chat template "
                "(from its tokenizer.chat_template: ChatML, Llama-2, Llama-3). Interactive: type a message and Enter; "
                "an empty line or end of input quits, /reset clears the history. With -p: answers one message and "
                "exits.\n\n%s      --system TEXT      system message\n      --chat-format F    force chatml, llama2 "
                "or llama3\n", GEN_FLAGS);
        return r < 0 ? 0 : 2;
    }
    lmf_weights *w = NULL;
    lmf_session *s = NULL;
    lmf_sampler *smp = NULL;
    lmf_chat_template tmpl = {0};
    lmf_lora *lora = NULL;
    lmf_status st = open_model(&o, &w, &lora, &s, &smp);
    if (st == LMF_OK) st = lmf_chat_template_parse(lmf_weights_chat_template(w), &tmpl);
    if (st == LMF_OK && o.chat_format) st = lmf_chat_format_parse(o.chat_format, &tmpl.format);
    if (st != LMF_OK) {
        int rc = cli_fail("chat", st);
        lmf_sampler_free(smp), lmf_session_free(s), lmf_lora_free(lora), lmf_weights_free(w);
        return rc;
    }
    int interactive = o.prompt == NULL;
    if (interactive)
        fprintf(stderr, "lmforge chat: %s (%s template). Empty line or Ctrl-D quits, /reset clears the history.\n",
                o.model, lmf_chat_format_name(tmpl.format));
    lmf_chat_message msgs[256];
    char *owned[256];
    int n = 0, n_owned = 0;
    if (o.system) msgs[n++] = (lmf_chat_message){"system", o.system};
    int first = n;
    lmf_ids hist = {0}; /* token ids the session holds */
    timings tm = {0};
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        const char *user;
        if (interactive) {
            fprintf(stderr, "\n> ");
            if (!read_line(&line, &cap) || !line[0]) break;
            if (!strcmp(line, "/reset")) {
                for (int i = 0; i < n_owned; i++) free(owned[i]);
                n = first, n_owned = 0;
                continue;
            }
            user = owned[n_owned++] = strdup(line);
        } else {
            user = o.prompt;
        }
        if (n + 2 > 256 || n_owned + 2 > 256) {
            st = lmf_fail(LMF_ERR_ARG, "the conversation is too long (256 messages); /reset to start over");
            break;
        }
        msgs[n++] = (lmf_chat_message){"user", user};
        /* render the whole conversation; the session keeps the longest common token prefix, so only the new
         * turn is evaluated */
        lmf_ids ids = {0};
        int add_bos;
        int32_t bos = lmf_weights_bos(w, &add_bos);
        st = lmf_chat_encode(lmf_weights_tokenizer(w), &tmpl, add_bos ? bos : -1, msgs, n, 1, &ids);
        if (st != LMF_OK) {
            free(ids.data);
            break;
        }
        size_t common = 0;
        while (common < ids.len && common < hist.len && ids.data[common] == hist.data[common]) common++;
        if (common == ids.len) common--; /* re-evaluate the last token to get fresh logits */
        if (ids.len + (size_t)o.n_predict > (size_t)o.n_ctx) {
            free(ids.data);
            st = lmf_fail(LMF_ERR_ARG, "the conversation (%zu tokens) plus a reply (%d) exceeds the context (%d): "
                          "/reset or raise -c", ids.len, o.n_predict, o.n_ctx);
            if (!interactive) break;
            fprintf(stderr, "%s\n", lmf_last_error());
            n--;
            continue;
        }
        lmf_session_rewind(s, (int)common);
        free(hist.data);
        hist = ids;
        lmf_text text = {0};
        st = reply(s, smp, &o, &hist, hist.len - common, &text, &tm);
        fputc('\n', stdout);
        fflush(stdout);
        /* the session holds every sampled token but the last; keep hist in step with it */
        hist.len = (size_t)lmf_session_pos(s) < hist.len ? (size_t)lmf_session_pos(s) : hist.len;
        owned[n_owned++] = text.data ? text.data : strdup("");
        msgs[n++] = (lmf_chat_message){"assistant", owned[n_owned - 1]};
        if (st != LMF_OK || !interactive) break;
    }
    if (o.verbose) print_timings(&tm);
    int rc = st == LMF_OK ? 0 : cli_fail("chat", st);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(line);
    free(hist.data);
    lmf_chat_template_free(&tmpl);
    lmf_sampler_free(smp);
    lmf_session_free(s);
    lmf_lora_free(lora);
    lmf_weights_free(w);
    return rc;
}
