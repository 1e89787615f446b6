/* test_train_bf16.c — `lmforge train --precision`: a bf16 run resumes bit for bit (parameters, AdamW moments, the
 * losses' every digit) as fp32 runs do, and differs from the fp32 run (so bf16 is what ran); the checkpoint records
 * the precision, a resumed run keeps it under auto whatever this CPU would pick and refuses another one, a
 * checkpoint without the line (written before bf16 training) counts as fp32; bad values and the TOML key. */
#include "test_util.h"
#define TRAIN_FIXTURE_NAME "lmf_test_train_bf16"
#include "train_fixture.h"

#include "io/checkpoint.h"
#include "train/trainer.h"

#include <string.h>

static void tiny_config_in(lmf_train_config *c, const char *out, const char *precision) {
    tiny_config(c, out);
    strcpy(c->precision, precision);
}

/* The config a resume starts from: the checkpoint's text, then `precision` as a flag would set it. */
static lmf_status resume(lmf_checkpoint *ck, const char *precision) {
    lmf_train_config r;
    lmf_train_config_default(&r);
    assert_int_equal(lmf_train_config_parse(&r, ck->config_text, "ckpt"), LMF_OK);
    r.stop_at = 0;
    if (precision) strcpy(r.precision, precision);
    return lmf_train_run(&r, ck, NULL);
}

static void test_bf16_resume_is_exact(void **state) {
    lmf_train_config a, b, f;
    tiny_config_in(&a, "bf16", "bf16");
    assert_int_equal(lmf_train_run(&a, NULL, NULL), LMF_OK);
    tiny_config_in(&f, "fp32", "fp32");
    assert_int_equal(lmf_train_run(&f, NULL, NULL), LMF_OK);

    /* stopped at step 4, resumed under auto (the flag's default): keeps bf16 even where auto would pick fp32 */
    tiny_config_in(&b, "split", "bf16");
    b.stop_at = 4;
    assert_int_equal(lmf_train_run(&b, NULL, NULL), LMF_ERR_INTERRUPTED);
    lmf_checkpoint ck;
    load_ckpt("split", 4, &ck);
    char saved[16] = "";
    assert_true(lmf_kv_text_get(ck.config_text, "precision", saved, sizeof saved));
    assert_string_equal(saved, "bf16");
    /* an explicit other precision is refused, naming it */
    assert_int_equal(resume(&ck, "fp32"), LMF_ERR_MISMATCH);
    if (!strstr(lmf_last_error(), "trained in bf16") || !strstr(lmf_last_error(), "asks for fp32"))
        fail_msg("mismatch message: %s", lmf_last_error());
    assert_int_equal(resume(&ck, "auto"), LMF_OK);
    lmf_checkpoint_free(&ck);

    char la[16][32], lb[16][32], lf[16][32];
    assert_int_equal(read_losses("bf16", la, 16), 8);
    assert_int_equal(read_losses("split", lb, 16), 8);
    assert_int_equal(read_losses("fp32", lf, 16), 8);
    int differ = 0;
    for (int i = 0; i < 8; i++) {
        if (strcmp(la[i], lb[i])) fail_msg("step %d: loss %s uninterrupted vs %s resumed", i, la[i], lb[i]);
        differ += strcmp(la[i], lf[i]) != 0;
    }
    if (differ < 7) fail_msg("bf16 and fp32 runs share %d of 8 losses: is bf16 running?", 8 - differ);
    assert_true(atof(la[7]) < atof(la[0])); /* it trained */
    assert_same_checkpoints("bf16", "split", 8);
}

/* A checkpoint without a precision line was written by an fp32 run: auto resumes it in fp32 and records so; bf16
 * is refused. */
static void test_old_checkpoint_is_fp32(void **state) {
    lmf_train_config a;
    tiny_config_in(&a, "old", "fp32");
    a.stop_at = 4;
    assert_int_equal(lmf_train_run(&a, NULL, NULL), LMF_ERR_INTERRUPTED);
    lmf_checkpoint ck;
    load_ckpt("old", 4, &ck);
    char *line = strstr(ck.config_text, "precision = ");
    assert_non_null(line);
    memset(line, ' ', strcspn(line, "\n")); /* as the text stood before the option existed */
    char saved[16];
    assert_false(lmf_kv_text_get(ck.config_text, "precision", saved, sizeof saved));
    assert_int_equal(resume(&ck, "bf16"), LMF_ERR_MISMATCH);
    if (!strstr(lmf_last_error(), "trained in fp32")) fail_msg("mismatch message: %s", lmf_last_error());
    assert_int_equal(resume(&ck, NULL), LMF_OK); /* the text's missing line leaves the default, auto */
    lmf_checkpoint_free(&ck);
    lmf_checkpoint fin;
    load_ckpt("old", 8, &fin);
    assert_true(lmf_kv_text_get(fin.config_text, "precision", saved, sizeof saved));
    assert_string_equal(saved, "fp32");
    lmf_checkpoint_free(&fin);
}

static void test_precision_option(void **state) {
    lmf_train_config c;
    tiny_config_in(&c, "bad", "half");
    assert_int_equal(lmf_train_config_validate(&c), LMF_ERR_ARG);
    if (!strstr(lmf_last_error(), "precision: expected auto, bf16 or fp32, got 'half'"))
        fail_msg("message: %s", lmf_last_error());
    const char *toml = "[schedule]\nprecision = \"bf16\"\n";
    lmf_train_config_default(&c);
    assert_string_equal(c.precision, "auto");
    assert_int_equal(lmf_train_config_parse_toml(&c, toml, strlen(toml), "t.toml"), LMF_OK);
    assert_string_equal(c.precision, "bf16");
    const char *bad = "precision = 16\n";
    assert_int_equal(lmf_train_config_parse_toml(&c, bad, strlen(bad), "t.toml"), LMF_ERR_ARG);
    if (!strstr(lmf_last_error(), "t.toml:1:1: precision expects a \"string\""))
        fail_msg("message: %s", lmf_last_error());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_resume_is_exact),
        cmocka_unit_test(test_old_checkpoint_is_fp32),
        cmocka_unit_test(test_precision_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
