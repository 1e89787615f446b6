/* bench_grammar.c — what constrained decoding costs: a grammar mask over a real vocabulary against the decode step it
 * sits beside.
 *
 *   bench_grammar MODEL.gguf [TOKENS=96]
 *
 * Loads the model (its tokenizer gives the vocabulary), builds the byte-ordered vocabulary once (timed), then for
 * three grammars — JSON mode (any object), a schema with properties, an enum, an array and a nested $ref, and
 * Hermes tool calls of two functions — runs a greedy constrained generation of up to TOKENS tokens after a ChatML
 * prompt: each step masks the logits (timed), takes the argmax, advances the grammar and evaluates the token (the
 * decode step, timed). Prints the CPU, then per grammar the tokens generated, the mask's median / mean / max, the
 * decode step's median and the masks' share of the step, and the reply. Single-threaded masks, the decode step on
 * the OpenMP threads (OMP_NUM_THREADS). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmforge.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_cpu(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], name[256] = "?", fam[32] = "?", model[32] = "?";
    while (f && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v += 2;
        v[strcspn(v, "\n")] = 0;
        if (!strncmp(line, "model name", 10)) snprintf(name, sizeof name, "%s", v);
        else if (!strncmp(line, "cpu family", 10)) snprintf(fam, sizeof fam, "%s", v);
        else if (!strncmp(line, "model\t", 6)) snprintf(model, sizeof model, "%s", v);
        if (!strncmp(line, "flags", 5)) break;
    }
    if (f) fclose(f);
    printf("CPU: %s (family %s model %s)\n", name, fam, model);
}

static const char *PERSON =
    "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\"},"
    "\"mood\": {\"enum\": [\"happy\", \"sad\"]}, \"pets\": {\"type\": \"array\","
    "\"items\": {\"$ref\": \"#/$defs/Pet\"},"
    "\"maxItems\": 2}}, \"required\": [\"name\", \"age\", \"mood\", \"pets\"], \"additionalProperties\": false,"
    "\"$defs\": {\"Pet\": {\"type\": \"object\", \"properties\": {\"kind\": {\"enum\": [\"cat\", \"dog\"]}, \"name\":"
    "{\"type\": \"string\"}}, \"required\": [\"kind\", \"name\"]}}}";

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_grammar MODEL.gguf [TOKENS=96]\n");
        return 2;
    }
    int max_new = argc > 2 ? atoi(argv[2]) : 96;
    lmf_weights *w;
    if (lmf_weights_load(argv[1], &w) != LMF_OK) {
        fprintf(stderr, "%s\n", lmf_last_error());
        return 1;
    }
    const lmf_tokenizer *tok = lmf_weights_tokenizer(w);
    if (!tok) {
        fprintf(stderr, "%s: carries no tokenizer\n", argv[1]);
        return 1;
    }
    int V = lmf_tokenizer_vocab_size(tok);
    print_cpu();
    double t0 = now();
    lmf_grammar_vocab *gv;
    lmf_grammar_vocab_create(tok, &gv);
    printf("model %s, vocabulary %d tokens: byte-ordered in %.1f ms\n\n", argv[1], V, 1e3 * (now() - t0));
    int32_t stops[4];
    int n_stops = lmf_weights_stop_tokens(w, stops);

    const char *names[] = {"get_weather", "get_time"};
    const char *params[] = {"{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": "
                            "{\"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\", \"unit\"]}", NULL};
    struct {
        const char *name, *ask;
        lmf_grammar *g;
    } cases[3] = {{"JSON mode", "List three colors as JSON.", NULL},
                  {"schema", "Ann is 41, happy, and has a cat called Tom. Describe her as JSON.", NULL},
                  {"tool calls", "What is the weather like in Lisbon?", NULL}};
    lmf_grammar_json(NULL, &cases[0].g);
    if (lmf_grammar_json(PERSON, &cases[1].g) != LMF_OK ||
        lmf_grammar_tool_calls(2, names, params, 0, &cases[2].g) != LMF_OK) {
        fprintf(stderr, "%s\n", lmf_last_error());
        return 1;
    }
    printf("| grammar | tokens | mask median ms | mask mean ms | mask max ms | decode step median ms | "
           "masks / step |\n");
    printf("|---|---|---|---|---|---|---|\n");
    char *replies[3];
    float *lg = malloc(sizeof(float) * (size_t)V);
    double *mask_ms = malloc(sizeof(double) * (size_t)max_new), *step_ms = malloc(sizeof(double) * (size_t)max_new);
    for (int c = 0; c < 3; c++) {
        char prompt[512];
        snprintf(prompt, sizeof prompt, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", cases[c].ask);
        lmf_ids ids = {0};
        lmf_tokenizer_encode(tok, prompt, strlen(prompt), LMF_ENCODE_ALLOW_SPECIAL, &ids);
        lmf_session *s;
        lmf_session_create(w, 2048, &s);
        const float *logits;
        lmf_session_eval(s, ids.data, (int)ids.len, 0, &logits);
        lmf_grammar_state *st = lmf_grammar_state_create(cases[c].g);
        lmf_text reply = {0};
        int n = 0;
        for (; n < max_new; n++) {
            memcpy(lg, logits, sizeof(float) * (size_t)V);
            double a = now();
            int allowed = lmf_grammar_mask(st, gv, stops, n_stops, lg);
            mask_ms[n] = 1e3 * (now() - a);
            int32_t best = 0;
            for (int i = 1; i < V; i++)
                if (lg[i] > lg[best]) best = i;
            int stop = 0;
            for (int k = 0; k < n_stops; k++) stop |= best == stops[k];
            if (!allowed || stop) {
                step_ms[n] = step_ms[n > 0 ? n - 1 : 0];
                n++;
                break;
            }
            lmf_grammar_accept(st, gv, best);
            size_t l;
            const char *b = lmf_tokenizer_token_bytes(tok, best, &l);
            lmf_text_push(&reply, b, l);
            a = now();
            lmf_session_eval(s, &best, 1, 0, &logits);
            step_ms[n] = 1e3 * (now() - a);
        }
        double sum = 0, mx = 0;
        for (int i = 0; i < n; i++) sum += mask_ms[i], mx = mask_ms[i] > mx ? mask_ms[i] : mx;
        qsort(mask_ms, (size_t)n, sizeof *mask_ms, cmp_double);
        qsort(step_ms, (size_t)n, sizeof *step_ms, cmp_double);
        printf("| %s | %d | %.3f | %.3f | %.3f | %.2f | %.1f%% |\n", cases[c].name, n, mask_ms[n / 2], sum / n, mx,
               step_ms[n / 2], 100.0 * (sum / n) / step_ms[n / 2]);
        lmf_text_push(&reply, "", 1);
        replies[c] = reply.data;
        lmf_grammar_state_free(st);
        lmf_session_free(s);
        free(ids.data);
    }
    printf("\n");
    for (int c = 0; c < 3; c++) {
        printf("%s reply: %s\n", cases[c].name, replies[c]);
        free(replies[c]);
        lmf_grammar_free(cases[c].g);
    }
    free(lg), free(mask_ms), free(step_ms);
    lmf_grammar_vocab_free(gv);
    lmf_weights_free(w);
    return 0;
}
