/* comm.c — picks a comm.h backend by name at run time. A new backend adds one row here (under its build flag). */
#include "dist/comm.h"
#include "core/status.h"

#include <string.h>

typedef struct {
    const char *name;
    lmf_status (*open)(lmf_comm **out);
} backend;

static const backend backends[] = {
    {"self", lmf_comm_self_open},
    /* {"mpi", lmf_comm_mpi_open},  with comm_mpi.c, under #ifdef LMF_HAVE_MPI */
};

lmf_status lmf_comm_open(const char *name, lmf_comm **out) {
    *out = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (!strcmp(name, backends[i].name)) return backends[i].open(out);
    return lmf_fail(LMF_ERR_ARG, "comm: unknown or unavailable backend '%s' (this build has: self)", name);
}

void lmf_comm_close(lmf_comm *c) {
    if (c) c->ops->close(c);
}
