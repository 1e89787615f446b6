/* test_train_loss.c — `lmforge train --loss fused`: the head's cross-entropy over vocabulary slabs trains the run
 * the kept logits train (every step's loss within rounding, in fp32 and bf16), resumes bit for bit, is what the
 * checkpoint records (a checkpoint without the line: logits); bad values and the TOML key. */
#include "test_util.h"
#define TRAIN_FIXTURE_NAME "lmf_test_train_loss"
#include "train_fixture.h"

#include "io/checkpoint.h"
#include "train/trainer.h"

#include <math.h>
#include <string.h>

static void tiny_config_in(lmf_train_config *c, const char *out, const char *loss, const char *precision) {
    tiny_config(c, out);
    strcpy(c->loss, loss);
    strcpy(c->precision, precision);
}

static void runs_as_logits(const char *precision, double tol) {
    char fo[32], lo[32];
    snprintf(fo, sizeof fo, "fused_%s", precision), snprintf(lo, sizeof lo, "logits_%s", precision);
    lmf_train_config f, l;
    tiny_config_in(&f, fo, "fused", precision);
    assert_int_equal(lmf_train_run(&f, NULL, NULL), LMF_OK);
    tiny_config_in(&l, lo, "logits", precision);
    assert_int_equal(lmf_train_run(&l, NULL, NULL), LMF_OK);
    char lf[16][32], ll[16][32];
    assert_int_equal(read_losses(fo, lf, 16), 8);
    assert_int_equal(read_losses(lo, ll, 16), 8);
    double worst = 0;
    for (int i = 0; i < 8; i++) worst = fmax(worst, fabs(atof(lf[i]) - atof(ll[i])) / atof(ll[i]));
    printf("%s: 8 steps, losses over slabs within %.2g of the kept logits' (%s -> %s)\n", precision, worst, lf[0],
           lf[7]);
    /* the slabs sum in another order: some digit of the 8 losses moves (identical ones: no fused head ran) */
    assert_true(worst > 0 && worst < tol && atof(lf[7]) < atof(lf[0]));
}

static void test_fp32(void **state) { runs_as_logits("fp32", 1e-5); }
static void test_bf16(void **state) { runs_as_logits("bf16", 1e-3); }

/* stopped at step 4 and resumed from the checkpoint's own text: the same step-8 checkpoint as the run without a stop */
static void test_resume_is_exact(void **state) {
    lmf_train_config a, b;
    tiny_config_in(&a, "whole", "fused", "fp32");
    assert_int_equal(lmf_train_run(&a, NULL, NULL), LMF_OK);
    tiny_config_in(&b, "split", "fused", "fp32");
    b.stop_at = 4;
    assert_int_equal(lmf_train_run(&b, NULL, NULL), LMF_ERR_INTERRUPTED);
    lmf_checkpoint ck;
    load_ckpt("split", 4, &ck);
    char saved[16] = "";
    assert_true(lmf_kv_text_get(ck.config_text, "loss", saved, sizeof saved));
    assert_string_equal(saved, "fused");
    assert_int_equal(resume_saved(&ck), LMF_OK);
    lmf_checkpoint_free(&ck);
    assert_same_checkpoints("whole", "split", 8);
    /* a text from before the option: logits */
    lmf_train_config r;
    lmf_train_config_default(&r);
    assert_int_equal(lmf_train_config_parse(&r, "batch_size = 4\n", "old"), LMF_OK);
    assert_string_equal(r.loss, "logits");
}

static void test_loss_option(void **state) {
    lmf_train_config c;
    tiny_config_in(&c, "bad", "slabs", "fp32");
    assert_int_equal(lmf_train_config_validate(&c), LMF_ERR_ARG);
    if (!strstr(lmf_last_error(), "loss: expected logits or fused, got 'slabs'"))
        fail_msg("message: %s", lmf_last_error());
    const char *toml = "[schedule]\nloss = \"fused\"\n";
    lmf_train_config_default(&c);
    assert_int_equal(lmf_train_config_parse_toml(&c, toml, strlen(toml), "t.toml"), LMF_OK);
    assert_string_equal(c.loss, "fused");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_loss_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
