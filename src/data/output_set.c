/* output_set.c — a run's outputs committed as one set by swapping folders (see output_set.h). */
#include "data/output_set.h"

#include "core/alloc.h"
#include "core/fs.h"
#include "core/status.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a run writes: the only names an existing output folder may hold (plus "NAME.tmp" leftovers). */
static const char *const OUTPUTS[] = {"kept.jsonl", "kept.jsonl.zst", "removed.jsonl", "report.json", "train.bin",
                                      "val.bin", NULL};

static int is_output_name(const char *name) {
    for (int i = 0; OUTPUTS[i]; i++) {
        size_t n = strlen(OUTPUTS[i]);
        if (!strncmp(name, OUTPUTS[i], n) && (!name[n] || !strcmp(name + n, ".tmp"))) return 1;
    }
    return 0;
}

static char *join(const char *a, const char *b) {
    char *p = lmf_xmalloc(strlen(a) + strlen(b) + 2);
    sprintf(p, "%s/%s", a, b);
    return p;
}

/* Removes a folder of plain files (what a run writes: no subfolders); best effort. */
static void remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

static void fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

static void fault(const char *point) {
    const char *f = getenv("LMF_DATA_FAULT");
    if (f && !strcmp(f, point)) raise(SIGKILL);
}

/* parent and base name of dir (resolved through symbolic links when it exists, so the real folder is swapped) */
static lmf_status split_dir(const char *dir, char **parent, char **base) {
    char *real = realpath(dir, NULL), *p = real ? real : strdup(dir);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *slash = strrchr(p, '/');
    const char *b = slash ? slash + 1 : p;
    if (!*b || !strcmp(b, ".") || !strcmp(b, "..")) {
        free(p);
        return lmf_fail(LMF_ERR_ARG, "output.dir '%s': name the output folder itself (a run replaces it as a whole)",
                        dir);
    }
    *base = strdup(b);
    if (!slash) *parent = strdup(".");
    else if (slash == p) *parent = strdup("/");
    else *slash = 0, *parent = strdup(p);
    free(p);
    return LMF_OK;
}

/* Removes ".BASE.lmf-new-PID-*" (and, when the output folder exists, ".BASE.lmf-old-PID-*") of dead processes. */
static void remove_stale(const char *parent, const char *base, int dir_exists) {
    DIR *d = opendir(parent);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, bl) || strncmp(n + 1 + bl, ".lmf-", 5)) continue;
        const char *kind = n + 1 + bl + 5;
        int is_new = !strncmp(kind, "new-", 4), is_old = !strncmp(kind, "old-", 4);
        if (!is_new && !(is_old && dir_exists)) continue;
        char *end;
        long pid = strtol(kind + 4, &end, 10);
        if (end == kind + 4 || *end != '-' || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* its run is alive (or not ours to judge) */
        char *p = join(parent, n);
        remove_flat(p);
        free(p);
    }
    closedir(d);
}

lmf_status lmf_output_set_begin(lmf_output_set *o, const char *dir) {
    memset(o, 0, sizeof *o);
    char *parent = NULL, *base = NULL;
    LMF_TRY(split_dir(dir, &parent, &base));
    lmf_status s = lmf_mkdir_p(parent);
    struct stat st;
    int exists = s == LMF_OK && stat(dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode)) s = lmf_fail(LMF_ERR_ARG, "output.dir '%s' exists and is not a folder", dir);
    if (s == LMF_OK && exists) {
        DIR *d = opendir(dir);
        if (!d) {
            s = lmf_fail(LMF_ERR_IO, "output.dir '%s': cannot open: %s", dir, strerror(errno));
        } else {
            char foreign[512] = "";
            int n_foreign = 0;
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || is_output_name(e->d_name)) continue;
                if (n_foreign++ < 3)
                    snprintf(foreign + strlen(foreign), sizeof foreign - strlen(foreign), "%s%s",
                             n_foreign > 1 ? ", " : "", e->d_name);
            }
            closedir(d);
            if (n_foreign)
                s = lmf_fail(LMF_ERR_ARG, "output.dir '%s' holds %d file(s) a run does not write (%s%s): a run "
                             "replaces the folder as a whole, so give a new or empty folder, or one of an earlier run",
                             dir, n_foreign, foreign, n_foreign > 3 ? ", ..." : "");
        }
    }
    if (s == LMF_OK) {
        remove_stale(parent, base, exists);
        char *t = lmf_xmalloc(strlen(parent) + strlen(base) + 64);
        sprintf(t, "%s/.%s.lmf-new-%ld-XXXXXX", parent, base, (long)getpid());
        if (!mkdtemp(t)) {
            s = lmf_fail(LMF_ERR_IO, "%s: cannot create the staging folder: %s", t, strerror(errno));
            free(t);
        } else {
            chmod(t, 0755); /* mkdtemp's 0700 would become the output folder's mode */
            o->staging = t;
            o->dir = strdup(dir);
        }
    }
    free(parent);
    free(base);
    return s;
}

lmf_status lmf_output_set_commit(lmf_output_set *o) {
    LMF_CHECK(o->staging);
    /* durable before visible: every file's data, then the folder's entries */
    DIR *d = opendir(o->staging);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = join(o->staging, e->d_name);
        fsync_path(p, O_RDONLY);
        free(p);
    }
    if (d) closedir(d);
    fsync_path(o->staging, O_RDONLY | O_DIRECTORY);
    fault("commit_before");
    char *parent = NULL, *base = NULL;
    lmf_status s = split_dir(o->dir, &parent, &base);
    char *target = s == LMF_OK ? join(parent, base) : NULL;
    struct stat st;
    int exists = target && stat(target, &st) == 0;
    char *old = NULL;
    if (s != LMF_OK) {
        /* split_dir said why */
    } else if (!exists) {
        if (rename(o->staging, target) != 0)
            s = lmf_fail(LMF_ERR_IO, "%s: cannot rename to %s: %s", o->staging, target, strerror(errno));
    } else if (renameat2(AT_FDCWD, o->staging, AT_FDCWD, target, RENAME_EXCHANGE) == 0) {
        old = o->staging, o->staging = NULL; /* the previous set now sits under the staging name */
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
        /* no atomic exchange here: two renames, and a window in which the output folder is missing */
        old = lmf_xmalloc(strlen(parent) + strlen(base) + 64);
        sprintf(old, "%s/.%s.lmf-old-%ld-XXXXXX", parent, base, (long)getpid());
        if (!mkdtemp(old) || rename(target, old) != 0) {
            s = lmf_fail(LMF_ERR_IO, "%s: cannot move the previous outputs aside: %s", target, strerror(errno));
            rmdir(old);
            free(old), old = NULL;
        } else if (rename(o->staging, target) != 0) {
            s = lmf_fail(LMF_ERR_IO, "%s: cannot rename to %s: %s", o->staging, target, strerror(errno));
            if (rename(old, target) == 0) free(old), old = NULL; /* put the previous set back */
        }
    } else {
        s = lmf_fail(LMF_ERR_IO, "%s: cannot exchange with %s: %s", o->staging, target, strerror(errno));
    }
    if (s == LMF_OK) {
        fsync_path(parent, O_RDONLY | O_DIRECTORY);
        fault("commit_after");
        free(o->staging), o->staging = NULL;
        if (old) remove_flat(old);
    }
    free(old);
    free(target);
    free(parent);
    free(base);
    if (s != LMF_OK) lmf_output_set_abort(o);
    free(o->dir), o->dir = NULL;
    return s;
}

void lmf_output_set_abort(lmf_output_set *o) {
    if (o->staging) remove_flat(o->staging);
    free(o->staging);
    free(o->dir);
    o->staging = o->dir = NULL;
}
