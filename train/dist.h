// dist.h: data parallelism: who this process is among the ranks of a run, and the exchanges
// the trainer makes between them.
//
// Launchers. The rank, world size and local rank come from the launcher's environment:
// OpenMPI's mpirun (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK), Slurm's srun (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID) or torchrun's convention (RANK, WORLD_SIZE, LOCAL_RANK); none
// of them is one rank. One rank needs nothing at run time: MPI is initialised only when the
// world is larger (pebble links OpenMPI where the build finds it, and calls it only then).
// `pebble train --nproc N` runs the N ranks on this machine under the mpirun it finds
// (dist_launch_nproc).
//
// The exchanges are written for exact results, not bandwidth: they move bytes point to point
// (MPI_Isend/Irecv) and add in a fixed order, never with MPI_Allreduce, whose summation order
// is the library's. Every wait polls with a sleep (ranks that share cores do not spin) and ends
// the run with one line after dist.timeout seconds without the peer.
//
// The gradient sum (dist_tree_*, dist_reduce): the step's micro-batch gradients g_0 .. g_{N-1}
// (N = world x A, rank r holding slots rA .. rA+A-1, data/loader.h) are added in the aligned
// binary tree S(lo, 2^s) = S(lo, 2^(s-1)) + S(lo + 2^(s-1), 2^(s-1)) (an empty right half
// skipped). A rank sums its block with a stack of partial sums (a binary counter); when A is a
// power of two its block is one subtree of that tree, and the ranks then add their blocks in
// the same tree (recursive doubling to rank 0). So the bits are those of one rank with N
// micro-batches, for any world size. (A not a power of two: deterministic for that world
// size only; the trainer says so.)
#ifndef PEBBLE_DIST_H
#define PEBBLE_DIST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pb_dist {
    int rank, world, local_rank;
    // Moves host bytes to (send) or from peer when MPI is not initialised: the NCCL path's
    // own transport for launches without MPI (train/dist_nccl.h); NULL: MPI.
    void (*xfer)(struct pb_dist *d, void *buf, size_t bytes, int peer, int send,
                 const char *what);
    void *xfer_ctx;
    char launcher[16];   // "none" | "openmpi" | "slurm" | "torchrun"
    int mpi;             // MPI is initialised (world > 1)
    double timeout_s;    // a wait for a peer longer than this ends the run (dist.timeout)
    const volatile sig_atomic_t *stop;  // the trainer's stop flag (a wait names it when set)
    int patient;         // 1 while the ranks wait for rank 0's checkpoint: the full timeout,
                         // even after a stop signal (a slow save is not a dead rank)
} pb_dist;

// From the environment; MPI_Init when the world is larger than one. 0, or -1 with one line
// in err (a launch that cannot work: srun without PMIx, torchrun on the CPU, no MPI built).
int dist_init(pb_dist *d, char *err, size_t errlen);
// The same for a run whose exchanges may go over NCCL (nccl = 1: the GPU path): a torchrun-
// style launch (RANK/WORLD_SIZE, no MPI) of several ranks is then accepted without MPI, and
// the caller sets d->xfer (dist_nccl_init) before the first exchange.
int dist_init_for(pb_dist *d, int nccl, char *err, size_t errlen);
// MPI_Finalize when it was initialised (every rank, before exiting).
void dist_finalize(pb_dist *d);
static inline int dist_lead(const pb_dist *d) { return d->rank == 0; }

// --- exchanges (no-ops with one rank). `what` names the exchange in a timeout's line.
// Rank 0's bytes to every rank.
void dist_bcast(pb_dist *d, void *buf, size_t bytes, const char *what);
// buf holds world blocks of elem-byte elements, rank r's block at [off[r], off[r+1]) (off:
// (world+1,)): allgather: every rank gets every block; gather: rank 0 does; scatter: rank 0's
// blocks go to their ranks.
void dist_allgather(pb_dist *d, void *buf, size_t elem, const size_t *off, const char *what);
void dist_gather(pb_dist *d, void *buf, size_t elem, const size_t *off, const char *what);
void dist_scatter(pb_dist *d, void *buf, size_t elem, const size_t *off, const char *what);
// The largest of the ranks' values (a stop signal any rank got), on every rank.
int dist_max(pb_dist *d, int v, const char *what);
// buf (n,) on rank 0 <- the sum of the ranks' buf in the aligned tree over ranks; scratch
// (n,) is clobbered. Other ranks' buf is left as it was.
void dist_reduce(pb_dist *d, float *buf, float *scratch, size_t n, const char *what);
// Compares text (lines) with rank 0's: 0 when every rank holds the same; otherwise -1 on every
// rank, and on rank 0 err names the first rank and line that differ.
int dist_same(pb_dist *d, const char *text, char *err, size_t errlen);
// The even split of n elements into world contiguous shards, off (world+1,), boundaries
// multiples of 16 elements (ZeRO-1).
void dist_shards(const pb_dist *d, size_t n, size_t *off);

// --- a rank's sum of its micro-batch gradients, in the aligned tree (host memory)
typedef struct dist_tree {
    size_t n;           // floats per gradient
    float *level[64];   // level[l]: the sum of the last 2^l leaves not yet paired, or NULL
    float *spare[64];   // buffers not in use
    int nspare, nbuf;   // nbuf: buffers allocated, at most log2(leaves) + 1
} dist_tree;
void dist_tree_init(dist_tree *t, size_t n);
void dist_tree_add(dist_tree *t, const float *g);  // the next leaf (copied)
// out <- the sum of the leaves added since the last call, folded from the lowest level up
// (the aligned tree also when their number is not a power of two); the tree is empty after.
void dist_tree_sum(dist_tree *t, float *out);
void dist_tree_free(dist_tree *t);

// --- the NCCL unique id through a file (launches without MPI): rank 0 writes bytes to
// <dir>/.pebble-rdzv-<token> (a temporary file linked into place: it never replaces a file
// there, so a stale one with this token is refused), the others wait for it (at most
// timeout_s), check its token and world size and read it. token names this launch (a stale
// file of an earlier launch has another name and is never read). 0, or -1 with one line.
int dist_rdzv_exchange(const char *dir, const char *token, int rank, int world, void *id,
                       size_t bytes, double timeout_s, char *err, size_t errlen);
// Rank 0, once every rank holds the id (after the communicator is built): removes the file.
void dist_rdzv_remove(const char *dir, const char *token);

// --- `pebble train --nproc N ...`: runs this program with the arguments argv (argc of them,
// "train" first, --nproc taken out) as N ranks under mpirun
// (the one on PATH), with the flags one machine needs (--oversubscribe, --bind-to none, as
// root --allow-run-as-root) and OMP_NUM_THREADS = cores / N unless set. Returns the exit
// status to exit with; a missing mpirun or a failed rank is one line.
int dist_launch_nproc(int nproc, int argc, char **argv);

#endif
