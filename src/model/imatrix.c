/* imatrix.c — importance matrices (lmforge.h: lmf_imatrix_*), llama.cpp's imatrix files read and written.
 *
 * An entry per weight matrix, named as the GGUF tensor it weighs ("blk.3.ffn_down.weight"): for each input column,
 * the sum of its squares over the rows the matrix multiplied, and how many rows (per expert for a mixture's stacked
 * experts, which see only the tokens routed to them). llama-imatrix collects these from its graph's matrix products
 * (the output head only when asked, never the token embedding); lmforge collects the same sums from the block's
 * observer (block.h: lmf_obs_site), one call per input site and step. llama-quantize reads each entry as sum / count
 * per matrix: the columns' mean squared inputs, the weights of each column's quantization error.
 *
 * Files: the GGUF format llama-imatrix writes by default ("<name>.in_sum2" F32 (cols, matrices) and "<name>.counts"
 * F32 (1, matrices) per entry, names sorted; general.type "imatrix", imatrix.datasets / chunk_count / chunk_size),
 * and the older .dat (read only): i32 entry count; per entry i32 name length, name, i32 calls, i32 values, floats
 * already divided by the count and multiplied by the calls; then optionally i32 chunks, i32 length, dataset. */
#include "core/alloc.h"
#include "core/status.h"
#include "io/gguf.h"
#include "lmforge.h"
#include "model/block.h"
#include "model/infer.h"
#include "model/weights.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    int cols, n_mat;   /* values: cols x n_mat (legacy files: n_mat 1, cols = every value) */
    double *sum;       /* while computing: the sums of squares */
    float *sums;       /* as stored in the file */
    int64_t *counts;   /* n_mat: rows summed (legacy: the calls) */
    float *values;     /* what quantize weighs by: sums / counts, as llama-quantize reads them */
} entry;

struct lmf_imatrix {
    entry *e;
    int n, cap;
    char **datasets;
    int n_datasets;
    uint32_t chunk_count, chunk_size;
    int legacy;
};

static void entry_free(entry *e) { free(e->name), free(e->sum), free(e->sums), free(e->counts), free(e->values); }

void lmf_imatrix_free(lmf_imatrix *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) entry_free(&m->e[i]);
    for (int i = 0; i < m->n_datasets; i++) free(m->datasets[i]);
    free(m->datasets), free(m->e), free(m);
}

static entry *find(const lmf_imatrix *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].name, name)) return &m->e[i];
    return NULL;
}

static entry *add(lmf_imatrix *m, const char *name, int cols, int n_mat) {
    if (m->n == m->cap) m->cap = m->cap ? 2 * m->cap : 64, m->e = lmf_xrealloc(m->e, (size_t)m->cap * sizeof *m->e);
    entry *e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    e->name = lmf_xmalloc(strlen(name) + 1), e->cols = cols, e->n_mat = n_mat;
    strcpy(e->name, name);
    e->counts = lmf_xcalloc((size_t)n_mat, sizeof *e->counts);
    return e;
}

static void add_dataset(lmf_imatrix *m, const char *s, size_t len) {
    m->datasets = lmf_xrealloc(m->datasets, (size_t)(m->n_datasets + 1) * sizeof *m->datasets);
    char *d = lmf_xmalloc(len + 1);
    memcpy(d, s, len), d[len] = 0;
    m->datasets[m->n_datasets++] = d;
}

/* values from sums and counts, as llama-quantize's load_imatrix makes them (float arithmetic) */
static void normalise(lmf_imatrix *m, entry *e) {
    size_t nv = (size_t)e->cols * e->n_mat;
    e->values = lmf_xmalloc(nv * sizeof(float));
    for (int j = 0; j < e->n_mat; j++) {
        float count = (float)e->counts[j];
        for (size_t i = 0; i < (size_t)e->cols; i++) {
            size_t k = (size_t)j * e->cols + i;
            if (m->legacy) e->values[k] = e->counts[0] > 0 ? e->sums[k] / (float)e->counts[0] : e->sums[k];
            else e->values[k] = count > 0.0f ? e->sums[k] / count : 1.0f;
        }
    }
}

static lmf_status check_finite(const char *path, const entry *e) {
    for (size_t k = 0; k < (size_t)e->cols * e->n_mat; k++)
        if (!isfinite(e->sums[k]))
            return lmf_fail(LMF_ERR_FORMAT, "%s: entry %s: value %zu is %g (an importance must be finite)", path,
                            e->name, k, (double)e->sums[k]);
    return LMF_OK;
}

/* ---- reading -------------------------------------------------------------------------------------------------- */

static lmf_status load_gguf(const char *path, lmf_imatrix *m) {
    lmf_gguf *g;
    LMF_TRY(lmf_gguf_open(path, &g));
    lmf_status st = LMF_OK;
    const lmf_gguf_kv *ds = lmf_gguf_find(g, "imatrix.datasets");
    if (!ds || !lmf_gguf_find(g, "imatrix.chunk_count") || !lmf_gguf_find(g, "imatrix.chunk_size")) {
        st = lmf_fail(LMF_ERR_FORMAT, "%s: not an imatrix file: a GGUF without imatrix.datasets, imatrix.chunk_count "
                      "and imatrix.chunk_size (llama-imatrix writes them)", path);
        goto done;
    }
    if (ds->type != LMF_GGUF_ARRAY || ds->elem_type != LMF_GGUF_STRING) {
        st = lmf_fail(LMF_ERR_FORMAT, "%s: imatrix.datasets at offset %llu is not an array of strings", path,
                      (unsigned long long)ds->offset);
        goto done;
    }
    for (uint64_t i = 0; i < ds->count; i++) {
        size_t len;
        const char *s = lmf_gguf_arr_str(g, ds, i, &len);
        add_dataset(m, s, len);
    }
    if ((st = lmf_gguf_get_u32(g, "imatrix.chunk_count", &m->chunk_count)) != LMF_OK) goto done;
    if ((st = lmf_gguf_get_u32(g, "imatrix.chunk_size", &m->chunk_size)) != LMF_OK) goto done;
    for (int64_t t = 0; t < g->n_tensors; t++) {
        const lmf_gguf_tensor *s = &g->tensors[t];
        size_t len = strlen(s->name), suf = strlen(".in_sum2");
        if (len <= suf || strcmp(s->name + len - suf, ".in_sum2")) continue;
        char name[512], cname[520];
        if (len - suf >= sizeof name) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: tensor name %s is too long", path, s->name);
            goto done;
        }
        memcpy(name, s->name, len - suf), name[len - suf] = 0;
        snprintf(cname, sizeof cname, "%s.counts", name);
        const lmf_gguf_tensor *c = lmf_gguf_find_tensor(g, cname);
        if (!c) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: %s has no %s beside it", path, s->name, cname);
            goto done;
        }
        if (s->type != LMF_GGML_F32 || c->type != LMF_GGML_F32) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: %s and %s must be F32", path, s->name, cname);
            goto done;
        }
        if (!c->n_elements || s->n_elements % c->n_elements || s->n_elements / c->n_elements > INT32_MAX ||
            c->n_elements > INT32_MAX) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: %s holds %llu values for %llu counts (a whole row per count)", path,
                          s->name, (unsigned long long)s->n_elements, (unsigned long long)c->n_elements);
            goto done;
        }
        if (find(m, name)) {
            st = lmf_fail(LMF_ERR_FORMAT, "%s: entry %s appears twice", path, name);
            goto done;
        }
        entry *e = add(m, name, (int)(s->n_elements / c->n_elements), (int)c->n_elements);
        e->sums = lmf_xmalloc((size_t)s->n_elements * sizeof(float));
        memcpy(e->sums, s->data, (size_t)s->n_elements * sizeof(float));
        for (int j = 0; j < e->n_mat; j++) {
            float cf;
            memcpy(&cf, (const char *)c->data + (size_t)j * 4, 4);
            if (!(cf >= 0.0f && cf < 9.2e18f)) {
                st = lmf_fail(LMF_ERR_FORMAT, "%s: %s[%d] is %g, not a count", path, cname, j, (double)cf);
                goto done;
            }
            e->counts[j] = llroundf(cf);
        }
        if ((st = check_finite(path, e)) != LMF_OK) goto done;
    }
    if (!m->n) st = lmf_fail(LMF_ERR_FORMAT, "%s: an imatrix GGUF without entries (no *.in_sum2 tensors)", path);
done:
    lmf_gguf_close(g);
    return st;
}

typedef struct {
    const uint8_t *p;
    size_t len, off;
} reader;

static int rd_i32(reader *r, int32_t *v) {
    if (r->len - r->off < 4) return 0;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return 1;
}

static lmf_status load_legacy(const char *path, const uint8_t *p, size_t len, lmf_imatrix *m) {
    reader r = {p, len, 0};
    int32_t n;
    m->legacy = 1;
    if (!rd_i32(&r, &n) || n < 1)
        return lmf_fail(LMF_ERR_FORMAT, "%s: neither a GGUF nor a legacy imatrix (.dat): the entry count at offset 0 "
                        "is missing or below 1", path);
    for (int i = 0; i < n; i++) {
        int32_t nlen, ncall = 0, nval = 0;
        size_t at = r.off;
        if (!rd_i32(&r, &nlen) || nlen < 1 || nlen > 4096 || r.len - r.off < (size_t)nlen)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %zu: entry %d's name length is missing or not in [1, 4096]",
                            path, at, i);
        char name[4097];
        memcpy(name, r.p + r.off, (size_t)nlen), name[nlen] = 0;
        r.off += (size_t)nlen;
        at = r.off;
        if (!rd_i32(&r, &ncall) || !rd_i32(&r, &nval) || nval < 1 || r.len - r.off < (size_t)nval * 4)
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %zu: entry %s: its call and value counts are missing, or its "
                            "%d values run past the end", path, at, name, nval);
        if (strlen(name) != (size_t)nlen || find(m, name))
            return lmf_fail(LMF_ERR_FORMAT, "%s: offset %zu: entry name %s is %s", path, at - (size_t)nlen - 4, name,
                            strlen(name) != (size_t)nlen ? "cut by a NUL byte" : "there twice");
        entry *e = add(m, name, nval, 1);
        e->sums = lmf_xmalloc((size_t)nval * sizeof(float));
        memcpy(e->sums, r.p + r.off, (size_t)nval * 4);
        r.off += (size_t)nval * 4;
        e->counts[0] = ncall;
        LMF_TRY(check_finite(path, e));
    }
    int32_t chunks, dlen; /* the trailer is optional, and so is each of its parts */
    if (rd_i32(&r, &chunks)) {
        m->chunk_count = chunks > 0 ? (uint32_t)chunks : 0;
        if (rd_i32(&r, &dlen) && dlen > 0 && r.len - r.off >= (size_t)dlen) add_dataset(m, (const char *)r.p + r.off, (size_t)dlen);
    }
    return LMF_OK;
}

lmf_status lmf_imatrix_load(const char *path, lmf_imatrix **out) {
    *out = NULL;
    lmf_imatrix *m = lmf_xcalloc(1, sizeof *m);
    lmf_status st;
    if (lmf_gguf_sniff(path)) {
        st = load_gguf(path, m);
    } else {
        FILE *f = fopen(path, "rb");
        if (!f) {
            free(m);
            return lmf_fail(LMF_ERR_IO, "%s: cannot open the importance matrix", path);
        }
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0, got;
        do {
            if (len == cap) cap = cap ? 2 * cap : 1 << 16, buf = lmf_xrealloc(buf, cap);
            got = fread(buf + len, 1, cap - len, f);
            len += got;
        } while (got);
        int err = ferror(f);
        fclose(f);
        st = err ? lmf_fail(LMF_ERR_IO, "%s: read error", path) : load_legacy(path, buf, len, m);
        free(buf);
    }
    if (st != LMF_OK) {
        lmf_imatrix_free(m);
        return st;
    }
    for (int i = 0; i < m->n; i++) normalise(m, &m->e[i]);
    *out = m;
    return LMF_OK;
}

/* ---- accessors ------------------------------------------------------------------------------------------------ */

int lmf_imatrix_entries(const lmf_imatrix *m) { return m->n; }
int lmf_imatrix_chunks(const lmf_imatrix *m) { return (int)m->chunk_count; }
const char *lmf_imatrix_dataset(const lmf_imatrix *m) { return m->n_datasets ? m->datasets[0] : NULL; }

const char *lmf_imatrix_entry(const lmf_imatrix *m, int i, int *cols, int *n_mat, const int64_t **counts) {
    if (i < 0 || i >= m->n) return NULL;
    if (cols) *cols = m->e[i].cols;
    if (n_mat) *n_mat = m->e[i].n_mat;
    if (counts) *counts = m->e[i].counts;
    return m->e[i].name;
}

const float *lmf_imatrix_find(const lmf_imatrix *m, const char *name, size_t *n) {
    const entry *e = m ? find(m, name) : NULL;
    if (n) *n = e ? (size_t)e->cols * e->n_mat : 0;
    return e ? e->values : NULL;
}

void lmf_imatrix_select(lmf_imatrix *m, const char *const *names, int n, int include) {
    int k = 0;
    for (int i = 0; i < m->n; i++) {
        int hit = 0;
        for (int j = 0; j < n && !hit; j++) hit = strstr(m->e[i].name, names[j]) != NULL;
        if (hit == !!include) {
            m->e[k++] = m->e[i];
            continue;
        }
        entry_free(&m->e[i]);
    }
    m->n = k;
}

/* ---- writing -------------------------------------------------------------------------------------------------- */

static int by_name(const void *a, const void *b) {
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

lmf_status lmf_imatrix_save(const lmf_imatrix *m, const char *path) {
    lmf_gguf_writer *g = lmf_gguf_writer_create(0);
    lmf_gguf_writer_set_str(g, "general.type", "imatrix");
    lmf_gguf_writer_set_arr_str(g, "imatrix.datasets", (const char *const *)m->datasets, (uint64_t)m->n_datasets);
    lmf_gguf_writer_set_u32(g, "imatrix.chunk_count", m->chunk_count);
    lmf_gguf_writer_set_u32(g, "imatrix.chunk_size", m->chunk_size);
    const entry **order = lmf_xmalloc((size_t)(m->n ? m->n : 1) * sizeof *order);
    for (int i = 0; i < m->n; i++) order[i] = &m->e[i];
    qsort(order, (size_t)m->n, sizeof *order, by_name);
    float **counts = lmf_xmalloc((size_t)(m->n ? m->n : 1) * sizeof *counts);
    for (int i = 0; i < m->n; i++) {
        const entry *e = order[i];
        char nm[600];
        counts[i] = lmf_xmalloc((size_t)e->n_mat * sizeof(float));
        for (int j = 0; j < e->n_mat; j++) counts[i][j] = (float)e->counts[j];
        /* ggml drops trailing dimensions of 1: (cols) and (1) for a single matrix, as llama-imatrix's files */
        int64_t ne[2] = {e->cols, e->n_mat}, one[2] = {1, e->n_mat};
        snprintf(nm, sizeof nm, "%s.in_sum2", e->name);
        lmf_gguf_writer_add_tensor(g, nm, LMF_GGML_F32, e->n_mat > 1 ? 2 : 1, ne, e->sums);
        snprintf(nm, sizeof nm, "%s.counts", e->name);
        lmf_gguf_writer_add_tensor(g, nm, LMF_GGML_F32, e->n_mat > 1 ? 2 : 1, one, counts[i]);
    }
    lmf_status st = lmf_gguf_writer_write(g, path);
    lmf_gguf_writer_free(g);
    for (int i = 0; i < m->n; i++) free(counts[i]);
    free(counts), free(order);
    return st;
}

/* ---- computing ------------------------------------------------------------------------------------------------ */

typedef struct {
    lmf_imatrix *m;
    const lmf_model_config *cfg;
    const lmf_imatrix_params *p;
    double *sq;       /* one site's column sums, the widest input */
    int head;         /* the output head's rows are collected */
    const char *bad;  /* an entry of a resumed matrix whose shape is not this model's */
    long windows;     /* done so far, a resumed matrix's included */
} collector;

/* The matrices (GGUF names, llama.cpp's) that multiply the rows of a site. */
static int site_names(const lmf_model_config *c, lmf_obs_site site, const char *names[3]) {
    switch (site) {
    case LMF_OBS_ATTN_IN:
        if (c->arch == LMF_ARCH_GPT2 || c->arch == LMF_ARCH_PHI3) return names[0] = "attn_qkv", 1; /* fused */
        return names[0] = "attn_q", names[1] = "attn_k", names[2] = "attn_v", 3;
    case LMF_OBS_ATTN_OUT: return names[0] = "attn_output", 1;
    case LMF_OBS_FFN_IN:
        if (lmf_act_gated(c->act) && c->arch != LMF_ARCH_PHI3) return names[0] = "ffn_gate", names[1] = "ffn_up", 2;
        return names[0] = "ffn_up", 1;
    case LMF_OBS_FFN_DOWN: return names[0] = "ffn_down", 1;
    case LMF_OBS_ROUTER: return names[0] = "ffn_gate_inp", 1;
    case LMF_OBS_EXPERT_IN: return names[0] = "ffn_gate_exps", names[1] = "ffn_up_exps", 2;
    case LMF_OBS_EXPERT_DOWN: return names[0] = "ffn_down_exps", 1;
    case LMF_OBS_SHARED_IN:
        names[0] = "ffn_gate_shexp", names[1] = "ffn_up_shexp";
        if (c->shared_gate) return names[2] = "ffn_gate_inp_shexp", 3;
        return 2;
    case LMF_OBS_SHARED_DOWN: return names[0] = "ffn_down_shexp", 1;
    case LMF_OBS_OUTPUT: return names[0] = "output", 1;
    }
    return 0;
}

static void observe(void *user, int layer, lmf_obs_site site, int expert, const float *in, int ldi, int N,
                    int cols) {
    collector *a = user;
    if (site == LMF_OBS_OUTPUT && !a->head) return;
    double *sq = a->sq;
#pragma omp parallel for schedule(static) if ((long)N * cols > 65536)
    for (int j = 0; j < cols; j++) {
        double s = 0;
        for (int i = 0; i < N; i++) {
            double v = in[(size_t)i * ldi + j];
            s += v * v;
        }
        sq[j] = s;
    }
    const char *names[3];
    int nn = site_names(a->cfg, site, names), E = expert >= 0 ? a->cfg->n_expert : 1, mat = expert >= 0 ? expert : 0;
    for (int k = 0; k < nn; k++) {
        char nm[96];
        if (layer >= 0) snprintf(nm, sizeof nm, "blk.%d.%s.weight", layer, names[k]);
        else snprintf(nm, sizeof nm, "%s.weight", names[k]);
        entry *e = find(a->m, nm);
        if (!e) {
            e = add(a->m, nm, cols, E);
            e->sum = lmf_xcalloc((size_t)cols * E, sizeof(double));
        }
        if (e->cols != cols || e->n_mat != E) { /* a resumed matrix of another model */
            if (!a->bad) a->bad = e->name;
            continue;
        }
        double *acc = e->sum + (size_t)mat * cols;
        for (int j = 0; j < cols; j++) acc[j] += sq[j];
        e->counts[mat] += N;
    }
}

/* The sums so far as a file keeps them (float sums, counts that survive a float), and the values quantize reads. */
static void settle(lmf_imatrix *m) {
    for (int i = 0; i < m->n; i++) {
        entry *e = &m->e[i];
        size_t nv = (size_t)e->cols * e->n_mat;
        if (!e->sums) e->sums = lmf_xmalloc(nv * sizeof(float));
        for (size_t k = 0; k < nv; k++) e->sums[k] = (float)e->sum[k];
        free(e->values);
        normalise(m, e);
    }
}

static lmf_status after_window(void *user, long k) {
    collector *a = user;
    a->windows = k + 1;
    if (a->bad)
        return lmf_fail(LMF_ERR_ARG, "the matrix resumed has entry %s in another shape than this model's (another "
                        "model's matrix?)", a->bad);
    if (!a->p->save_path || a->p->save_every <= 0 || (k + 1) % a->p->save_every) return LMF_OK;
    a->m->chunk_count = (uint32_t)(k + 1);
    settle(a->m);
    return lmf_imatrix_save(a->m, a->p->save_path);
}

lmf_status lmf_imatrix_compute(const lmf_weights *w, const char *text, size_t len, const lmf_imatrix_params *p,
                               const lmf_sink *sink, lmf_imatrix **out, lmf_ppl_result *ppl) {
    *out = NULL;
    const lmf_model_config *c = lmf_weights_config(w);
    const lmf_imatrix *r = p->resume;
    if (p->ctx < 16)
        return lmf_fail(LMF_ERR_ARG, "imatrix: a context of %d tokens; at least 16 (llama-imatrix leaves products of "
                        "fewer rows out)", p->ctx);
    if (r && (r->legacy || r->chunk_size != (uint32_t)p->ctx || !r->chunk_count))
        return lmf_fail(LMF_ERR_ARG, "imatrix: the matrix to resume was made %s; this run's windows are %d tokens",
                        r->legacy ? "in the legacy format, which does not record its windows"
                        : !r->chunk_count ? "over no windows" : "with other windows", p->ctx);
    int widest = c->n_embd;
    int dims[3] = {lmf_q_width(c), c->ffn_dim, c->shared_ffn_dim};
    for (int i = 0; i < 3; i++) widest = dims[i] > widest ? dims[i] : widest;
    lmf_imatrix *m = lmf_xcalloc(1, sizeof *m);
    m->chunk_size = (uint32_t)p->ctx;
    if (r) {
        for (int i = 0; i < r->n_datasets; i++) add_dataset(m, r->datasets[i], strlen(r->datasets[i]));
        for (int i = 0; i < r->n; i++) {
            const entry *f = &r->e[i];
            entry *e = add(m, f->name, f->cols, f->n_mat);
            size_t nv = (size_t)f->cols * f->n_mat;
            e->sum = lmf_xmalloc(nv * sizeof(double));
            for (size_t k = 0; k < nv; k++) e->sum[k] = f->sums[k];
            memcpy(e->counts, f->counts, (size_t)f->n_mat * sizeof *e->counts);
        }
    }
    if (p->dataset && (!m->n_datasets || strcmp(m->datasets[m->n_datasets - 1], p->dataset)))
        add_dataset(m, p->dataset, strlen(p->dataset));
    /* a tied head is the token embedding, which llama-imatrix does not collect under its name either */
    collector a = {m, c, p, lmf_xmalloc((size_t)widest * sizeof(double)), p->process_output && !c->tied_embeddings,
                   NULL, r ? (long)r->chunk_count : 0};
    lmf_ppl_observer ob = {observe, &a, a.windows, a.head, after_window};
    lmf_ppl_result res;
    lmf_status st = lmf_perplexity_observed(w, text, len, p->ctx, p->max_chunks, 0, sink, &ob, &res);
    free(a.sq);
    if (st != LMF_OK) {
        lmf_imatrix_free(m);
        return st;
    }
    m->chunk_count = (uint32_t)a.windows;
    settle(m);
    for (int i = 0; i < m->n; i++) free(m->e[i].sum), m->e[i].sum = NULL;
    if (ppl) *ppl = res;
    *out = m;
    return LMF_OK;
}
