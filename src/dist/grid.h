/* grid.h — the ranks of a job arranged as dp x tp x pp (Megatron-LM's layout) with a sub-communicator per axis.
 *
 * World rank = (pp_rank x dp + dp_rank) x tp + tp_rank: tensor-parallel groups are neighbours (on one host when the
 * launcher fills hosts in rank order, since they talk every layer), then data parallel, then pipeline stages.
 * dp, tp and pp must multiply to the world size; dp 0 means world / (tp x pp). The dp communicator joins the ranks
 * that hold the same layers and tensor slice (they reduce gradients), tp those of one stage and replica, pp those of
 * one replica and tensor slice (they pass activations).
 *
 * Ownership: lmf_grid_open opens the world communicator of the named backend and closes it in lmf_grid_close after
 * the sub-communicators. */
#ifndef LMF_DIST_GRID_H
#define LMF_DIST_GRID_H

#include "dist/comm.h"

typedef struct {
    lmf_comm *world, *dp, *tp, *pp;
    int dp_size, tp_size, pp_size;
    int dp_rank, tp_rank, pp_rank;
} lmf_grid;

/* Coordinates of world rank `rank` in a dp x tp x pp grid. */
void lmf_grid_coords(int rank, int dp, int tp, int pp, int *dp_rank, int *tp_rank, int *pp_rank);
/* Checks dp x tp x pp against the world size (dp 0: derived); errors name the flags and the sizes. */
lmf_status lmf_grid_check(int world, int *dp, int tp, int pp);
/* backend: "self", "mpi", or "auto" (mpi when an MPI launcher started this process among several, else self;
 * an error when it did so and this build has no MPI). */
lmf_status lmf_grid_open(const char *backend, int dp, int tp, int pp, lmf_grid **out);
void lmf_grid_close(lmf_grid *g); /* NULL is fine */

#endif
