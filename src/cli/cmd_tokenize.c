/* cmd_tokenize.c — `lmforge tokenize` (text <-> ids through a tokenizer) and `lmforge tokenizer train` (learn a
 * byte-level BPE from text files and save it as a Hugging Face tokenizer.json). */
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/alloc.h"
#include "core/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Parses a JSON array of integers ("[1, 2, 3]") into ids; errors give the byte offset. */
static lmf_status parse_ids(const char *s, size_t n, lmf_ids *ids) {
    size_t i = 0;
#define SKIP_WS() while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
    SKIP_WS();
    if (i >= n || s[i] != '[') return lmf_fail(LMF_ERR_ARG, "stdin: expected a JSON array of token ids at byte %zu", i);
    i++;
    SKIP_WS();
    if (i < n && s[i] == ']') return LMF_OK;
    for (;;) {
        SKIP_WS();
        size_t start = i;
        long long v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && v <= INT32_MAX) v = v * 10 + (s[i++] - '0');
        if (i == start || v > INT32_MAX)
            return lmf_fail(LMF_ERR_ARG, "stdin: byte %zu: expected a token id (integer 0..2^31-1)", start);
        int32_t id = (int32_t)v;
        if (ids->len == ids->cap) {
            ids->cap = ids->cap ? 2 * ids->cap : 1024;
            ids->data = lmf_xrealloc(ids->data, ids->cap * sizeof *ids->data);
        }
        ids->data[ids->len++] = id;
        SKIP_WS();
        if (i < n && s[i] == ',') {
            i++;
            continue;
        }
        if (i < n && s[i] == ']') break;
        return lmf_fail(LMF_ERR_ARG, "stdin: byte %zu: expected ',' or ']'", i);
    }
    i++;
    SKIP_WS();
    if (i != n) return lmf_fail(LMF_ERR_ARG, "stdin: byte %zu: unexpected text after the array", i);
#undef SKIP_WS
    return LMF_OK;
}

static void print_ids(const lmf_ids *ids) {
    char buf[1 << 16];
    size_t k = 0;
    buf[k++] = '[';
    for (size_t i = 0; i < ids->len; i++) {
        if (k > sizeof buf - 32) {
            fwrite(buf, 1, k, stdout);
            k = 0;
        }
        k += (size_t)snprintf(buf + k, 32, i ? ", %d" : "%d", ids->data[i]);
    }
    buf[k++] = ']';
    buf[k++] = '\n';
    fwrite(buf, 1, k, stdout);
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *save = NULL;
    int decode = 0, stats = 0, no_special = 0, allow_special = 0, skip_special = 0;
    const cli_opt opts[] = {
        CLI_OPT("-t", "--tokenizer", CLI_STR, &path, "PATH",
                "tokenizer.json (or a folder holding one), GPT-2's encoder.json + vocab.bpe folder, a GGUF model, or "
                "SentencePiece's tokenizer.model"),
        CLI_OPT(NULL, "--decode", CLI_BOOL, &decode, NULL, "ids -> text"),
        CLI_OPT(NULL, "--stats", CLI_BOOL, &stats, NULL,
                "print bytes, tokens, tokens per byte and encode throughput instead of ids"),
        CLI_OPT(NULL, "--no-special", CLI_BOOL, &no_special, NULL,
                "encode special-token text (<|endoftext|>) as ordinary text; by default it is the special token's "
                "id, as in `lmforge generate -p`"),
        CLI_OPT(NULL, "--allow-special", CLI_BOOL, &allow_special, NULL,
                "match special tokens (the default; kept for older scripts)"),
        CLI_OPT(NULL, "--skip-special", CLI_BOOL, &skip_special, NULL, "with --decode: leave special tokens out"),
        CLI_OPT(NULL, "--save", CLI_STR, &save, "OUT.json",
                "write the tokenizer as a Hugging Face tokenizer.json and exit (e.g. a GGUF model's vocabulary)"),
    };
    cli_cmd c = {.cmd = "tokenize", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
                 .usage = "usage: lmforge tokenize -t TOKENIZER [flags] < TEXT\n\n"
                          "Encodes UTF-8 text from stdin and prints the token ids as a JSON array; with --decode "
                          "reads a JSON\narray of ids from stdin and prints the text.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && !path) {
        fprintf(stderr, "lmforge tokenize: -t TOKENIZER is required (see --help)\n");
        r = 0;
    }
    if (r > 0 && no_special && allow_special) {
        fprintf(stderr, "lmforge tokenize: --no-special and --allow-special exclude each other\n");
        r = 0;
    }
    if (r <= 0) return r < 0 ? 0 : 2;
    unsigned eflags = no_special ? 0 : LMF_ENCODE_ALLOW_SPECIAL;
    unsigned dflags = LMF_DECODE_TEXT_START | (skip_special ? LMF_DECODE_SKIP_SPECIAL : 0); /* a whole text */
    lmf_tokenizer *tok;
    lmf_status s = lmf_tokenizer_load(path, &tok);
    if (s != LMF_OK) return cli_fail("tokenize", s);
    if (save) {
        s = lmf_tokenizer_save(tok, save);
        lmf_tokenizer_free(tok);
        return s == LMF_OK ? 0 : cli_fail("tokenize", s);
    }
    char *in;
    size_t n;
    if ((s = cli_read_all("-", &in, &n)) != LMF_OK) {
        lmf_tokenizer_free(tok);
        return cli_fail("tokenize", s);
    }
    lmf_ids ids = {0};
    lmf_text text = {0};
    if (decode) {
        s = parse_ids(in, n, &ids);
        if (s == LMF_OK) s = lmf_tokenizer_decode(tok, ids.data, ids.len, dflags, &text);
        if (s == LMF_OK) fwrite(text.data ? text.data : "", 1, text.len, stdout);
    } else {
        double t0 = now_s();
        s = lmf_tokenizer_encode(tok, in, n, eflags, &ids);
        double dt = now_s() - t0;
        if (s == LMF_OK && stats)
            printf("bytes %zu  tokens %zu  tokens/byte %.4f  bytes/token %.3f  encode %.3f s  %.2f MB/s\n", n, ids.len,
                   n ? (double)ids.len / n : 0.0, ids.len ? (double)n / ids.len : 0.0, dt, dt > 0 ? n / dt / 1e6 : 0.0);
        else if (s == LMF_OK)
            print_ids(&ids);
    }
    free(in);
    free(ids.data);
    free(text.data);
    lmf_tokenizer_free(tok);
    if ((fflush(stdout) != 0 || ferror(stdout)) && s == LMF_OK) s = lmf_fail(LMF_ERR_IO, "stdout: write error");
    return s == LMF_OK ? 0 : cli_fail("tokenize", s);
}

/* ---- tokenizer train ------------------------------------------------------------------------------------------- */

static lmf_status set_pretok(void *dst, const char *flag, const char *v) {
    lmf_pretok *p = dst;
    if (lmf_pretok_parse(v, p) != LMF_OK || *p == LMF_PRETOK_CUSTOM)
        return lmf_fail(LMF_ERR_ARG, "%s: expected gpt2, llama3, smollm or qwen2, got '%s'", flag, v);
    return LMF_OK;
}

static int train(int argc, char **argv) {
    lmf_bpe_train_config cfg = {.vocab_size = 0, .pretok = LMF_PRETOK_GPT2};
    const char **specials = calloc((size_t)argc + 1, sizeof *specials);
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    int n_files = 0, rc = 0;
    const char *out = NULL;
    uint64_t min_freq = 0;
    cli_list sp = {specials, 0, argc};
    const cli_opt opts[] = {
        CLI_OPT(NULL, "--vocab-size", CLI_INT, &cfg.vocab_size, "N",
                "final vocabulary size, special tokens and the 256 bytes included (required)", .def = "", .lo = 1),
        CLI_OPT(NULL, "--special", CLI_LIST, &sp, "TEXT", "a special token (repeatable), e.g. \"<|endoftext|>\"",
                .def = ""),
        CLI_OPT(NULL, "--pretok", CLI_FN, &cfg.pretok, "NAME", "pre-tokenizer: gpt2, llama3, smollm or qwen2", .def = "gpt2",
                .fn = set_pretok),
        CLI_OPT(NULL, "--min-frequency", CLI_U64, &min_freq, "F", "stop when the best pair occurs fewer than F times"),
        CLI_OPT("-o", "--out", CLI_STR, &out, "PATH", "where to write tokenizer.json (required)"),
    };
    cli_cmd c = {.cmd = "tokenizer train", .opts = opts, .n_opts = (int)(sizeof opts / sizeof opts[0]),
                 .pos = files, .max_pos = argc, .n_pos = &n_files,
                 .usage = "usage: lmforge tokenizer train --vocab-size N -o OUT.json [flags] FILE... (- = stdin)\n\n"
                          "Learns a byte-level BPE (GPT-2 style) from text files, each file one document, and saves "
                          "a Hugging\nFace tokenizer.json. Ids: special tokens first, then the 256 bytes, then one "
                          "per merge. Each step\nmerges the most frequent adjacent pair (ties: smallest ids), as "
                          "Hugging Face's BpeTrainer does.\n"};
    int r = cli_parse(&c, argc, argv);
    if (r > 0 && (!out || !n_files || cfg.vocab_size <= 0)) {
        fprintf(stderr,
                "lmforge tokenizer train: need --vocab-size N, -o OUT.json and at least one FILE (see --help)\n");
        r = 0;
    }
    if (r <= 0) {
        rc = r < 0 ? 0 : 2;
        goto done;
    }
    cfg.n_special = sp.n;
    cfg.min_frequency = (int64_t)min_freq;
    cfg.special_tokens = specials;
    lmf_bpe_trainer *tr;
    lmf_status s = lmf_bpe_trainer_create(&cfg, &tr);
    if (s != LMF_OK) {
        rc = cli_fail("tokenizer train", s);
        goto done;
    }
    double t0 = now_s();
    size_t total = 0;
    for (int i = 0; i < n_files; i++) {
        char *text;
        size_t n;
        if ((s = cli_read_all(files[i], &text, &n)) != LMF_OK) break;
        lmf_bpe_trainer_feed(tr, text, n);
        total += n;
        free(text);
    }
    double t1 = now_s();
    lmf_tokenizer *tok = NULL;
    if (s == LMF_OK) s = lmf_bpe_trainer_finish(tr, &tok);
    double t2 = now_s();
    lmf_bpe_trainer_free(tr);
    if (s == LMF_OK) s = lmf_tokenizer_save(tok, out);
    if (s == LMF_OK)
        fprintf(stderr, "lmforge tokenizer train: %zu bytes in %d file(s): vocabulary %d, counting %.2f s, merges %.2f s "
                        "-> %s\n", total, n_files, lmf_tokenizer_vocab_size(tok), t1 - t0, t2 - t1, out);
    lmf_tokenizer_free(tok);
    if (s != LMF_OK) rc = cli_fail("tokenizer train", s);
done:
    free(specials);
    free(files);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    if (argc >= 2 && !help)
        fprintf(stderr, "lmforge tokenizer: unknown %s%s%s\n", argv[1][0] == '-' ? "option " : "command '", argv[1],
                argv[1][0] == '-' ? "" : "'");
    fprintf(help ? stdout : stderr, "usage: lmforge tokenizer train --vocab-size N -o OUT.json FILE...   (see `lmforge tokenizer train "
                    "--help`)\n");
    return help ? 0 : 2;
}
