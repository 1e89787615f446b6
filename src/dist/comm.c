/* comm.c — picks a comm.h backend by name at run time. A new backend adds one row here (under its build flag). */
#include "dist/comm.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    lmf_status (*open)(lmf_comm **out);
} backend;

static const backend backends[] = {
    {"self", lmf_comm_self_open},
#ifdef LMF_HAVE_MPI
    {"mpi", lmf_comm_mpi_open},
#endif
};

int lmf_comm_have_mpi(void) {
#ifdef LMF_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

lmf_status lmf_comm_open(const char *name, lmf_comm **out) {
    *out = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (!strcmp(name, backends[i].name)) return backends[i].open(out);
    if (!strcmp(name, "mpi"))
        return lmf_fail(LMF_ERR_ARG, "comm: this lmforge was built without MPI, so backend 'mpi' is unavailable (this "
                        "build has: self); install libopenmpi-dev (scripts/install-deps.sh) and rebuild with "
                        "-DLMF_WITH_MPI=ON");
    return lmf_fail(LMF_ERR_ARG, "comm: unknown backend '%s' (this build has: self%s)", name,
                    lmf_comm_have_mpi() ? ", mpi" : "");
}

void lmf_comm_close(lmf_comm *c) {
    if (c) c->ops->close(c);
}

/* The launchers' variables, most specific first: Open MPI's mpirun, then PMI-2 / PMIx (MPICH's hydra, Slurm). */
int lmf_comm_launched_size(int *rank) {
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *s = getenv(sizes[i]);
        if (!s || atoi(s) <= 0) continue;
        const char *r = getenv(ranks[i]);
        if (rank) *rank = r ? atoi(r) : 0;
        return atoi(s);
    }
    if (rank) *rank = 0;
    return 0;
}

int lmf_comm_local_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *s = getenv(names[i]);
        if (s && atoi(s) > 0) return atoi(s);
    }
    return 1;
}
