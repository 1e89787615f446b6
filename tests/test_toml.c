/* test_toml.c — the TOML-subset parser (src/io/toml.h): every value type, lookups and the used-key check, errors
 * naming line:column, and hostile input (truncations, byte flips, deep nesting, huge numbers) never crashing. */
#include "test_util.h"

#include "io/toml.h"

#include <math.h>
#include <unistd.h>

static lmf_toml *parse_ok(const char *text) {
    lmf_toml *t = NULL;
    lmf_status s = lmf_toml_parse(text, strlen(text), "t.toml", &t);
    if (s != LMF_OK) fail_msg("parse failed: %s", lmf_last_error());
    return t;
}

/* Parsing must fail with a message containing want (e.g. "t.toml:3:7"). */
static void parse_err(const char *text, const char *want) {
    lmf_toml *t = (lmf_toml *)1;
    lmf_status s = lmf_toml_parse(text, strlen(text), "t.toml", &t);
    if (s == LMF_OK) fail_msg("accepted: %s", text);
    assert_null(t);
    if (!strstr(lmf_last_error(), want)) fail_msg("error '%s' lacks '%s' (input: %s)", lmf_last_error(), want, text);
}

static void test_values(void **st) {
    const char *text = "# a comment\n"
                       "top = 1\n"
                       "[a]\n"
                       "s = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600 \\n\"  # trailing comment\n"
                       "lit = 'C:\\path\\x'\n"
                       "i = -42\n"
                       "big = 9_223_372_036_854_775_807\n"
                       "hex = 0xff\n"
                       "oct = 0o17\n"
                       "bin = 0b101\n"
                       "f = 3.25\n"
                       "e = -1.5e-3\n"
                       "E = 2E10\n"
                       "inf = -inf\n"
                       "nan = nan\n"
                       "t = true\n"
                       "f2 = false\n"
                       "\"quoted key\" = 7\n"
                       "arr = [1, 2,\n  3, # comment inside\n]\n"
                       "nested = [[2, 0.2], [3, 0.18]]\n"
                       "empty = []\n"
                       "strs = [\"x\", 'y']\n"
                       "[b.c]\r\n"
                       "k = \"v\"\r\n";
    lmf_toml *t = parse_ok(text);
    lmf_toml_table *root = lmf_toml_table_get(t, "");
    int64_t i = 0;
    assert_int_equal(lmf_toml_get_int(t, root, "top", 0, 10, &i), LMF_OK);
    assert_int_equal(i, 1);
    lmf_toml_table *a = lmf_toml_table_get(t, "a");
    assert_non_null(a);
    const char *s = NULL;
    assert_int_equal(lmf_toml_get_string(t, a, "s", &s), LMF_OK);
    assert_string_equal(s, "tab\there \"q\" \\ \xC3\xA9 \xF0\x9F\x98\x80 \n");
    assert_int_equal(lmf_toml_get_string(t, a, "lit", &s), LMF_OK);
    assert_string_equal(s, "C:\\path\\x");
    assert_int_equal(lmf_toml_get_int(t, a, "i", INT64_MIN, INT64_MAX, &i), LMF_OK);
    assert_int_equal(i, -42);
    assert_int_equal(lmf_toml_get_int(t, a, "big", INT64_MIN, INT64_MAX, &i), LMF_OK);
    assert_true(i == INT64_MAX);
    assert_int_equal(lmf_toml_get_int(t, a, "hex", 0, 1000, &i), LMF_OK);
    assert_int_equal(i, 255);
    assert_int_equal(lmf_toml_get_int(t, a, "oct", 0, 1000, &i), LMF_OK);
    assert_int_equal(i, 15);
    assert_int_equal(lmf_toml_get_int(t, a, "bin", 0, 1000, &i), LMF_OK);
    assert_int_equal(i, 5);
    double d = 0;
    assert_int_equal(lmf_toml_get_float(t, a, "f", -1e9, 1e9, &d), LMF_OK);
    assert_true(d == 3.25);
    assert_int_equal(lmf_toml_get_float(t, a, "e", -1e9, 1e9, &d), LMF_OK);
    assert_true(d == -1.5e-3);
    assert_int_equal(lmf_toml_get_float(t, a, "E", 0, 1e11, &d), LMF_OK);
    assert_true(d == 2e10);
    assert_int_equal(lmf_toml_get_float(t, a, "inf", -INFINITY, INFINITY, &d), LMF_OK);
    assert_true(isinf(d) && d < 0);
    lmf_toml_kv *kv = lmf_toml_kv_get(a, "nan");
    assert_true(kv && kv->val.type == LMF_TOML_FLOAT && isnan(kv->val.u.f));
    /* NaN is outside every range */
    assert_int_equal(lmf_toml_get_float(t, a, "nan", -INFINITY, INFINITY, &d), LMF_ERR_ARG);
    int b = -1;
    assert_int_equal(lmf_toml_get_bool(t, a, "t", &b), LMF_OK);
    assert_int_equal(b, 1);
    assert_int_equal(lmf_toml_get_bool(t, a, "f2", &b), LMF_OK);
    assert_int_equal(b, 0);
    assert_int_equal(lmf_toml_get_int(t, a, "quoted key", 0, 10, &i), LMF_OK);
    assert_int_equal(i, 7);
    const lmf_toml_value *arr = NULL;
    assert_int_equal(lmf_toml_get_array(t, a, "arr", LMF_TOML_INT, &arr), LMF_OK);
    assert_int_equal(arr->u.arr.n, 3);
    assert_int_equal(arr->u.arr.items[2].u.i, 3);
    assert_int_equal(arr->u.arr.items[2].line, 20);
    assert_int_equal(lmf_toml_get_array(t, a, "nested", LMF_TOML_ARRAY, &arr), LMF_OK);
    assert_int_equal(arr->u.arr.n, 2);
    assert_true(arr->u.arr.items[1].u.arr.items[1].u.f == 0.18);
    assert_int_equal(lmf_toml_get_array(t, a, "empty", LMF_TOML_STRING, &arr), LMF_OK);
    assert_int_equal(arr->u.arr.n, 0);
    assert_int_equal(lmf_toml_get_array(t, a, "strs", LMF_TOML_STRING, &arr), LMF_OK);
    assert_string_equal(arr->u.arr.items[1].u.str.s, "y");
    /* an unread key is reported with its place */
    assert_int_equal(lmf_toml_check_used(t), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "unknown table [b.c]"));
    lmf_toml_table *bc = lmf_toml_table_get(t, "b.c");
    assert_int_equal(lmf_toml_check_used(t), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "t.toml:26:1: unknown key 'k' in [b.c]"));
    assert_int_equal(lmf_toml_get_string(t, bc, "k", &s), LMF_OK);
    assert_string_equal(s, "v");
    assert_int_equal(lmf_toml_check_used(t), LMF_OK);
    /* absent keys leave the value alone */
    i = 99;
    assert_int_equal(lmf_toml_get_int(t, a, "missing", 0, 10, &i), LMF_OK);
    assert_int_equal(i, 99);
    assert_int_equal(lmf_toml_get_int(t, NULL, "x", 0, 10, &i), LMF_OK);
    lmf_toml_free(t);
}

static void test_type_errors(void **st) {
    lmf_toml *t = parse_ok("[x]\nn = \"ten\"\nr = 11\nf = 1.5\nl = [1, \"a\"]\nz = \"a\\u0000b\"\n");
    lmf_toml_table *x = lmf_toml_table_get(t, "x");
    int64_t i;
    assert_int_equal(lmf_toml_get_int(t, x, "n", 0, 100, &i), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "t.toml:2:5: x.n: expected an integer, got a string"));
    assert_int_equal(lmf_toml_get_int(t, x, "r", 0, 10, &i), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "t.toml:3:5: x.r = 11 is out of range [0, 10]"));
    assert_int_equal(lmf_toml_get_int(t, x, "f", 0, 10, &i), LMF_ERR_ARG); /* floats are not integers */
    double d;
    assert_int_equal(lmf_toml_get_float(t, x, "r", 0, 100, &d), LMF_OK); /* integers are numbers */
    assert_true(d == 11);
    const lmf_toml_value *a;
    assert_int_equal(lmf_toml_get_array(t, x, "l", LMF_TOML_INT, &a), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "t.toml:5:9: x.l[1]: expected an integer, got a string"));
    const char *s;
    assert_int_equal(lmf_toml_get_string(t, x, "z", &s), LMF_ERR_ARG);
    assert_non_null(strstr(lmf_last_error(), "NUL"));
    int b;
    assert_int_equal(lmf_toml_get_bool(t, x, "r", &b), LMF_ERR_ARG);
    lmf_toml_free(t);
}

static void test_syntax_errors(void **st) {
    parse_err("a = \n", "t.toml:1:5: expected a value");
    parse_err("a = 1\nb = \"open\n", "t.toml:2:5: unterminated string");
    parse_err("a = 1\n[t\n", "t.toml:2:3: expected ']'");
    parse_err("a = 1 2\n", "t.toml:1:7: expected the end of the line");
    parse_err("a = 1\na = 2\n", "t.toml:2:1: key 'a' defined twice");
    parse_err("[t]\n[t]\n", "t.toml:2:1: table [t] defined twice");
    parse_err("x = \"\\q\"\n", "t.toml:1:6: unknown escape");
    parse_err("x = \"\\u12\"\n", "needs 4 hex digits");
    parse_err("x = \"\\uD800\"\n", "not a Unicode scalar value");
    parse_err("x = 01\n", "leading zeros");
    parse_err("x = 1__0\n", "'_'");
    parse_err("x = 1.\n", "decimal point");
    parse_err("x = 1e\n", "exponent");
    parse_err("x = 99999999999999999999\n", "64 bits");
    parse_err("x = 0xffffffffffffffffff\n", "64 bits");
    parse_err("x = tru\n", "t.toml:1:5: expected a value");
    parse_err("x = {a = 1}\n", "inline tables are not supported");
    parse_err("[[t]]\n", "arrays of tables");
    parse_err("x = \"\"\"a\"\"\"\n", "multi-line strings");
    parse_err("a.b = 1\n", "dotted keys");
    parse_err("x = [1, 2\n", "expected ',' or ']'");
    parse_err("x = \"\xff\"\n", "invalid UTF-8");
    parse_err("x = \"a\x01\"\n", "control character");
    parse_err("= 1\n", "t.toml:1:1: expected a key");
    parse_err("x = 1979-05-27\n", "t.toml:1:9");
    /* deep nesting is refused, not a stack overflow */
    char deep[200];
    memset(deep, '[', sizeof deep);
    memcpy(deep, "x = ", 4);
    deep[sizeof deep - 1] = 0;
    parse_err(deep, "nested deeper");
    /* a BOM and a file without a final newline are fine */
    lmf_toml *t = parse_ok("\xEF\xBB\xBFx = 1");
    lmf_toml_free(t);
}

/* Hostile input: every prefix and single-byte mutation of a valid document parses or fails cleanly (under
 * ASan in `make test-asan`). */
static void test_hostile(void **st) {
    const char *seed = "# c\n[input]\npaths = [\"a\", 'b']\nn = -12_3\nf = 1.5e-3\nb = true\n[x.y]\ns = \"\\u00e9\\t\"\n"
                       "arr = [[1, 2.0], [3, 4]]\n";
    size_t n = strlen(seed);
    char *buf = malloc(n + 1);
    for (size_t k = 0; k <= n; k++) { /* truncations, parsed from an exact-size heap copy */
        char *p = malloc(k ? k : 1);
        memcpy(p, seed, k);
        lmf_toml *t = NULL;
        if (lmf_toml_parse(p, k, "trunc", &t) == LMF_OK) lmf_toml_free(t);
        free(p);
    }
    unsigned rng = 12345;
    const char bytes[] = "[]=\"'\\#\n\r,.0123456789eE+-_xuU{}\xff\x00 \t";
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, seed, n);
        int muts = 1 + (it % 4);
        for (int m = 0; m < muts; m++) {
            rng = rng * 1103515245u + 12345u;
            size_t pos = (rng >> 8) % n;
            rng = rng * 1103515245u + 12345u;
            buf[pos] = (it & 1) ? bytes[(rng >> 8) % (sizeof bytes - 1)] : (char)(rng >> 16);
        }
        lmf_toml *t = NULL;
        if (lmf_toml_parse(buf, n, "mut", &t) == LMF_OK) {
            assert_non_null(t);
            lmf_toml_check_used(t);
            lmf_toml_free(t);
        } else {
            assert_null(t);
            assert_true(strlen(lmf_last_error()) > 0);
        }
    }
    free(buf);
}

static void test_load(void **st) {
    char path[] = "/tmp/lmf_toml_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[a]\nx = 1\ny = oops\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    lmf_toml *t;
    assert_int_equal(lmf_toml_load(path, &t), LMF_ERR_FORMAT);
    char want[64];
    snprintf(want, sizeof want, "%s:3:5", path);
    assert_non_null(strstr(lmf_last_error(), want));
    unlink(path);
    assert_int_equal(lmf_toml_load("/nonexistent/x.toml", &t), LMF_ERR_IO);
    assert_non_null(strstr(lmf_last_error(), "/nonexistent/x.toml"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),   cmocka_unit_test(test_type_errors), cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_hostile),  cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
