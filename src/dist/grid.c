/* grid.c — see grid.h. */
#include "dist/grid.h"
#include "core/alloc.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

void lmf_grid_coords(int rank, int dp, int tp, int pp, int *dp_rank, int *tp_rank, int *pp_rank) {
    *tp_rank = rank % tp;
    *dp_rank = rank / tp % dp;
    *pp_rank = rank / (tp * dp);
    (void)pp;
}

lmf_status lmf_grid_check(int world, int *dp, int tp, int pp) {
    if (*dp < 0 || tp < 1 || pp < 1)
        return lmf_fail(LMF_ERR_ARG, "--dp %d --tp %d --pp %d: sizes must be at least 1 (dp 0: the world size / "
                        "(tp x pp))", *dp, tp, pp);
    if (*dp == 0) {
        if (world % (tp * pp))
            return lmf_fail(LMF_ERR_ARG, "--tp %d x --pp %d = %d does not divide the %d ranks of the job", tp, pp,
                            tp * pp, world);
        *dp = world / (tp * pp);
    }
    if ((long)*dp * tp * pp != world)
        return lmf_fail(LMF_ERR_ARG, "--dp %d x --tp %d x --pp %d = %ld ranks, but the job has %d (launch with "
                        "mpirun -np %ld, or change the sizes)", *dp, tp, pp, (long)*dp * tp * pp, world,
                        (long)*dp * tp * pp);
    return LMF_OK;
}

void lmf_grid_close(lmf_grid *g) {
    if (!g) return;
    lmf_comm_close(g->dp), lmf_comm_close(g->tp), lmf_comm_close(g->pp);
    lmf_comm_close(g->world);
    free(g);
}

lmf_status lmf_grid_open(const char *backend, int dp, int tp, int pp, lmf_grid **out) {
    *out = NULL;
    int lrank, launched = lmf_comm_launched_size(&lrank);
    if (!strcmp(backend, "auto")) {
        if (launched > 1 && !lmf_comm_have_mpi())
            return lmf_fail(LMF_ERR_ARG, "launched by an MPI launcher as rank %d of %d, but this lmforge was built "
                            "without MPI: every rank would train alone; install libopenmpi-dev "
                            "(scripts/install-deps.sh) and rebuild, or run a single process", lrank, launched);
        backend = launched > 1 ? "mpi" : "self";
    }
    if (!strcmp(backend, "self") && launched > 1)
        return lmf_fail(LMF_ERR_ARG, "--comm self, but an MPI launcher started this process as rank %d of %d: every "
                        "rank would train alone (use --comm mpi, or run a single process)", lrank, launched);
    lmf_comm *world;
    LMF_TRY(lmf_comm_open(backend, &world));
    lmf_grid *g = lmf_xcalloc(1, sizeof *g);
    g->world = world;
    lmf_status s = lmf_grid_check(world->size, &dp, tp, pp);
    if (s != LMF_OK) {
        lmf_grid_close(g);
        return s;
    }
    g->dp_size = dp, g->tp_size = tp, g->pp_size = pp;
    lmf_grid_coords(world->rank, dp, tp, pp, &g->dp_rank, &g->tp_rank, &g->pp_rank);
    /* one split per axis: the color is the rank's coordinates on the other two axes, the key its rank on this one */
    if ((s = lmf_comm_split(world, g->pp_rank * tp + g->tp_rank, g->dp_rank, &g->dp)) == LMF_OK &&
        (s = lmf_comm_split(world, g->pp_rank * dp + g->dp_rank, g->tp_rank, &g->tp)) == LMF_OK)
        s = lmf_comm_split(world, g->dp_rank * tp + g->tp_rank, g->pp_rank, &g->pp);
    if (s != LMF_OK) {
        lmf_grid_close(g);
        return s;
    }
    *out = g;
    return LMF_OK;
}
