/* cmd_data.c — `lmforge data shard`: text files -> train/validation token shards. */
#include "cli/cli.h"
#include "core/rng.h"
#include "core/status.h"
#include "io/shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BYTE_EOT 256

static void help(FILE *f) {
    fprintf(f, "usage: lmforge data shard --out DIR [--val-fraction F] [--block N] [--seed S] FILE... (- = stdin)\n\n"
               "Tokenizes text files into DIR/train.bin and DIR/val.bin (lmforge token shards). Each file is one\n"
               "document, followed by the end-of-text token. The token stream is cut into blocks of N tokens and\n"
               "each block goes to validation with probability F (seeded, so reruns give the same split).\n"
               "Tokenizer: bytes (ids 0-255 are bytes, 256 is <|endoftext|>, vocabulary 257) unless --tokenizer\n"
               "names a BPE tokenizer (tokenizer.json or GPT-2 folder; it must have <|endoftext|>).\n\n"
               "  --out DIR             output directory (created if missing)\n"
               "  --val-fraction F      share of blocks for validation [default: 0.05]\n"
               "  --block N             block size in tokens for the split [default: 16384]\n"
               "  --seed S              seed of the split [default: 1337]\n"
               "  --tokenizer PATH      BPE tokenizer to encode with [default: bytes]\n");
}

typedef struct {
    lmf_shard_writer train, val;
    uint32_t *block;
    size_t n, cap;
    double val_fraction;
    lmf_rng rng;
    const lmf_tokenizer *tok; /* NULL: bytes */
    uint32_t eot;
} splitter;

static lmf_status flush_block(splitter *sp) {
    if (!sp->n) return LMF_OK;
    lmf_shard_writer *w = lmf_rng_uniform(&sp->rng) < sp->val_fraction ? &sp->val : &sp->train;
    lmf_status s = lmf_shard_writer_put(w, sp->block, sp->n);
    sp->n = 0;
    return s;
}

static lmf_status put(splitter *sp, uint32_t tok) {
    sp->block[sp->n++] = tok;
    return sp->n == sp->cap ? flush_block(sp) : LMF_OK;
}

static lmf_status put_ids(splitter *sp, lmf_ids *ids) {
    lmf_status s = LMF_OK;
    for (size_t i = 0; i < ids->len && s == LMF_OK; i++) s = put(sp, (uint32_t)ids->data[i]);
    ids->len = 0;
    return s;
}

static lmf_status shard_file(splitter *sp, const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return lmf_fail(LMF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[65536];
    size_t n;
    lmf_status s = LMF_OK;
    /* BPE: a streaming encoder, so chunk boundaries never change the ids; special-token text in a document is
     * ordinary text (only the separator between documents is eot) */
    lmf_tokenizer_encoder *enc = sp->tok ? lmf_tokenizer_encoder_create(sp->tok, 0) : NULL;
    lmf_ids ids = {0};
    while (s == LMF_OK && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (enc) {
            lmf_tokenizer_encoder_feed(enc, (const char *)buf, n, &ids);
            s = put_ids(sp, &ids);
        } else {
            for (size_t i = 0; i < n && s == LMF_OK; i++) s = put(sp, buf[i]);
        }
    }
    if (s == LMF_OK && ferror(f)) s = lmf_fail(LMF_ERR_IO, "%s: read error", path);
    if (enc) {
        lmf_tokenizer_encoder_finish(enc, &ids);
        if (s == LMF_OK) s = put_ids(sp, &ids);
        lmf_tokenizer_encoder_free(enc);
        free(ids.data);
    }
    if (f != stdin) fclose(f);
    return s == LMF_OK ? put(sp, sp->tok ? sp->eot : BYTE_EOT) : s;
}

static int shard(int argc, char **argv) {
    const char *out = NULL, *tok_path = NULL;
    double frac = 0.05;
    long block = 16384;
    long long seed = 1337;
    int first_file = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        }
        int has = i + 1 < argc;
        char *end = NULL;
        if (!strcmp(argv[i], "--out") && has) out = argv[++i];
        else if (!strcmp(argv[i], "--val-fraction") && has) frac = strtod(argv[++i], &end);
        else if (!strcmp(argv[i], "--block") && has) block = strtol(argv[++i], &end, 10);
        else if (!strcmp(argv[i], "--seed") && has) seed = strtoll(argv[++i], &end, 10);
        else if (!strcmp(argv[i], "--tokenizer") && has) tok_path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "lmforge data shard: unknown flag or missing value: %s\n", argv[i]);
            return 2;
        } else {
            first_file = i;
            break;
        }
        if (end && *end) {
            fprintf(stderr, "lmforge data shard: %s: not a number: '%s'\n", argv[i - 1], argv[i]);
            return 2;
        }
    }
    if (!out || first_file >= argc || !(frac >= 0 && frac < 1) || block <= 0) {
        fprintf(stderr, "lmforge data shard: need --out DIR and at least one FILE; 0 <= --val-fraction < 1; "
                        "--block > 0 (see --help)\n");
        return 2;
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "lmforge data shard: %s: cannot create: %s\n", out, strerror(errno));
        return 1;
    }
    char tp[1100], vp[1100];
    snprintf(tp, sizeof tp, "%s/train.bin", out);
    snprintf(vp, sizeof vp, "%s/val.bin", out);
    splitter sp = {.val_fraction = frac, .cap = (size_t)block};
    lmf_tokenizer *tok = NULL;
    uint32_t vocab = 257, eot = BYTE_EOT, kind = LMF_TOKENIZER_BYTES;
    lmf_status s;
    if (tok_path) {
        if ((s = lmf_tokenizer_load(tok_path, &tok)) != LMF_OK) return cli_fail("data shard", s);
        int32_t e = lmf_tokenizer_token_id(tok, "<|endoftext|>");
        if (e < 0) {
            lmf_tokenizer_free(tok);
            fprintf(stderr, "lmforge data shard: %s: the tokenizer has no <|endoftext|> token to separate documents\n",
                    tok_path);
            return 1;
        }
        vocab = (uint32_t)lmf_tokenizer_vocab_size(tok), eot = (uint32_t)e, kind = LMF_TOKENIZER_BPE;
        sp.tok = tok, sp.eot = eot;
    }
    sp.block = malloc(sizeof(uint32_t) * sp.cap);
    lmf_rng_seed(&sp.rng, (uint64_t)seed, 0xda7a);
    s = lmf_shard_writer_open(&sp.train, tp, vocab, (int32_t)eot, kind);
    if (s != LMF_OK) {
        lmf_tokenizer_free(tok);
        free(sp.block);
        return cli_fail("data shard", s);
    }
    if ((s = lmf_shard_writer_open(&sp.val, vp, vocab, (int32_t)eot, kind)) != LMF_OK) {
        lmf_shard_writer_abort(&sp.train);
        lmf_tokenizer_free(tok);
        free(sp.block);
        return cli_fail("data shard", s);
    }
    for (int i = first_file; i < argc && s == LMF_OK; i++) s = shard_file(&sp, argv[i]);
    if (s == LMF_OK) s = flush_block(&sp);
    free(sp.block);
    lmf_tokenizer_free(tok);
    if (s != LMF_OK) {
        lmf_shard_writer_abort(&sp.train);
        lmf_shard_writer_abort(&sp.val);
        return cli_fail("data shard", s);
    }
    uint64_t nt = sp.train.n_tokens, nv = sp.val.n_tokens;
    if ((s = lmf_shard_writer_close(&sp.train)) != LMF_OK) {
        lmf_shard_writer_abort(&sp.val);
        return cli_fail("data shard", s);
    }
    if ((s = lmf_shard_writer_close(&sp.val)) != LMF_OK) return cli_fail("data shard", s);
    fprintf(stderr, "lmforge data shard: %s: %llu tokens, %s: %llu tokens (%s tokenizer, vocab %u)\n", tp,
            (unsigned long long)nt, vp, (unsigned long long)nv, tok_path ? tok_path : "bytes", vocab);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "shard")) return shard(argc - 1, argv + 1);
    fprintf(stderr, "usage: lmforge data shard --out DIR [--val-fraction F] FILE...   (see `lmforge data shard --help`)\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}
