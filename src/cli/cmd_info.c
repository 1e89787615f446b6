/* cmd_info.c — `lmforge info MODEL`: what a model holds. A GGUF file is shown as stored: format, architecture and
 * hyperparameters, tokenizer, every metadata key (long values summarised) and every tensor with its type and shape.
 * Any other model (Hugging Face folder, lmforge checkpoint) is shown as loaded for inference: family,
 * hyperparameters, tokenizer and every weight tensor with its type and shape. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/status.h"
#include "io/gguf.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

typedef unsigned long long ull;

/* A string, escaped and cut to at most max bytes of input. */
static void print_str(const char *s, size_t len, size_t max) {
    putchar('"');
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > max) printf("... (%zu bytes)", len);
}

static void print_scalar(lmf_gguf_type t, const uint8_t *p) {
    switch (t) {
    case LMF_GGUF_F32: { float f; memcpy(&f, p, 4); printf("%.9g", f); break; }
    case LMF_GGUF_F64: { double d; memcpy(&d, p, 8); printf("%.17g", d); break; }
    case LMF_GGUF_BOOL: fputs(p[0] ? "true" : "false", stdout); break;
    case LMF_GGUF_U64: { uint64_t u; memcpy(&u, p, 8); printf("%llu", (ull)u); break; }
    default: break;
    }
}

static void print_value(const lmf_gguf *g, const lmf_gguf_kv *kv) {
    if (kv->type == LMF_GGUF_STRING) {
        print_str(kv->str, kv->len, 100);
        return;
    }
    if (kv->type != LMF_GGUF_ARRAY) {
        if (kv->type == LMF_GGUF_F32 || kv->type == LMF_GGUF_F64 || kv->type == LMF_GGUF_BOOL || kv->type == LMF_GGUF_U64) {
            print_scalar(kv->type, kv->data);
        } else {
            int64_t v;
            lmf_gguf_get_i64(g, kv->key, &v);
            printf("%lld", (long long)v);
        }
        return;
    }
    const uint64_t show = 6;
    printf("[%llu x %s] [", (ull)kv->count, lmf_gguf_type_name(kv->elem_type));
    for (uint64_t i = 0; i < kv->count && i < show; i++) {
        if (i) fputs(", ", stdout);
        if (kv->elem_type == LMF_GGUF_STRING) {
            size_t len;
            const char *s = lmf_gguf_arr_str(g, kv, i, &len);
            print_str(s, len, 40);
        } else if (kv->elem_type == LMF_GGUF_F32 || kv->elem_type == LMF_GGUF_F64) {
            printf("%.6g", lmf_gguf_arr_float(kv, i));
        } else if (kv->elem_type == LMF_GGUF_BOOL) {
            fputs(lmf_gguf_arr_int(kv, i) ? "true" : "false", stdout);
        } else {
            printf("%lld", (long long)lmf_gguf_arr_int(kv, i));
        }
    }
    printf("%s]", kv->count > show ? ", ..." : "");
}

/* Whether chat runs the model's template (text, or NULL), and of what family (docs/chat-templates.md). */
static void print_chat_template(const char *prefix, const char *text) {
    if (!text) {
        printf("%snone (chat uses the built-in ChatML renderer)\n", prefix);
        return;
    }
    lmf_chat_template t;
    if (lmf_chat_template_parse(text, &t) != LMF_OK) {
        printf("%s%zu bytes, does not compile: %s\n", prefix, strlen(text), lmf_last_error());
        return;
    }
    printf("%s%zu bytes, %s family, %s\n", prefix, strlen(text), lmf_chat_format_name(t.format),
           t.jinja ? "run as written" : "does not compile here: the family's built-in renderer stands in");
    lmf_chat_template_free(&t);
}

static void print_token(const lmf_gguf *g, const char *what, int32_t id) {
    if (id < 0) return;
    const lmf_gguf_kv *tokens = lmf_gguf_find(g, "tokenizer.ggml.tokens");
    printf("  %-16s %d", what, id);
    if (tokens && tokens->type == LMF_GGUF_ARRAY && tokens->elem_type == LMF_GGUF_STRING && (uint64_t)id < tokens->count) {
        size_t len;
        const char *s = lmf_gguf_arr_str(g, tokens, (uint64_t)id, &len);
        putchar(' ');
        print_str(s, len, 40);
    }
    putchar('\n');
}

static void print_tokenizer(const lmf_gguf *g) {
    const char *model = NULL, *pre = NULL;
    if (!lmf_gguf_find(g, "tokenizer.ggml.model")) {
        printf("\ntokenizer: none (no tokenizer.ggml.model)\n");
        return;
    }
    lmf_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (lmf_gguf_find(g, "tokenizer.ggml.pre")) lmf_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    const lmf_gguf_kv *kv;
    printf("\ntokenizer:\n  model            %s\n  pre              %s\n", model ? model : "(not a string)",
           pre ? pre : "(absent: default)");
    if (lmf_gguf_get_arr(g, "tokenizer.ggml.tokens", LMF_GGUF_STRING, &kv) == LMF_OK)
        printf("  vocab size       %llu\n", (ull)kv->count);
    if (lmf_gguf_find(g, "tokenizer.ggml.merges") &&
        lmf_gguf_get_arr(g, "tokenizer.ggml.merges", LMF_GGUF_STRING, &kv) == LMF_OK)
        printf("  merges           %llu\n", (ull)kv->count);
    if (lmf_gguf_find(g, "tokenizer.ggml.token_type") &&
        lmf_gguf_get_arr(g, "tokenizer.ggml.token_type", LMF_GGUF_I64, &kv) == LMF_OK) {
        uint64_t by_type[8] = {0};
        for (uint64_t i = 0; i < kv->count; i++) {
            int64_t t = lmf_gguf_arr_int(kv, i);
            by_type[t >= 0 && t < 7 ? t : 7]++;
        }
        static const char *const names[8] = {"undefined", "normal", "unknown", "control", "user-defined", "unused",
                                             "byte", "other"};
        printf("  token types     ");
        for (int t = 0; t < 8; t++)
            if (by_type[t]) printf(" %s %llu", names[t], (ull)by_type[t]);
        putchar('\n');
    }
    lmf_gguf_specials sp;
    if (lmf_tokenizer_gguf_specials(g, &sp) != LMF_OK) {
        printf("  special tokens   invalid: %s\n", lmf_last_error());
        return;
    }
    print_token(g, "bos", sp.bos);
    print_token(g, "eos", sp.eos);
    print_token(g, "unknown", sp.unk);
    print_token(g, "separator", sp.sep);
    print_token(g, "padding", sp.pad);
    print_token(g, "eot", sp.eot);
    print_token(g, "eom", sp.eom);
    if (sp.add_bos >= 0) printf("  add_bos_token    %s\n", sp.add_bos ? "true" : "false");
    if (sp.add_eos >= 0) printf("  add_eos_token    %s\n", sp.add_eos ? "true" : "false");
    if ((kv = lmf_gguf_find(g, "tokenizer.chat_template")) && kv->type == LMF_GGUF_STRING)
        print_chat_template("  chat template    ", kv->str);
}

static void fmt_bytes(uint64_t n, char *out, size_t cap) {
    if (n >= (1ull << 30)) snprintf(out, cap, "%.2f GiB", n / 1073741824.0);
    else if (n >= (1ull << 20)) snprintf(out, cap, "%.2f MiB", n / 1048576.0);
    else if (n >= 1024) snprintf(out, cap, "%.1f KiB", n / 1024.0);
    else snprintf(out, cap, "%llu B", (ull)n);
}

static void print_wtensor(const char *name, const lmf_wtensor *t, uint64_t *params, uint64_t *bytes) {
    if (!t->rows) return;
    char size[32], shape[48];
    size_t b = (size_t)t->rows * t->row_bytes;
    fmt_bytes(b, size, sizeof size);
    snprintf(shape, sizeof shape, "[%d, %d]", t->rows, t->cols);
    printf("  %-36s %-7s %-22s %10s\n", name, lmf_ggml_type_name(t->type), shape, size);
    *params += (uint64_t)t->rows * t->cols, *bytes += b;
}

/* A model that is not a GGUF file, through the inference loader. */
static int info_loaded(const char *path) {
    lmf_weights *w;
    lmf_status s = lmf_weights_load(path, &w);
    if (s != LMF_OK) return cli_fail("info", s);
    const lmf_model_config *c = &w->cfg;
    char size[32];
    fmt_bytes(w->file_bytes, size, sizeof size);
    printf("%s: %s, %s on disk\n\nfamily: %s\n", path, w->source, size, lmf_arch_name(w->cfg.arch));
    printf("  %-28s %d\n  %-28s %d\n  %-28s %d\n  %-28s %d\n  %-28s %d\n  %-28s %d\n  %-28s %d\n",
           "vocab_size", c->vocab_size, "max_seq_len", c->max_seq_len, "n_layer", c->n_layer, "n_embd", c->n_embd,
           "n_head", c->n_head, "n_kv_head", c->n_kv_head, "ffn_dim", c->ffn_dim);
    if (c->head_dim) printf("  %-28s %d (q %d wide)\n", "head_dim", c->head_dim, lmf_q_width(c));
    printf("  %-28s %.9g\n  %-28s %s\n  %-28s %s\n  %-28s %s\n  %-28s %s\n", "norm_eps", c->norm_eps, "norm",
           w->cfg.norm == LMF_NORM_RMS ? "rmsnorm" : "layernorm", "activation",
           w->cfg.act == LMF_ACT_SWIGLU  ? "swiglu"
           : w->cfg.act == LMF_ACT_GEGLU ? "geglu"
           : w->cfg.act == LMF_ACT_RELU  ? "relu"
                                         : "gelu_tanh",
           "positions",
           w->cfg.pos == LMF_POS_LEARNED ? "learned" : w->cfg.pos == LMF_POS_ROPE_HALF ? "rope (rotate_half)"
                                                                            : "rope (interleaved pairs)",
           "output head", c->tied_embeddings ? "tied to the token embedding" : "separate");
    if (w->cfg.pos != LMF_POS_LEARNED) printf("  %-28s %.9g\n", "rope_theta", c->rope_theta);
    if (c->sliding_window && c->swa_pattern)
        printf("  %-28s %d positions, every %dth layer global\n", "sliding_window", c->sliding_window, c->swa_pattern);
    else if (c->sliding_window) printf("  %-28s %d positions, every layer\n", "sliding_window", c->sliding_window);
    if (c->rope_theta_swa != 0.0f) printf("  %-28s %.9g\n", "rope_theta (windowed layers)", c->rope_theta_swa);
    if (c->nope_interval) printf("  %-28s every %d layers\n", "no RoPE (NoPE)", c->nope_interval);
    if (c->attn_softcap != 0.0f || c->final_softcap != 0.0f)
        printf("  %-28s scores %.9g, logits %.9g\n", "soft-capping", c->attn_softcap, c->final_softcap);
    if (c->rope_scaling == LMF_ROPE_SCALING_LINEAR) printf("  %-28s linear, factor %.9g\n", "rope_scaling", c->rope_factor);
    if (c->rope_scaling == LMF_ROPE_SCALING_LONGROPE)
        printf("  %-28s longrope, attention factor %.9g, original context %d\n", "rope_scaling", c->rope_factor,
               c->rope_orig_ctx);
    if (c->rope_scaling == LMF_ROPE_SCALING_LLAMA3)
        printf("  %-28s llama3, factor %.9g, low_freq_factor %.9g, high_freq_factor %.9g, original context %d\n",
               "rope_scaling", c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_orig_ctx);
    if (c->n_expert)
        printf("  %-28s %d (ffn_dim each)\n  %-28s %d\n  %-28s %d\n  %-28s %s\n  %-28s %.9g\n  %-28s %.9g\n"
               "  %-28s %.9g\n", "n_expert", c->n_expert, "n_expert_used", c->n_expert_used, "shared_ffn_dim",
               c->shared_ffn_dim, "norm_topk_prob", c->norm_topk_prob ? "true" : "false", "router_aux_coef",
               c->router_aux_coef, "router_z_coef", c->router_z_coef, "capacity_factor", c->capacity_factor);
    if (w->tok) {
        printf("\ntokenizer: %d tokens, %s%s; bos %d eos %d\n", lmf_tokenizer_vocab_size(w->tok),
               lmf_tokenizer_sentencepiece(w->tok) ? "SentencePiece BPE" : "byte-level BPE, pre-tokenizer ",
               lmf_tokenizer_sentencepiece(w->tok) ? "" : lmf_pretok_name(lmf_tokenizer_pretok(w->tok)), w->bos_id,
               w->eos_id);
        print_chat_template("chat template: ", w->chat_template);
    } else
        printf("\ntokenizer: none\n");
    uint64_t params = 0, bytes = 0;
    printf("\ntensors (as loaded; shape (out, in)):\n");
    print_wtensor("token_embedding", &w->tok_emb, &params, &bytes);
    print_wtensor("position_embedding", &w->pos_emb, &params, &bytes);
    char name[64];
    for (int l = 0; l < c->n_layer; l++) {
        const lmf_layer_weights *L = &w->layers[l];
        const lmf_wtensor *ts[LMF_LAYER_MATRICES];
        lmf_layer_matrices(L, ts);
        const char *names[] = {"attn.q", "attn.k", "attn.v", "attn.out", "ffn.gate", "ffn.up", "ffn.down"};
        for (int i = 0; i < LMF_LAYER_MATRICES; i++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, names[i]);
            print_wtensor(name, ts[i], &params, &bytes);
        }
        if (!c->n_expert) continue;
        snprintf(name, sizeof name, "layers.%d.router", l);
        print_wtensor(name, &L->router, &params, &bytes);
        static const char *const en[] = {"gate", "up", "down"};
        for (int e = 0; e < 3 * c->n_expert; e++) {
            snprintf(name, sizeof name, "layers.%d.experts.%d.%s", l, e / 3, en[e % 3]);
            print_wtensor(name, &L->experts[e], &params, &bytes);
        }
        const lmf_wtensor *sh[] = {&L->sh_gate, &L->sh_up, &L->sh_down};
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "layers.%d.shared.%s", l, en[i]);
            print_wtensor(name, sh[i], &params, &bytes);
        }
    }
    if (!c->tied_embeddings) print_wtensor("output_head", &w->lm_head, &params, &bytes);
    fmt_bytes(bytes, size, sizeof size);
    printf("\n%llu parameters in matrices, %s\n", (ull)params, size);
    lmf_weights_free(w);
    if (fflush(stdout) != 0) return cli_fail("info", lmf_fail(LMF_ERR_IO, "stdout: write error"));
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *pos[1];
    int n_pos = 0, hash = 0;
    const cli_opt opts[] = {
        CLI_OPT(NULL, "--hash", CLI_BOOL, &hash, NULL,
                "also each GGUF tensor's xxh64 (of its data bytes, as llama.cpp's gguf-hash prints it with its xxh64 option), to "
                "compare files tensor by tensor whatever their metadata or tensor order"),
    };
    cli_cmd c = {.cmd = "info", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]), .pos = pos, .max_pos = 1,
                 .n_pos = &n_pos,
                 .usage = "usage: lmforge info MODEL [--hash]\n\n"
                          "MODEL is a GGUF file, a Hugging Face folder or an lmforge checkpoint. For a GGUF file it "
                          "prints\nwhat the file holds: version, alignment and size; the architecture and its "
                          "hyperparameters\n(general.architecture and the <arch>.* keys); the tokenizer (model, "
                          "pre-tokenizer, vocabulary size,\nspecial token ids); every metadata key with its type and "
                          "value (long strings and arrays summarised);\nevery tensor with its ggml type, shape (ggml "
                          "order: innermost first) and bytes. For other models: the\nfamily, hyperparameters, "
                          "tokenizer and every weight tensor as loaded for inference (shape as (out, in)).\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && !n_pos) {
        fprintf(stderr, "lmforge info: need a MODEL (see --help)\n");
        r = 0;
    }
    if (r <= 0) return r < 0 ? 0 : 2;
    const char *path = pos[0];
    if (!lmf_gguf_sniff(path)) {
        if (hash) {
            fprintf(stderr, "lmforge info: --hash hashes a GGUF file's tensors; %s is not a GGUF file\n", path);
            return 2;
        }
        return info_loaded(path);
    }
    lmf_gguf *g;
    lmf_status s = lmf_gguf_open(path, &g);
    if (s != LMF_OK) return cli_fail("info", s);
    char size[32];
    fmt_bytes(g->size, size, sizeof size);
    printf("%s: GGUF v%u, %zu bytes (%s), %lld metadata keys, %lld tensors, alignment %u, data at offset %llu\n",
           path, g->version, g->size, size, (long long)g->n_kv, (long long)g->n_tensors, g->alignment,
           (ull)g->data_offset);

    const char *arch = NULL;
    if (lmf_gguf_find(g, "general.architecture")) lmf_gguf_get_str(g, "general.architecture", &arch);
    const char *name = NULL;
    if (lmf_gguf_find(g, "general.name")) lmf_gguf_get_str(g, "general.name", &name);
    printf("\narchitecture: %s%s%s%s\n", arch ? arch : "(none)", name ? " (" : "", name ? name : "", name ? ")" : "");
    size_t alen = arch ? strlen(arch) : 0;
    for (int64_t i = 0; arch && i < g->n_kv; i++) {
        const lmf_gguf_kv *kv = &g->kv[i];
        if (strncmp(kv->key, arch, alen) || kv->key[alen] != '.') continue;
        printf("  %-40s ", kv->key + alen + 1);
        print_value(g, kv);
        putchar('\n');
    }
    print_tokenizer(g);

    printf("\nmetadata (%lld keys):\n", (long long)g->n_kv);
    for (int64_t i = 0; i < g->n_kv; i++) {
        const lmf_gguf_kv *kv = &g->kv[i];
        printf("  %-44s %-6s ", kv->key, lmf_gguf_type_name(kv->type));
        print_value(g, kv);
        putchar('\n');
    }

    uint64_t count_by[LMF_GGML_TYPE_COUNT] = {0}, bytes_by[LMF_GGML_TYPE_COUNT] = {0}, params = 0;
    printf("\ntensors (%lld):\n", (long long)g->n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const lmf_gguf_tensor *t = &g->tensors[i];
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->n_dims; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        snprintf(shape + n, sizeof shape - (size_t)n, "]");
        fmt_bytes(t->nbytes, size, sizeof size);
        printf("  %-36s %-7s %-22s %10s  at %llu", t->name, lmf_ggml_type_name(t->type), shape, size,
               (ull)(g->data_offset + t->offset));
        if (hash) printf("  xxh64 %016llx", (ull)XXH64(t->data, t->nbytes, 0));
        putchar('\n');
        count_by[t->type]++, bytes_by[t->type] += t->nbytes, params += t->n_elements;
    }
    printf("\n%llu parameters; by type:", (ull)params);
    for (int t = 0; t < LMF_GGML_TYPE_COUNT; t++) {
        if (!count_by[t]) continue;
        fmt_bytes(bytes_by[t], size, sizeof size);
        printf("  %s %llu (%s)", lmf_ggml_type_name((uint32_t)t), (ull)count_by[t], size);
    }
    printf("\n");
    lmf_gguf_close(g);
    if (fflush(stdout) != 0) return cli_fail("info", lmf_fail(LMF_ERR_IO, "stdout: write error"));
    return 0;
}
