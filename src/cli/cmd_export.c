/* cmd_export.c — `lmforge export MODEL --to gguf|safetensors -o OUT [--type f32|f16|bf16] [--name NAME]
 * [--merge-lora ADAPTER]`: writes a model (an lmforge checkpoint or run folder, a Hugging Face folder or a GGUF file),
 * optionally with a LoRA adapter merged in (W += scale B A), so that llama.cpp (GGUF) or Hugging Face transformers
 * (a folder with config.json + model.safetensors + tokenizer files) loads it. */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/status.h"
#include "io/gguf.h"
#include "model/export.h"
#include "model/lora.h"
#include "model/lora_io.h"
#include "model/weights.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Any model lmforge reads, by what the path is. */
int cmd_export(int argc, char **argv) {
    const char *to = NULL, *out = NULL, *type_s = "f32", *name = NULL, *lora_path = NULL, *pos[1];
    int n_pos = 0;
    const cli_opt opts[] = {
        CLI_OPT(NULL, "--to", CLI_STR, &to, "FORMAT",
                "gguf: one GGUF file in llama.cpp's conventions (llama, smollm3, qwen2, qwen2moe, qwen3, qwen3moe, olmoe, "
                "phi3, gemma3, gemma2 "
                "or gpt2 architecture, the tokenizer as tokenizer.ggml.*); safetensors: a Hugging Face folder (config.json, model.safetensors and, with a "
                "tokenizer, tokenizer.json, tokenizer_config.json, generation_config.json) (required)"),
        CLI_OPT("-o", "--output", CLI_STR, &out, "OUT",
                "the file (gguf) or folder (safetensors) to write, atomically (required)"),
        CLI_OPT(NULL, "--type", CLI_STR, &type_s, "TYPE", "f32, f16, bf16 or, for gguf, any type lmforge quantize writes (q8_0, q4_k_m, ...)"),
        CLI_OPT(NULL, "--name", CLI_STR, &name, "NAME", "general.name in the GGUF", .def = "lmforge-<family>"),
        CLI_OPT(NULL, "--merge-lora", CLI_STR, &lora_path, "ADAPTER",
                "merge a LoRA adapter into the weights before writing (W += scale B A, as PEFT's "
                "merge_and_unload): a PEFT folder or a GGUF adapter file; merged in fp32, then written in --type"),
    };
    cli_cmd c = {.cmd = "export", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]), .pos = pos,
                 .max_pos = 1, .n_pos = &n_pos,
                 .usage = "usage: lmforge export MODEL --to gguf|safetensors -o OUT [flags]\n\n"
                          "MODEL: an lmforge checkpoint (ckpt-*.lmfc, or a run folder: its newest checkpoint), a "
                          "Hugging Face\nfolder (config.json + safetensors) or a GGUF file.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && (!n_pos || !to || !out)) {
        fprintf(stderr, "lmforge export: need MODEL, --to FORMAT and -o OUT (see --help)\n");
        r = 0;
    }
    if (r <= 0) return r < 0 ? 0 : 2;
    const char *model = pos[0];
    lmf_export_format fmt;
    uint32_t type;
    lmf_status s = lmf_export_format_parse(to, &fmt);
    if (s == LMF_OK) s = lmf_export_type_parse(type_s, &type);
    if (s != LMF_OK) return cli_fail("export", s);
    lmf_weights *w;
    if ((s = lmf_weights_open(model, &w)) != LMF_OK) return cli_fail("export", s);
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
    cli_term term = {0};
    s = fmt == LMF_EXPORT_GGUF ? lmf_export_gguf_sink(w, out, type, name, cli_term_sink(&term))
                               : lmf_export_safetensors(w, out, type);
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
