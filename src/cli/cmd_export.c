/* cmd_export.c — `lmforge export MODEL --to gguf|safetensors -o OUT [--type f32|f16|bf16] [--name NAME]
 * [--merge-lora ADAPTER]`: writes a model (an lmforge checkpoint or run folder, a Hugging Face folder or a GGUF file),
 * optionally with a LoRA adapter merged in (W += scale B A), so that llama.cpp (GGUF) or Hugging Face transformers
 * (a folder with config.json + model.safetensors + tokenizer files) loads it. */
#include "cli/cli.h"
#include "core/status.h"
#include "io/gguf.h"
#include "model/export.h"
#include "model/lora.h"
#include "model/lora_io.h"
#include "model/weights.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void export_help(FILE *f) {
    fprintf(f, "usage: lmforge export MODEL --to gguf|safetensors -o OUT [--type f32|f16|bf16] [--name NAME]\n"
               "                      [--merge-lora ADAPTER]\n\n"
               "MODEL: an lmforge checkpoint (ckpt-*.lmfc, or a run folder: its newest checkpoint), a Hugging Face\n"
               "folder (config.json + safetensors) or a GGUF file.\n"
               "  --to gguf          one GGUF file in llama.cpp's conventions (llama or gpt2 architecture, the\n"
               "                     tokenizer as tokenizer.ggml.*); --type f32 (default) or f16\n"
               "  --to safetensors   a Hugging Face folder OUT: config.json, model.safetensors and, with a\n"
               "                     tokenizer, tokenizer.json, tokenizer_config.json, generation_config.json;\n"
               "                     --type f32 (default), f16 or bf16\n"
               "  -o, --output OUT   the file (gguf) or folder (safetensors) to write; files are written atomically\n"
               "  --name NAME        general.name in the GGUF (default lmforge-<family>)\n"
               "  --merge-lora ADAPTER  merge a LoRA adapter into the weights before writing (W += scale B A, as\n"
               "                     PEFT's merge_and_unload): a PEFT folder (adapter_config.json +\n"
               "                     adapter_model.safetensors) or a GGUF adapter file; the adapted matrices are\n"
               "                     merged in fp32, then written in --type like the rest\n");
}

/* Any model lmforge reads, by what the path is. */
int cmd_export(int argc, char **argv) {
    const char *model = NULL, *to = NULL, *out = NULL, *type_s = "f32", *name = NULL, *lora_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            export_help(stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--to") ? &to : (!strcmp(a, "-o") || !strcmp(a, "--output")) ? &out
                         : !strcmp(a, "--type") ? &type_s : !strcmp(a, "--name") ? &name
                         : !strcmp(a, "--merge-lora") ? &lora_path : NULL;
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lmforge export: %s needs a value\n", a);
                return 2;
            }
            *dst = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "lmforge export: unknown flag %s (see lmforge export --help)\n", a);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "lmforge export: one MODEL only (got %s and %s)\n", model, a);
            return 2;
        }
    }
    if (!model || !to || !out) {
        export_help(stderr);
        return 2;
    }
    lmf_export_format fmt;
    uint32_t type;
    lmf_status s = lmf_export_format_parse(to, &fmt);
    if (s == LMF_OK) s = lmf_export_type_parse(type_s, &type);
    if (s != LMF_OK) return cli_fail("export", s);
    lmf_weights *w;
    if ((s = lmf_weights_load(model, &w)) != LMF_OK) return cli_fail("export", s);
    lmf_weights *base = w, *merged = NULL;
    if (lora_path) {
        lmf_lora *l = NULL;
        struct stat sb;
        if (stat(lora_path, &sb) != 0) s = lmf_fail(LMF_ERR_IO, "%s: no such adapter file or folder", lora_path);
        else s = S_ISDIR(sb.st_mode) ? lmf_lora_load_peft(lora_path, lmf_weights_config(base), &l)
                                     : lmf_lora_load_gguf(lora_path, lmf_weights_config(base), &l);
        if (s == LMF_OK) s = lmf_lora_merge(base, l, &merged);
        if (s == LMF_OK)
            fprintf(stderr, "lmforge export: merged %s (r=%d, scale %g, %d module%s a layer)\n", lora_path, l->r,
                    (double)l->scale, l->n_mod, l->n_mod == 1 ? "" : "s");
        lmf_lora_free(l);
        if (s != LMF_OK) {
            lmf_weights_free(base);
            return cli_fail("export", s);
        }
        w = merged;
    }
    s = fmt == LMF_EXPORT_GGUF ? lmf_export_gguf(w, out, type, name) : lmf_export_safetensors(w, out, type);
    if (s == LMF_OK) {
        const lmf_model_config *c = lmf_weights_config(w);
        fprintf(stderr, "lmforge export: %s %s (L=%d C=%d heads=%d/%d V=%d, %s) -> %s %s (%s)\n", w->source,
                lmf_arch_name(w->cfg.arch), c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->vocab_size,
                w->tok ? "with tokenizer" : "no tokenizer", fmt == LMF_EXPORT_GGUF ? "GGUF" : "Hugging Face folder",
                out, type_s);
    }
    lmf_lora_merged_free(merged); /* before the base: it borrows the base's storage and tokenizer */
    lmf_weights_free(base);
    return s == LMF_OK ? 0 : cli_fail("export", s);
}
