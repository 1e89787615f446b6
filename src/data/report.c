/* report.c — the data pipeline's report: per-stage counts, reasons with examples, malformed input; written as
 * report.json and printed as a table (see report.h). */
#include "data/report.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"
#include "data/text.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *const stage_names[LMF_N_STAGES] = {
    "normalize", "length", "gopher_quality", "gopher_repetition", "c4", "fineweb", "toxicity", "pii",
    "exact_dedup", "minhash", "shard"};

const char *lmf_stage_name(lmf_stage_id s) { return s < LMF_N_STAGES ? stage_names[s] : "?"; }

static char *dupn(const char *s, size_t n) {
    char *d = lmf_xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void lmf_report_init(lmf_report *r, int examples, int example_chars) {
    memset(r, 0, sizeof *r);
    r->examples = examples;
    r->example_chars = example_chars;
    for (int i = 0; i < LMF_N_STAGES; i++) r->stages[i].name = lmf_stage_name((lmf_stage_id)i);
}

static void free_reasons(lmf_report_reason *rs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < rs[i].n_ex; k++) {
            free(rs[i].ex[k].id);
            free(rs[i].ex[k].source);
            free(rs[i].ex[k].snippet);
            free(rs[i].ex[k].detail);
        }
        free(rs[i].ex);
        free(rs[i].reason);
    }
    free(rs);
}

void lmf_report_free(lmf_report *r) {
    if (!r) return;
    for (int i = 0; i < LMF_N_STAGES; i++) {
        free_reasons(r->stages[i].reasons, r->stages[i].n_reasons);
        for (size_t k = 0; k < r->stages[i].n_counters; k++) free(r->stages[i].counters[k].name);
        free(r->stages[i].counters);
    }
    free_reasons(r->malformed, r->n_malformed);
    free(r->out_dir);
    memset(r, 0, sizeof *r);
}

/* The first max_chars code points of text as valid UTF-8: invalid bytes become U+FFFD, so the JSON stays valid
 * whatever the input held; control characters other than \n and \t are shown as U+FFFD too. */
static char *snippet(const char *text, size_t len, int max_chars) {
    char *o = lmf_xrealloc(NULL, (size_t)max_chars * 4 + 4);
    size_t n = 0;
    size_t i = 0;
    for (int c = 0; c < max_chars && i < len; c++) {
        int32_t cp = lmf_utf8_next(text, len, &i);
        if (cp < 0 || (cp < 0x20 && cp != '\n' && cp != '\t') || cp == 0x7f) cp = 0xFFFD;
        n += lmf_utf8_put(o + n, cp);
    }
    if (i < len) n += lmf_utf8_put(o + n, 0x2026); /* … */
    o[n] = 0;
    return o;
}

void lmf_report_reason_add(lmf_report *r, lmf_report_reason **list, size_t *n, const char *reason, uint64_t bytes,
                           const char *id, size_t id_len, const char *source, const char *text, size_t len,
                           const char *detail) {
    lmf_report_reason *rs = NULL;
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*list)[i].reason, reason)) rs = &(*list)[i];
    if (!rs) {
        *list = lmf_xrealloc(*list, (*n + 1) * sizeof **list);
        rs = &(*list)[(*n)++];
        memset(rs, 0, sizeof *rs);
        rs->reason = strdup(reason);
    }
    rs->docs++;
    rs->bytes += bytes;
    if (rs->n_ex >= r->examples) return;
    rs->ex = lmf_xrealloc(rs->ex, (size_t)(rs->n_ex + 1) * sizeof *rs->ex);
    lmf_report_example *e = &rs->ex[rs->n_ex++];
    e->id = id ? snippet(id, id_len, 256) : NULL;
    e->source = source ? strdup(source) : NULL;
    e->snippet = text ? snippet(text, len, r->example_chars) : NULL;
    e->detail = detail ? snippet(detail, strlen(detail), 1000) : NULL;
}

void lmf_report_counter_add(lmf_report_stage *st, const char *name, uint64_t v) {
    for (size_t i = 0; i < st->n_counters; i++)
        if (!strcmp(st->counters[i].name, name)) {
            st->counters[i].value += v;
            return;
        }
    st->counters = lmf_xrealloc(st->counters, (st->n_counters + 1) * sizeof *st->counters);
    st->counters[st->n_counters].name = dupn(name, strlen(name));
    st->counters[st->n_counters++].value = v;
}

static cJSON *reasons_json(const lmf_report_reason *rs, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "reason", rs[i].reason);
        cJSON_AddNumberToObject(o, "docs", (double)rs[i].docs);
        cJSON_AddNumberToObject(o, "bytes", (double)rs[i].bytes);
        cJSON *ex = cJSON_AddArrayToObject(o, "examples");
        for (int k = 0; k < rs[i].n_ex; k++) {
            const lmf_report_example *e = &rs[i].ex[k];
            cJSON *x = cJSON_CreateObject();
            if (e->id) cJSON_AddStringToObject(x, "id", e->id);
            if (e->source) cJSON_AddStringToObject(x, "source", e->source);
            if (e->detail) cJSON_AddStringToObject(x, "why", e->detail);
            if (e->snippet) cJSON_AddStringToObject(x, "text", e->snippet);
            cJSON_AddItemToArray(ex, x);
        }
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static double mbps(uint64_t bytes, double s) { return s > 0 ? bytes / 1e6 / s : 0; }

lmf_status lmf_report_write_json(const lmf_report *r, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON *in = cJSON_AddObjectToObject(root, "input");
    cJSON_AddNumberToObject(in, "files", (double)r->files);
    cJSON_AddNumberToObject(in, "bytes_on_disk", (double)r->bytes_on_disk);
    cJSON_AddNumberToObject(in, "bytes_read", (double)r->bytes_read);
    cJSON_AddNumberToObject(in, "docs", (double)r->docs_read);
    uint64_t nm = 0;
    for (size_t i = 0; i < r->n_malformed; i++) nm += r->malformed[i].docs;
    cJSON_AddNumberToObject(in, "malformed", (double)nm);
    cJSON_AddItemToObject(in, "malformed_by_kind", reasons_json(r->malformed, r->n_malformed));
    cJSON *st = cJSON_AddArrayToObject(root, "stages");
    for (int i = 0; i < LMF_N_STAGES; i++) {
        const lmf_report_stage *s = &r->stages[i];
        if (!s->enabled) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "stage", s->name);
        cJSON_AddNumberToObject(o, "docs_in", (double)s->docs_in);
        cJSON_AddNumberToObject(o, "bytes_in", (double)s->bytes_in);
        cJSON_AddNumberToObject(o, "docs_kept", (double)s->docs_kept);
        cJSON_AddNumberToObject(o, "bytes_kept", (double)s->bytes_kept);
        cJSON_AddNumberToObject(o, "docs_removed", (double)s->docs_removed);
        cJSON_AddNumberToObject(o, "bytes_removed", (double)s->bytes_removed);
        cJSON_AddNumberToObject(o, "docs_modified", (double)s->docs_modified);
        cJSON_AddNumberToObject(o, "cpu_seconds", s->seconds);
        cJSON_AddNumberToObject(o, "mb_per_cpu_second", mbps(s->bytes_in, s->seconds));
        cJSON *c = cJSON_AddObjectToObject(o, "counters");
        for (size_t k = 0; k < s->n_counters; k++)
            cJSON_AddNumberToObject(c, s->counters[k].name, (double)s->counters[k].value);
        cJSON_AddItemToObject(o, "reasons", reasons_json(s->reasons, s->n_reasons));
        cJSON_AddItemToArray(st, o);
    }
    cJSON *out = cJSON_AddObjectToObject(root, "output");
    if (r->out_dir) cJSON_AddStringToObject(out, "dir", r->out_dir);
    cJSON_AddNumberToObject(out, "docs", (double)r->docs_out);
    cJSON_AddNumberToObject(out, "bytes", (double)r->bytes_out);
    cJSON_AddNumberToObject(out, "tokens_train", (double)r->tokens_train);
    cJSON_AddNumberToObject(out, "tokens_val", (double)r->tokens_val);
    cJSON *run = cJSON_AddObjectToObject(root, "run");
    cJSON_AddNumberToObject(run, "threads", r->threads);
    cJSON_AddNumberToObject(run, "wall_seconds", r->wall_seconds);
    cJSON_AddNumberToObject(run, "phase1_seconds", r->phase1_seconds);
    cJSON_AddNumberToObject(run, "phase2_seconds", r->phase2_seconds);
    cJSON_AddNumberToObject(run, "spill_bytes", (double)r->spill_bytes);
    cJSON_AddNumberToObject(run, "mb_per_second", mbps(r->bytes_read, r->wall_seconds));
    cJSON_AddNumberToObject(run, "mb_per_second_per_thread", mbps(r->bytes_read, r->wall_seconds) / (r->threads ? r->threads : 1));
    cJSON_AddNumberToObject(run, "cpu_seconds", r->cpu_seconds);
    cJSON_AddNumberToObject(run, "mb_per_cpu_second", mbps(r->bytes_read, r->cpu_seconds));
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) return lmf_fail(LMF_ERR_IO, "%s: cannot render the report", path);
    size_t n = strlen(txt);
    txt[n] = '\n'; /* cJSON's NUL becomes the final newline */
    const void *parts[1] = {txt};
    size_t sizes[1] = {n + 1};
    lmf_status s = lmf_write_file_atomic(path, parts, sizes, 1);
    free(txt);
    return s;
}

static void human(char *buf, size_t n, double b) {
    if (b < 1e3) snprintf(buf, n, "%.0f B", b);
    else if (b < 1e6) snprintf(buf, n, "%.1f kB", b / 1e3);
    else if (b < 1e9) snprintf(buf, n, "%.1f MB", b / 1e6);
    else snprintf(buf, n, "%.2f GB", b / 1e9);
}

/* One line of an example: newlines shown as ⏎ so each example stays on one line. */
static void print_flat(FILE *f, const char *s, int max) {
    int c = 0;
    for (size_t i = 0; s[i] && c < max; c++) {
        size_t j = i;
        int32_t cp = lmf_utf8_next(s, strlen(s + i) + i, &j);
        if (cp == '\n') fputs("\xE2\x8F\x8E", f);
        else if (cp == '\t') fputc(' ', f);
        else fwrite(s + i, 1, j - i, f);
        i = j;
    }
}

static void print_reasons(FILE *f, const lmf_report_reason *rs, size_t n, const char *indent) {
    for (size_t i = 0; i < n; i++) {
        char b[32];
        human(b, sizeof b, (double)rs[i].bytes);
        fprintf(f, "%s%-28s %10llu docs %10s\n", indent, rs[i].reason, (unsigned long long)rs[i].docs, b);
        for (int k = 0; k < rs[i].n_ex; k++) {
            const lmf_report_example *e = &rs[i].ex[k];
            fprintf(f, "%s    e.g. %s", indent, e->source ? e->source : "?");
            if (e->id && (!e->source || strcmp(e->id, e->source))) fprintf(f, " (id %s)", e->id);
            if (e->detail) {
                fputs(": ", f);
                print_flat(f, e->detail, 120);
            }
            if (e->snippet) {
                fputs("\n" , f);
                fprintf(f, "%s         \"", indent);
                print_flat(f, e->snippet, 90);
                fputs("\"", f);
            }
            fputc('\n', f);
        }
    }
}

void lmf_report_print(const lmf_report *r, FILE *f) {
    char b1[32], b2[32], b3[32];
    human(b1, sizeof b1, (double)r->bytes_read);
    fprintf(f, "input: %llu files, %llu documents, %s\n", (unsigned long long)r->files,
            (unsigned long long)r->docs_read, b1);
    fprintf(f, "\n%-18s %10s %10s %10s %10s %10s %10s %9s\n", "stage", "docs in", "bytes in", "kept", "removed",
            "modified", "bytes out", "MB/cpu-s");
    for (int i = 0; i < LMF_N_STAGES; i++) {
        const lmf_report_stage *s = &r->stages[i];
        if (!s->enabled) continue;
        human(b1, sizeof b1, (double)s->bytes_in);
        human(b2, sizeof b2, (double)s->bytes_kept);
        if (s->seconds > 0) snprintf(b3, sizeof b3, "%.1f", mbps(s->bytes_in, s->seconds));
        else snprintf(b3, sizeof b3, "-");
        fprintf(f, "%-18s %10llu %10s %10llu %10llu %10llu %10s %9s\n", s->name, (unsigned long long)s->docs_in, b1,
                (unsigned long long)s->docs_kept, (unsigned long long)s->docs_removed,
                (unsigned long long)s->docs_modified, b2, b3);
    }
    for (int i = 0; i < LMF_N_STAGES; i++) {
        const lmf_report_stage *s = &r->stages[i];
        if (!s->enabled || (!s->n_reasons && !s->n_counters)) continue;
        fprintf(f, "\n%s:", s->name);
        for (size_t k = 0; k < s->n_counters; k++)
            fprintf(f, "%s %s %llu", k ? "," : "", s->counters[k].name, (unsigned long long)s->counters[k].value);
        fputc('\n', f);
        print_reasons(f, s->reasons, s->n_reasons, "  ");
    }
    if (r->n_malformed) {
        fprintf(f, "\nmalformed input (skipped):\n");
        print_reasons(f, r->malformed, r->n_malformed, "  ");
    }
    human(b1, sizeof b1, (double)r->bytes_out);
    fprintf(f, "\noutput: %llu documents, %s", (unsigned long long)r->docs_out, b1);
    if (r->tokens_train || r->tokens_val)
        fprintf(f, "; tokens: %llu train, %llu val", (unsigned long long)r->tokens_train,
                (unsigned long long)r->tokens_val);
    fprintf(f, "%s%s\n", r->out_dir ? " in " : "", r->out_dir ? r->out_dir : "");
    fprintf(f, "time: %.2f s (%.2f s filter%s", r->wall_seconds, r->phase1_seconds,
            r->phase2_seconds > 0 ? ", " : ")");
    if (r->phase2_seconds > 0) fprintf(f, "%.2f s dedup + write)", r->phase2_seconds);
    fprintf(f, ", %d threads: %.1f MB/s; %.2f CPU-s: %.1f MB per CPU-second\n", r->threads,
            mbps(r->bytes_read, r->wall_seconds), r->cpu_seconds, mbps(r->bytes_read, r->cpu_seconds));
}
