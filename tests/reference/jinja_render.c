/* jinja_render.c — the harness of jinja_differential.py: renders templates with lmforge's interpreter.
 * Reads JSON lines {"t": template, "v": variables}; writes JSON lines {"ok": text} or {"err": message}.
 * Built by jinja_differential.py against build/liblmforge.a. */
#include "model/jinja.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *line = NULL; size_t cap = 0; ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        cJSON *c = cJSON_Parse(line);
        const char *t = cJSON_GetObjectItem(c, "t")->valuestring;
        lmf_jinja *j; lmf_text out = {0};
        lmf_status st = lmf_jinja_compile(t, strlen(t), &j);
        if (st == LMF_OK) { st = lmf_jinja_render(j, cJSON_GetObjectItem(c, "v"), 0, &out); lmf_jinja_free(j); }
        cJSON *r = cJSON_CreateObject();
        if (st == LMF_OK) cJSON_AddStringToObject(r, "ok", out.data ? out.data : "");
        else cJSON_AddStringToObject(r, "err", lmf_last_error());
        char *s = cJSON_PrintUnformatted(r); puts(s); fflush(stdout); free(s);
        cJSON_Delete(r); cJSON_Delete(c); free(out.data);
    }
    return 0;
}
