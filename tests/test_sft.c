/* test_sft.c — supervised fine-tuning data (src/train/sft.c).
 *  - on a hand-built tokenizer (tiny_chat_tokenizer.h, ChatML specials): the three shapes' ids and loss masks, a
 *    boundary merged by BPE, truncation (counted or refused), dropping, the (B, T) batch layout, split and loader
 *    order, and every error message naming FILE:LINE;
 *  - on SmolLM2-135M-Instruct (skipped without build/models or $LMF_SMOLLM2_GGUF): a conversation's ids are the
 *    ids `lmforge chat` feeds the model (lmf_chat_encode, which cmd_generate.c calls), the mask is exactly each
 *    assistant content + <|im_end|>, the boundaries are clean, and completions and texts end with EOS. */
#include "model/chat.h"
#include "test_util.h"

#include "tiny_chat_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "train/sft.h"

#include <sys/stat.h>

static lmf_sft_vocab tiny_vocab(void) {
    lmf_sft_vocab v = {.tok = tiny_chat_tokenizer(), .bos = -1, .eos = TINY_EOT, .pad = TINY_EOT};
    if (!v.tok) fail_msg("%s", lmf_last_error());
    assert_int_equal(lmf_chat_template_parse(NULL, &v.tmpl), LMF_OK); /* ChatML, no default system */
    return v;
}

static void free_vocab(lmf_sft_vocab *v) {
    lmf_tokenizer_free((lmf_tokenizer *)v->tok);
    lmf_sft_vocab_free(v);
}

static lmf_status parse(lmf_sft_data *d, const char *text, const lmf_sft_vocab *v, int T) {
    lmf_sft_options o = {.max_tokens = T};
    return lmf_sft_parse(d, text, strlen(text), "f.jsonl", v, &o);
}

/* ids of s, byte by byte (the tiny tokenizer's ids for text without "bc" or specials) */
static size_t push_bytes(int32_t *out, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)s[i];
    return n;
}

static void expect_example(const lmf_sft_data *d, size_t i, const int32_t *ids, const uint8_t *loss, size_t n) {
    assert_true(i < d->n);
    assert_int_equal(d->start[i + 1] - d->start[i], n);
    for (size_t k = 0; k < n; k++) {
        if (d->ids[d->start[i] + k] != ids[k] || d->loss[d->start[i] + k] != loss[k])
            fail_msg("example %zu token %zu: id %d loss %d, expected %d %d", i, k, d->ids[d->start[i] + k],
                     d->loss[d->start[i] + k], ids[k], loss[k]);
    }
}

static void test_tiny_conversation(void **s) {
    lmf_sft_vocab v = tiny_vocab();
    lmf_sft_data d = {0};
    const char *jl = "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": "
                     "\"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}, {\"role\": \"user\", "
                     "\"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"ok\"}]}\n";
    if (parse(&d, jl, &v, 256) != LMF_OK) fail_msg("%s", lmf_last_error());
    int32_t ids[128];
    uint8_t loss[128] = {0};
    size_t n = 0;
    const char *turns[][2] = {{"system", "sys"}, {"user", "hi"}, {"assistant", "yo"}, {"user", "q"},
                              {"assistant", "ok"}};
    for (int t = 0; t < 5; t++) {
        ids[n++] = TINY_IM_START;
        n += push_bytes(ids + n, turns[t][0]);
        n += push_bytes(ids + n, "\n");
        size_t c = n;
        n += push_bytes(ids + n, turns[t][1]);
        ids[n++] = TINY_IM_END;
        if (t == 2 || t == 4) memset(loss + c, 1, n - c); /* content + <|im_end|>, not the header nor the "\n" */
        n += push_bytes(ids + n, "\n");
    }
    expect_example(&d, 0, ids, loss, n);
    /* the same ids as lmforge chat's tokenization */
    lmf_chat_message msgs[5];
    for (int t = 0; t < 5; t++) msgs[t] = (lmf_chat_message){turns[t][0], turns[t][1]};
    lmf_ids chat = {0};
    assert_int_equal(lmf_chat_encode(v.tok, &v.tmpl, v.bos, msgs, 5, 0, &chat), LMF_OK);
    assert_int_equal(chat.len, n);
    assert_memory_equal(chat.data, ids, n * sizeof *ids);
    free(chat.data);
    assert_int_equal(d.stats.n_shape[LMF_SFT_MESSAGES], 1);
    assert_int_equal(d.stats.n_boundary_shifts, 0);
    assert_int_equal(d.stats.n_loss_tokens, 6);
    lmf_sft_free(&d);
    /* train_on_prompt: every token */
    lmf_sft_options o = {.max_tokens = 256, .train_on_prompt = 1};
    assert_int_equal(lmf_sft_parse(&d, jl, strlen(jl), "f.jsonl", &v, &o), LMF_OK);
    memset(loss, 1, n);
    expect_example(&d, 0, ids, loss, n);
    lmf_sft_free(&d);
    free_vocab(&v);
}

/* A template of no built-in family (Zephyr-shaped: each turn ends with eos_token) is run by the interpreter, and
 * the loss covers each assistant turn through its end-of-turn text, as with ChatML. */
static void test_tiny_other_template(void **s) {
    lmf_sft_vocab v = {.tok = tiny_chat_tokenizer(), .bos = TINY_IM_START, .eos = TINY_EOT, .pad = TINY_EOT};
    assert_int_equal(lmf_chat_template_parse("{% for m in messages %}\n{{ '<|' + m.role + '|>\\n' + m.content + "
                                             "eos_token }}\n{% endfor %}\n{% if add_generation_prompt %}"
                                             "{{ '<|assistant|>\\n' }}{% endif %}", &v.tmpl), LMF_OK);
    assert_int_equal(v.tmpl.format, LMF_CHAT_OTHER);
    assert_non_null(v.tmpl.jinja);
    /* what lmf_chat_template_from_weights sets from the model's EOS token */
    v.tmpl.eos_token = strdup("<|im_end|>"), v.tmpl.end_of_turn = strdup("<|im_end|>");
    lmf_sft_data d = {0};
    const char *jl = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
                     "\"content\": \"yo\"}, {\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
                     "\"content\": \"ok\"}]}\n";
    if (parse(&d, jl, &v, 256) != LMF_OK) fail_msg("%s", lmf_last_error());
    int32_t ids[128];
    uint8_t loss[128] = {0};
    size_t n = 0;
    const char *turns[][2] = {{"user", "hi"}, {"assistant", "yo"}, {"user", "q"}, {"assistant", "ok"}};
    for (int t = 0; t < 4; t++) { /* no BOS: the template writes bos_token where the model wants it */
        n += push_bytes(ids + n, "<|");
        n += push_bytes(ids + n, turns[t][0]);
        n += push_bytes(ids + n, "|>\n");
        size_t c = n;
        n += push_bytes(ids + n, turns[t][1]);
        ids[n++] = TINY_IM_END;
        if (t % 2) memset(loss + c, 1, n - c); /* content + the end of turn, not the header nor the "\n" */
        n += push_bytes(ids + n, "\n");
    }
    expect_example(&d, 0, ids, loss, n);
    lmf_sft_free(&d);
    free_vocab(&v);
}

static void test_tiny_prompt_completion_text(void **s) {
    lmf_sft_vocab v = tiny_vocab();
    lmf_sft_data d = {0};
    const char *jl = "{\"prompt\": \"xa\", \"completion\": \"bc\"}\n"
                     "\n  \r\n"  /* blank lines are skipped */
                     "{\"prompt\": \"ab\", \"completion\": \"c\", \"extra\": 1}\r\n"
                     "{\"text\": \"hey\"}";
    if (parse(&d, jl, &v, 256) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(d.n, 3);
    {
        int32_t ids[] = {'x', 'a', TINY_BC, TINY_EOT};
        uint8_t loss[] = {0, 0, 1, 1};
        expect_example(&d, 0, ids, loss, 4);
    }
    { /* "ab" + "c": b and c merge across the boundary; the merged token is trained, and counted */
        int32_t ids[] = {'a', TINY_BC, TINY_EOT};
        uint8_t loss[] = {0, 1, 1};
        expect_example(&d, 1, ids, loss, 3);
        assert_int_equal(d.stats.n_boundary_shifts, 1);
    }
    {
        int32_t ids[] = {'h', 'e', 'y', TINY_EOT};
        uint8_t loss[] = {1, 1, 1, 1};
        expect_example(&d, 2, ids, loss, 4);
    }
    assert_int_equal(d.stats.n_lines, 3);
    assert_int_equal(d.stats.n_shape[LMF_SFT_PROMPT_COMPLETION], 2);
    assert_int_equal(d.stats.n_shape[LMF_SFT_TEXT], 1);
    assert_int_equal(d.stats.n_tokens, 11);
    assert_int_equal(d.stats.n_loss_tokens, 2 + 2 + 3);
    lmf_sft_free(&d);
    /* BOS when the model asks for it (here <|im_start|>, for the test's sake), before prompts and texts */
    v.bos = TINY_IM_START;
    assert_int_equal(parse(&d, "{\"text\": \"a\"}", &v, 256), LMF_OK);
    int32_t ids[] = {TINY_IM_START, 'a', TINY_EOT};
    uint8_t loss[] = {1, 1, 1};
    expect_example(&d, 0, ids, loss, 3);
    lmf_sft_free(&d);
    free_vocab(&v);
}

static void test_tiny_truncation_and_batches(void **s) {
    lmf_sft_vocab v = tiny_vocab();
    lmf_sft_data d = {0};
    const char *jl = "{\"text\": \"abcdefghij\"}\n"             /* 10 + EOS > 6: truncated */
                     "{\"prompt\": \"0123456\", \"completion\": \"z\"}\n" /* the prompt fills T: dropped */
                     "{\"prompt\": \"pq\", \"completion\": \"r\"}\n"
                     "{\"text\": \"\"}\n";                       /* EOS alone: nothing to predict, dropped */
    if (parse(&d, jl, &v, 6) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(d.n, 2);
    assert_int_equal(d.stats.n_lines, 4);
    assert_int_equal(d.stats.n_truncated, 2);
    assert_int_equal(d.stats.n_dropped, 2);
    /* refused instead, naming the line */
    lmf_sft_data d2 = {0};
    lmf_sft_options o = {.max_tokens = 6, .refuse_long = 1};
    assert_int_equal(lmf_sft_parse(&d2, jl, strlen(jl), "f.jsonl", &v, &o), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "f.jsonl:1: "));
    assert_int_equal(d2.n, 0);
    lmf_sft_free(&d2);

    /* batch (B=3, T=8): row 0 the truncated text, row 1 prompt/completion, row 2 padding */
    int32_t tok[3 * 8], tgt[3 * 8];
    size_t rows[3] = {0, 1, SIZE_MAX};
    size_t n_t = lmf_sft_batch(&d, rows, 3, 8, tok, tgt);
    const int32_t P = TINY_EOT;
    /* row 0: "abcdefghij" tokenizes a, bc, d, ..., cut to 6 tokens */
    const int32_t *ids0 = d.ids + d.start[0];
    size_t len0 = d.start[1] - d.start[0];
    assert_int_equal(len0, 6);
    assert_int_equal(ids0[0], 'a');
    assert_int_equal(ids0[1], TINY_BC);
    for (int t = 0; t < 8; t++) {
        assert_int_equal(tok[t], t < 6 ? ids0[t] : P);
        assert_int_equal(tgt[t], t < 5 ? ids0[t + 1] : -1); /* the row's last token has no target */
    }
    const int32_t t1[16] = {'p', 'q', 'r', TINY_EOT, P, P, P, P, P, P, P, P, P, P, P, P};
    assert_memory_equal(tok + 8, t1, sizeof t1);
    const int32_t g1[8] = {-1, 'r', TINY_EOT, -1, -1, -1, -1, -1};
    assert_memory_equal(tgt + 8, g1, sizeof g1);
    for (int t = 16; t < 24; t++) assert_int_equal(tgt[t], -1);
    assert_int_equal(n_t, 5 + 2);
    /* a shorter T truncates rows too */
    n_t = lmf_sft_batch(&d, rows, 1, 3, tok, tgt);
    assert_int_equal(n_t, 2);
    assert_int_equal(tgt[2], -1);
    /* the batch's length: its longest example (6 tokens) rounded up to 16, at most T; a batch filled at that length
     * holds what a (B, 40) one holds before its all-padding tail */
    assert_int_equal(lmf_sft_batch_len(&d, rows, 3, 40), 16);
    assert_int_equal(lmf_sft_batch_len(&d, rows, 3, 12), 12);
    assert_int_equal(lmf_sft_batch_len(&d, rows + 2, 1, 40), 16); /* padding alone */
    int32_t wtok[3 * 40], wtgt[3 * 40], stok[3 * 16], stgt[3 * 16];
    assert_int_equal(lmf_sft_batch(&d, rows, 3, 40, wtok, wtgt), 7);
    assert_int_equal(lmf_sft_batch(&d, rows, 3, 16, stok, stgt), 7);
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 40; t++) {
            assert_int_equal(wtok[b * 40 + t], t < 16 ? stok[b * 16 + t] : P);
            assert_int_equal(wtgt[b * 40 + t], t < 16 ? stgt[b * 16 + t] : -1);
        }
    lmf_sft_free(&d);
    free_vocab(&v);
}

static void test_tiny_split_and_loader(void **s) {
    lmf_sft_vocab v = tiny_vocab();
    lmf_text jl = {0};
    for (int i = 0; i < 20; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "{\"text\": \"%c%c\"}\n", 'A' + i, 'a' + i);
        lmf_text_push(&jl, line, (size_t)n);
    }
    lmf_sft_data d = {0}, val = {0};
    assert_int_equal(parse(&d, jl.data, &v, 16), LMF_OK);
    assert_int_equal(d.n, 20);
    assert_int_equal(lmf_sft_split(&d, 1.5, 1, &val), LMF_ERR_ARG);
    assert_int_equal(lmf_sft_split(&d, 0.25, 7, &val), LMF_OK);
    assert_int_equal(d.n, 15);
    assert_int_equal(val.n, 5);
    int seen[20] = {0};
    for (size_t i = 0; i < d.n; i++) seen[d.ids[d.start[i]] - 'A']++;
    for (size_t i = 0; i < val.n; i++) seen[val.ids[val.start[i]] - 'A'] += 10;
    int n_val = 0;
    for (int i = 0; i < 20; i++) {
        assert_true(seen[i] == 1 || seen[i] == 10);
        n_val += seen[i] == 10;
    }
    assert_int_equal(n_val, 5);
    assert_int_equal(d.stats.n_tokens + val.stats.n_tokens, 60);
    /* the same seed splits the same way */
    lmf_sft_data d2 = {0}, val2 = {0};
    assert_int_equal(parse(&d2, jl.data, &v, 16), LMF_OK);
    assert_int_equal(lmf_sft_split(&d2, 0.25, 7, &val2), LMF_OK);
    assert_memory_equal(val.ids, val2.ids, val.start[val.n] * sizeof *val.ids);

    /* loader: B = 4 over 15 examples; each epoch visits each example once; same seed, same order */
    lmf_sft_loader l, l2;
    assert_int_equal(lmf_sft_loader_init(&l, &d, 4, 4, 3, 1), LMF_OK);
    assert_int_equal(lmf_sft_loader_init(&l2, &d, 4, 4, 3, 1), LMF_OK);
    int32_t tok[16], tgt[16], tok2[16], tgt2[16];
    int count[2][26] = {{0}};
    size_t first_epoch_order[15];
    for (int step = 0; step < 15; step++) { /* 60 rows = 4 epochs */
        assert_int_equal(lmf_sft_loader_next(&l, tok, tgt), LMF_OK);
        assert_int_equal(lmf_sft_loader_next(&l2, tok2, tgt2), LMF_OK);
        assert_memory_equal(tok, tok2, sizeof tok);
        assert_memory_equal(tgt, tgt2, sizeof tgt);
        for (int b = 0; b < 4; b++) {
            int row = step * 4 + b;
            if (row < 30) count[row / 15][tok[b * 4] - 'A']++;
            if (row < 15) first_epoch_order[row] = (size_t)(tok[b * 4] - 'A');
        }
    }
    assert_int_equal(l.epoch, 3);
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 20; i++) assert_int_equal(count[e][i], seen[i] == 1 ? 1 : 0);
    /* shuffled: not file order */
    int in_order = 1;
    for (int i = 1; i < 15; i++) in_order &= first_epoch_order[i] > first_epoch_order[i - 1];
    assert_false(in_order);
    lmf_sft_loader_free(&l);
    lmf_sft_loader_free(&l2);

    /* trimmed: the same rows at the batch's length (3 tokens each: 16), not T = 40 */
    assert_int_equal(lmf_sft_loader_init(&l, &d, 4, 40, 3, 1), LMF_OK);
    assert_int_equal(lmf_sft_loader_init(&l2, &d, 4, 40, 3, 1), LMF_OK);
    l2.trim = 1;
    int32_t ltok[160], ltg[160], ttok[160], ttg[160];
    for (int step = 0; step < 5; step++) {
        assert_int_equal(lmf_sft_loader_next(&l, ltok, ltg), LMF_OK);
        assert_int_equal(lmf_sft_loader_next(&l2, ttok, ttg), LMF_OK);
        assert_int_equal(l.last_T, 40);
        assert_int_equal(l2.last_T, 16);
        for (int b = 0; b < 4; b++) {
            assert_memory_equal(ltok + b * 40, ttok + b * 16, 16 * sizeof(int32_t));
            assert_memory_equal(ltg + b * 40, ttg + b * 16, 16 * sizeof(int32_t));
        }
    }
    lmf_sft_loader_free(&l);
    lmf_sft_loader_free(&l2);

    /* packed: rows of 10 take whole examples while they fit, positions restart at each, no target crosses one, and
     * the first 15 examples placed are one epoch, each once */
    assert_int_equal(lmf_sft_loader_init(&l, &d, 2, 10, 3, 1), LMF_OK);
    lmf_sft_loader_pack(&l);
    size_t rows_per_epoch = lmf_sft_loader_epoch_rows(&l);
    assert_true(rows_per_epoch < d.n);
    int placed[26] = {0}, n_placed = 0;
    int32_t ptok[20], ptg[20];
    for (int step = 0; n_placed < 15; step++) {
        assert_true(step < 15);
        assert_int_equal(lmf_sft_loader_next(&l, ptok, ptg), LMF_OK);
        for (int b = 0; b < 2; b++) {
            const int32_t *ps = l.positions + b * 10;
            assert_int_equal(ps[0], 0);
            for (int t = 0; t < 10; t++) {
                if (t > 0) assert_true(ps[t] == 0 || ps[t] == ps[t - 1] + 1);
                int last = t == 9 || ps[t + 1] == 0;
                if (last) assert_int_equal(ptg[b * 10 + t], -1); /* nothing predicts the next example */
                if (ps[t] == 0 && ptok[b * 10 + t] != d.pad && n_placed < 15) {
                    placed[ptok[b * 10 + t] - 'A']++, n_placed++;
                    size_t e = 0; /* the example it is: the one starting with this token */
                    while (d.ids[d.start[e]] != ptok[b * 10 + t]) e++;
                    size_t len = d.start[e + 1] - d.start[e];
                    for (size_t i = 0; i < len; i++) assert_int_equal(ptok[b * 10 + t + i], d.ids[d.start[e] + i]);
                }
            }
        }
    }
    for (int i = 0; i < 20; i++) assert_int_equal(placed[i], seen[i] == 1 ? 1 : 0);
    lmf_sft_loader_free(&l);
    assert_int_equal(lmf_sft_loader_init(&l, &val, 0, 4, 3, 1), LMF_ERR_ARG);
    lmf_sft_free(&d), lmf_sft_free(&val), lmf_sft_free(&d2), lmf_sft_free(&val2);
    free(jl.data);
    free_vocab(&v);
}

/* Length of example e, as the loader cuts it at T. */
static size_t len_of(const lmf_sft_data *d, size_t e, int T) {
    size_t n = d->start[e + 1] - d->start[e];
    return n < (size_t)T ? n : (size_t)T;
}

/* Summed batch lengths (lmf_sft_batch_len) over one epoch of a trimmed loader, and its batches into tk / tg. */
static long epoch_positions(lmf_sft_loader *l, int32_t *tk, int32_t *tg) {
    long sum = 0;
    for (size_t b = 0; b < l->d->n / (size_t)l->B; b++) {
        assert_int_equal(lmf_sft_loader_next(l, tk, tg), LMF_OK);
        sum += l->B * l->last_T;
    }
    return sum;
}

/* group_by_length: each epoch's order stays a permutation, cut into megabatches of min(n / 4B, 50) batches sorted
 * longest first, the longest example of all at the front; the same seed gives the same batches, and an epoch runs
 * fewer positions than ungrouped. */
static void test_group_by_length(void **s) {
    lmf_sft_vocab v = tiny_vocab();
    lmf_text jl = {0};
    for (int i = 0; i < 200; i++) { /* 1 to 40 characters (the tiny tokenizer reads a byte a token) */
        char line[128], text[64];
        int k = 1 + (i * 17) % 40;
        for (int j = 0; j < k; j++) text[j] = (char)('a' + (i + j * 5) % 26 == 'b' ? 'x' : 'a' + (i + j * 5) % 26);
        text[k] = 0;
        int n = snprintf(line, sizeof line, "{\"text\": \"%s\"}\n", text);
        lmf_text_push(&jl, line, (size_t)n);
    }
    lmf_sft_data d = {0};
    assert_int_equal(parse(&d, jl.data, &v, 64), LMF_OK);
    assert_int_equal(d.n, 200);
    lmf_sft_loader g, g2, u;
    for (lmf_sft_loader *l = &g; l; l = l == &g ? &g2 : l == &g2 ? &u : NULL) {
        assert_int_equal(lmf_sft_loader_init(l, &d, 4, 64, 9, 1), LMF_OK);
        l->trim = 1;
        if (l != &u) lmf_sft_loader_group(l);
    }
    size_t mega = 200 / 16 * 4, most = 0; /* 12 batches of 4 */
    for (size_t i = 0; i < d.n; i++) most = len_of(&d, i, 64) > most ? len_of(&d, i, 64) : most;
    for (int epoch = 0; epoch < 2; epoch++) {
        int seen[200] = {0};
        for (size_t i = 0; i < d.n; i++) seen[g.order[i]]++;
        for (int i = 0; i < 200; i++) assert_int_equal(seen[i], 1);
        assert_int_equal(len_of(&d, g.order[0], 64), most);
        int unsorted = 0; /* only where the longest example moved: its megabatch's head and the first's */
        for (size_t i = 1; i < d.n; i++)
            unsorted += i % mega && len_of(&d, g.order[i], 64) > len_of(&d, g.order[i - 1], 64);
        assert_true(unsorted <= 1);
        int32_t tk[4 * 64], tg[4 * 64], tk2[4 * 64], tg2[4 * 64];
        long pg = 0, pu = epoch_positions(&u, tk, tg);
        for (size_t b = 0; b < d.n / 4; b++) {
            assert_int_equal(lmf_sft_loader_next(&g, tk, tg), LMF_OK);
            assert_int_equal(lmf_sft_loader_next(&g2, tk2, tg2), LMF_OK);
            assert_int_equal(g.last_T, g2.last_T);
            assert_memory_equal(tk, tk2, sizeof(int32_t) * 4 * (size_t)g.last_T);
            pg += 4 * g.last_T;
        }
        print_message("epoch %d: %ld positions grouped by length, %ld not\n", epoch, pg, pu);
        assert_true(pg < pu * 3 / 4);
        assert_int_equal(lmf_sft_loader_next(&g, tk, tg), LMF_OK); /* the next epoch starts (and is grouped) */
        assert_int_equal(lmf_sft_loader_next(&g2, tk2, tg2), LMF_OK);
        assert_int_equal(lmf_sft_loader_next(&u, tk, tg), LMF_OK);
        g.pos = g2.pos = u.pos = 0; /* read it again from its start */
    }
    lmf_sft_loader_free(&g), lmf_sft_loader_free(&g2), lmf_sft_loader_free(&u);
    lmf_sft_free(&d);
    free(jl.data);
    free_vocab(&v);
}

static void test_tiny_errors(void **s) {
    lmf_sft_vocab v = tiny_vocab();
    const char *good = "{\"text\": \"ok\"}\n\n"; /* lines 1 and 2: the bad line below is line 3 */
    const struct {
        const char *line, *says;
    } cases[] = {
        {"{\"text\": \"unterminated}", "not valid JSON"},
        {"[1, 2]", "not a JSON object"},
        {"{\"text\": \"a\"} {\"text\": \"b\"}", "more after the JSON value"},
        {"{\"txt\": \"a\"}", "none of the fine-tuning shapes"},
        {"{\"text\": 3}", "\"text\" is not a string"},
        {"{\"prompt\": \"a\"}", "without \"completion\""},
        {"{\"completion\": \"a\"}", "without \"prompt\""},
        {"{\"prompt\": [], \"completion\": \"a\"}", "\"prompt\" is not a string"},
        {"{\"messages\": {}}", "not an array"},
        {"{\"messages\": []}", "empty"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "no assistant turn"},
        {"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "messages[0].role: unknown role 'robot'"},
        /* the built-in ChatML renderer (tiny_vocab's) has no tool format */
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "message 0: the built-in chatml renderer has no tool format"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}], "
         "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}", "tools need the model's own"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}], "
         "\"tools\": {}}", "\"tools\" is not an array"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [\"x\"]}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "messages[0].content[0]: expected a text part"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 3}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "messages[0].content: expected a string or an array"},
        {"{\"messages\": [{\"role\": \"user\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "messages[0].content: is required"},
        {"{\"messages\": [{\"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
         "messages[0].role: expected a string"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"tool_calls\": "
         "[{\"function\": {\"name\": \"f\", \"arguments\": \"{x\"}}]}]}", "messages[1].tool_calls[0].function.arguments"},
        {"{\"messages\": [\"hi\"]}", "messages[0]: expected an object"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"system\", \"content\": \"s\"}, "
         "{\"role\": \"assistant\", \"content\": \"y\"}]}", "system message may only come first"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s\n%s", good, cases[i].line, good);
        lmf_sft_data d = {0};
        lmf_status st = parse(&d, text, &v, 64);
        if (st != LMF_ERR_FORMAT) fail_msg("case %zu (%s): status %d", i, cases[i].line, st);
        if (strncmp(lmf_last_error(), "f.jsonl:3: ", 11) || !strstr(lmf_last_error(), cases[i].says))
            fail_msg("case %zu: message '%s', expected f.jsonl:3: ... %s", i, lmf_last_error(), cases[i].says);
        assert_int_equal(d.n, 0); /* nothing kept from a failed parse */
        lmf_sft_free(&d);
    }
    lmf_sft_data d = {0};
    assert_int_equal(parse(&d, "", &v, 64), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "f.jsonl: no examples"));
    assert_int_equal(parse(&d, "\n \n\t\n", &v, 64), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "f.jsonl: no examples"));
    assert_int_equal(parse(&d, "{\"text\": \"ok\"}", &v, 1), LMF_ERR_ARG);
    /* an earlier file's examples survive a later file's failure */
    assert_int_equal(parse(&d, good, &v, 64), LMF_OK);
    assert_int_equal(parse(&d, "{\"text\": \"a\"}\n{", &v, 64), LMF_ERR_FORMAT);
    assert_non_null(strstr(lmf_last_error(), "f.jsonl:2: "));
    assert_int_equal(d.n, 1);
    assert_int_equal(d.stats.n_lines, 1);
    assert_int_equal(parse(&d, "{\"text\": \"more\"}", &v, 64), LMF_OK);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.start[2] - d.start[1], 5);
    lmf_sft_free(&d);
    assert_int_equal(lmf_sft_load(&d, "/nonexistent/sft.jsonl", &v, &(lmf_sft_options){.max_tokens = 8}),
                     LMF_ERR_IO);
    free_vocab(&v);
}

/* ---- the real model ---------------------------------------------------------------------------------------- */

static lmf_weights *smollm2(void) {
    struct stat sb;
    if (stat(smollm2_path(), &sb) != 0) {
        printf("[  SKIP    ] test_sft: %s not found; run scripts/fetch-smollm2.sh (or set LMF_SMOLLM2_GGUF)\n",
               smollm2_path());
        return NULL;
    }
    lmf_weights *w;
    if (lmf_weights_load(smollm2_path(), &w) != LMF_OK) fail_msg("%s", lmf_last_error());
    return w;
}

/* The masked runs of example i decoded, each followed by '|'. */
static void masked_runs(const lmf_sft_data *d, size_t i, const lmf_tokenizer *tok, lmf_text *out) {
    size_t a = d->start[i], b = d->start[i + 1];
    for (size_t k = a; k < b;) {
        if (!d->loss[k]) {
            k++;
            continue;
        }
        size_t e = k;
        while (e < b && d->loss[e]) e++;
        assert_int_equal(lmf_tokenizer_decode(tok, d->ids + k, e - k, 0, out), LMF_OK);
        lmf_text_push(out, "|", 1);
        k = e;
    }
}

static void test_smollm2_chat(void **s) {
    lmf_weights *w = smollm2();
    if (!w) skip();
    lmf_sft_vocab v;
    assert_int_equal(lmf_sft_vocab_from_weights(w, &v), LMF_OK);
    assert_int_equal(v.tmpl.format, LMF_CHAT_CHATML);
    assert_non_null(v.tmpl.default_system);
    int32_t im_end = lmf_tokenizer_token_id(v.tok, "<|im_end|>");
    assert_true(im_end >= 0);
    lmf_sft_data d = {0};
    const char *jl =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}, "
        "{\"role\": \"assistant\", \"content\": \"Paris is the capital of France.\"}, "
        "{\"role\": \"user\", \"content\": \"And of Italy?\"}, {\"role\": \"assistant\", \"content\": \"Rome.\"}]}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\\n\\nIt is four: caf\\u00e9 \\ud83d\\ude00.\"}]}\n"
        "{\"prompt\": \"The capital of France is\", \"completion\": \" Paris.\"}\n"
        "{\"text\": \"Hello world\"}\n";
    lmf_sft_options o = {.max_tokens = 512};
    if (lmf_sft_parse(&d, jl, strlen(jl), "smol.jsonl", &v, &o) != LMF_OK) fail_msg("%s", lmf_last_error());
    assert_int_equal(d.n, 4);
    assert_int_equal(d.stats.n_truncated, 0);

    /* example 0: the ids lmforge chat feeds the model (cmd_generate.c's chat path calls lmf_chat_encode) */
    lmf_chat_message msgs[] = {{"user", "What is the capital of France?"},
                               {"assistant", "Paris is the capital of France."},
                               {"user", "And of Italy?"},
                               {"assistant", "Rome."}};
    int add_bos;
    int32_t bos = lmf_weights_bos(w, &add_bos);
    lmf_ids chat = {0};
    assert_int_equal(lmf_chat_encode(v.tok, &v.tmpl, add_bos ? bos : -1, msgs, 4, 0, &chat), LMF_OK);
    assert_int_equal(chat.len, d.start[1]);
    assert_memory_equal(chat.data, d.ids, chat.len * sizeof *chat.data);
    /* and the ids of the rendered text, tokenized by hand, as a check on lmf_chat_encode itself */
    lmf_text text = {0};
    assert_int_equal(lmf_chat_render(&v.tmpl, msgs, 4, 0, &text), LMF_OK);
    assert_non_null(strstr(text.data, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    lmf_ids by_hand = {0};
    if (add_bos) lmf_ids_push(&by_hand, &bos, 1);
    lmf_tokenizer_encode(v.tok, text.data, text.len, LMF_ENCODE_ALLOW_SPECIAL, &by_hand);
    assert_int_equal(by_hand.len, chat.len);
    assert_memory_equal(by_hand.data, chat.data, chat.len * sizeof *chat.data);

    /* the mask: exactly each assistant content + <|im_end|> */
    lmf_text runs = {0};
    masked_runs(&d, 0, v.tok, &runs);
    assert_string_equal(runs.data, "Paris is the capital of France.<|im_end|>|Rome.<|im_end|>|");
    runs.len = 0;
    masked_runs(&d, 1, v.tok, &runs);
    assert_string_equal(runs.data, "4\n\nIt is four: caf\xc3\xa9 \xf0\x9f\x98\x80.<|im_end|>|");
    /* the token before a run is the header's "\n", and the one after <|im_end|> is the template's "\n" */
    for (size_t k = 1; k < d.start[1]; k++)
        if (d.loss[k] && !d.loss[k - 1]) {
            size_t n;
            const char *b = lmf_tokenizer_token_bytes(v.tok, d.ids[k - 1], &n);
            assert_true(n == 1 && b[0] == '\n');
            b = lmf_tokenizer_token_bytes(v.tok, d.ids[k - 2], &n);
            assert_true(n >= 4 && !memcmp(b + n - 4, "tant", 4)); /* "assistant" (as one or more tokens) */
        }
    assert_int_equal(d.stats.n_boundary_shifts, 0); /* ChatML's special tokens split the text: clean boundaries */

    /* prompt/completion: completion + EOS in the loss; text: everything */
    runs.len = 0;
    masked_runs(&d, 2, v.tok, &runs);
    size_t nb;
    const char *eos_text = lmf_tokenizer_token_bytes(v.tok, v.eos, &nb);
    char expect[128];
    snprintf(expect, sizeof expect, " Paris.%.*s|", (int)nb, eos_text);
    assert_string_equal(runs.data, expect);
    assert_int_equal(d.ids[d.start[3] - 1], v.eos);
    assert_int_equal(d.ids[d.start[4] - 1], v.eos);
    runs.len = 0;
    masked_runs(&d, 3, v.tok, &runs);
    snprintf(expect, sizeof expect, "Hello world%.*s|", (int)nb, eos_text);
    assert_false(add_bos); /* SmolLM2 adds no BOS */
    assert_string_equal(runs.data, expect);

    /* batch targets of the first conversation: the first target is the first content token */
    int T = (int)(d.start[1] - d.start[0]) + 3;
    int32_t *tok = malloc((size_t)T * sizeof *tok), *tgt = malloc((size_t)T * sizeof *tgt);
    size_t row = 0;
    size_t n_t = lmf_sft_batch(&d, &row, 1, T, tok, tgt);
    size_t learned = 0;
    for (size_t k = 1; k < d.start[1]; k++) learned += d.loss[k];
    assert_int_equal(n_t, learned);
    for (int t = 0; t < T; t++) {
        size_t k = (size_t)t + 1;
        int32_t want = k < d.start[1] && d.loss[k] ? d.ids[k] : -1;
        assert_int_equal(tgt[t], want);
        assert_int_equal(tok[t], (size_t)t < d.start[1] ? d.ids[t] : v.pad);
    }
    free(tok), free(tgt);
    lmf_sft_free(&d);

    /* the one unclean case: an assistant message starting with "\n\n" (or two spaces) merges with the header's "\n";
     * the straddling token is trained, and counted */
    const char *ws = "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
                     "\"content\": \"\\n\\nParis\"}]}";
    assert_int_equal(lmf_sft_parse(&d, ws, strlen(ws), "ws.jsonl", &v, &o), LMF_OK);
    assert_int_equal(d.stats.n_boundary_shifts, 1);
    runs.len = 0;
    masked_runs(&d, 0, v.tok, &runs);
    assert_string_equal(runs.data, "\n\n\nParis<|im_end|>|");
    free(runs.data), free(text.data), free(by_hand.data), free(chat.data);
    lmf_sft_free(&d);
    lmf_sft_vocab_free(&v);
    lmf_weights_free(w);
}

/* A template with {% generation %} blocks (Qwen3's with them: not prefix-stable): ids and loss mask equal
 * transformers' apply_chat_template(return_assistant_tokens_mask=True) on the same conversations
 * (fixtures/chat/generation_masks.json, make_generation_mask_fixtures.py with SmolLM2's tokenizer); without the
 * blocks (Qwen3's own template) the multi-turn conversations are refused by the prefix method, saying what to do. */
static void test_smollm2_generation_masks(void **s) {
    lmf_weights *w = smollm2();
    if (!w) skip();
    char *text = slurp(LMF_SOURCE_DIR "/tests/reference/fixtures/chat/generation_masks.json", NULL);
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text), *c;
    lmf_sft_vocab v, plain;
    assert_int_equal(lmf_sft_vocab_from_weights(w, &v), LMF_OK);
    assert_int_equal(lmf_sft_vocab_from_weights(w, &plain), LMF_OK);
    assert_int_equal(lmf_sft_vocab_set_template(&v, w, LMF_SOURCE_DIR "/tests/reference/chat_templates/"
                                                "qwen3_generation.jinja"), LMF_OK);
    assert_int_equal(lmf_sft_vocab_set_template(&plain, w, LMF_SOURCE_DIR "/tests/reference/chat_templates/"
                                                "qwen3.jinja"), LMF_OK);
    lmf_sft_options o = {.max_tokens = 4096};
    int n = 0, refused = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        cJSON *line = cJSON_CreateObject();
        cJSON_AddItemToObject(line, "messages", cJSON_Duplicate(cJSON_GetObjectItem(c, "messages"), 1));
        cJSON_AddItemToObject(line, "tools", cJSON_Duplicate(cJSON_GetObjectItem(c, "tools"), 1));
        char *jl = cJSON_PrintUnformatted(line);
        lmf_sft_data d = {0};
        if (lmf_sft_parse(&d, jl, strlen(jl), name, &v, &o) != LMF_OK) fail_msg("%s: %s", name, lmf_last_error());
        const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *mask = cJSON_GetObjectItem(c, "mask");
        assert_int_equal(d.n, 1);
        if (d.start[1] != (size_t)cJSON_GetArraySize(ids))
            fail_msg("%s: %zu tokens, transformers %d", name, d.start[1], cJSON_GetArraySize(ids));
        for (size_t k = 0; k < d.start[1]; k++) {
            assert_int_equal(d.ids[k], cJSON_GetArrayItem(ids, (int)k)->valueint);
            if (d.loss[k] != cJSON_GetArrayItem(mask, (int)k)->valueint)
                fail_msg("%s: token %zu: loss %d, transformers' assistant mask %d", name, k, d.loss[k],
                         cJSON_GetArrayItem(mask, (int)k)->valueint);
        }
        lmf_sft_free(&d);
        /* the same conversation under Qwen3's own template: the prefix method, refused when not prefix-stable */
        d = (lmf_sft_data){0};
        if (lmf_sft_parse(&d, jl, strlen(jl), name, &plain, &o) != LMF_OK) {
            assert_non_null(strstr(lmf_last_error(), "does not render the conversation"));
            assert_non_null(strstr(lmf_last_error(), "--chat-template FILE"));
            refused++;
        }
        lmf_sft_free(&d);
        free(jl);
        cJSON_Delete(line);
        n++;
    }
    assert_int_equal(n, 4);
    /* all but "single": Qwen3 drops an earlier turn's reasoning, and renders the last assistant turn with an empty
     * think block that a tool call's turn loses once the tool result follows */
    assert_int_equal(refused, 3);
    /* a file that is not a template is refused by name, and v keeps its template */
    assert_int_equal(lmf_sft_vocab_set_template(&v, w, "/nonexistent.jinja"), LMF_ERR_IO);
    assert_true(lmf_chat_template_has_generation(&v.tmpl));
    cJSON_Delete(root);
    free(text);
    lmf_sft_vocab_free(&v);
    lmf_sft_vocab_free(&plain);
    lmf_weights_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2_generation_masks),
        cmocka_unit_test(test_tiny_conversation),
        cmocka_unit_test(test_tiny_other_template),
        cmocka_unit_test(test_tiny_prompt_completion_text),
        cmocka_unit_test(test_tiny_truncation_and_batches),
        cmocka_unit_test(test_tiny_split_and_loader),
        cmocka_unit_test(test_group_by_length),
        cmocka_unit_test(test_tiny_errors),
        cmocka_unit_test(test_smollm2_chat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
