// dist_nccl.h: data parallelism on the GPU over NCCL (dist.reduce = nccl; auto picks it on the
// GPU when the world is larger than one). One rank per GPU: rank r uses GPU local_rank.
//
// Loading. NCCL is opened at run time (dlopen of PEBBLE_NCCL_LIB, default libnccl.so.2) and
// called through pointers; nccl.h gives the types only. So build/pebble needs no libnccl to
// start, and a single-GPU or CPU run never loads it.
//
// Rendezvous. The communicator's unique id goes from rank 0 to the others over MPI when
// mpirun or srun started the ranks (dist_bcast), or through the id file in run.dir
// (dist_rdzv_exchange) for torchrun-style launches (RANK/WORLD_SIZE, no MPI); its token is
// PEBBLE_RDZV_TOKEN, else torchrun-<TORCHELASTIC_RUN_ID>-<MASTER_PORT>. Without MPI the
// trainer's host exchanges (losses, stop checks, validation, config check) go over NCCL too
// (ncclSend/ncclRecv through a device staging buffer: pb_dist.xfer).
//
// Streams. The model's ops run on the legacy default stream (the compute stream); NCCL runs
// on a second stream created non-blocking, so that the two never synchronise implicitly. On
// the last micro-batch of a step (dist_nccl_arm), the backward calls a hook after each block
// has queued the ops writing its weight gradients: an event is recorded on the compute
// stream, the comm stream waits for it, and that block's contiguous gradient range is
// reduced there while the compute stream goes on with the block below. The tensors outside
// the blocks (embeddings, final LayerNorm, heads) follow when the backward returns
// (dist_nccl_grads), and the host waits for the comm stream, bounded (below), before the norm.
//
// The sum: ncclSum, not ncclAvg: the trainer's backward already scales each micro-batch's
// loss by 1/(world x micro-batches per rank), so the sum is the mean, and at world 1 the
// all-reduce is the identity: the single-GPU run's bits. Over several ranks the result is
// NCCL's order of addition: the same bits on every rank, and run after run for one world size,
// GPU topology, NCCL version and NCCL_* settings (NCCL_ALGO, NCCL_PROTO ... pass through as
// set); not the same bits for another world size.
//
// ZeRO-1 (dist.zero = 1): the shards are dist_shards' (those of the CPU path: contiguous,
// boundaries multiples of 16 elements, uneven in the last). Each block's range is reduced
// only to the ranks whose shards it overlaps (grouped ncclReduce to each owner: the reduce-
// scatter of uneven shards, in place, so the store's layout and the model's pointers stay);
// the norm is the shards' sums of squares all-reduced (double); AdamW updates the shard with
// shard-sized moments (allocated so: the rest of the full moments is freed); the updated fp32
// weights are then gathered (grouped ncclBroadcast from each owner), and the bf16 copy the
// ops read is rounded from them at the next forward as on one GPU. A checkpoint gathers the
// moments on rank 0 (ncclSend/ncclRecv into full buffers there, freed after): it holds the
// full state, resumable on any number of ranks.
//
// Failures. The communicator is non-blocking (ncclConfig_t.blocking = 0); every wait polls
// cudaEventQuery and ncclCommGetAsyncError with a sleep, and after dist.timeout seconds (10 s
// after a stop signal, except during rank 0's checkpoint) it aborts the communicator and
// ends the run with one line naming what did not finish. Every NCCL and CUDA call is checked.
#ifndef PEBBLE_DIST_NCCL_H
#define PEBBLE_DIST_NCCL_H

#include <stddef.h>
#include <stdio.h>

#include "train/dist.h"
#include "train/model.h"
#include "train/optim.h"

typedef struct dist_nccl dist_nccl;

// 1 when this pebble was built with the NCCL path (nccl.h and the CUDA runtime found).
int dist_nccl_built(void);
// Opens libnccl (PEBBLE_NCCL_LIB or libnccl.so.2) and finds the calls it uses. 0, or -1 with
// one line in err naming the library and what failed. Once per process.
int dist_nccl_load(char *err, size_t errlen);
// The communicator of d's world on GPU d->local_rank, its stream and events (d->timeout_s
// bounds the rendezvous); rdzv_dir: where the id file goes without MPI (run.dir). Sets
// d->xfer when the world has no MPI. NULL with one line in err.
dist_nccl *dist_nccl_init(pb_dist *d, const char *rdzv_dir, char *err, size_t errlen);
// One line on what runs ("NCCL 2.28.9, 2 ranks, GPU 0, ..."), for the banner.
void dist_nccl_describe(const dist_nccl *n, char *buf, size_t cap);
// Ties it to the model's parameter store (after any resume loaded the moments): the blocks'
// gradient ranges and the backward's hook; with zero, this rank's shard of the moments is
// kept and the rest freed (a line on note says how much memory that saves).
void dist_nccl_attach(dist_nccl *n, pb_model *m, int zero, FILE *note);
// The next backward starts the exchange (the last micro-batch of a step) or not.
void dist_nccl_arm(dist_nccl *n, int on);
// After that backward: the rest of the gradient reduced, then waits for all of it.
void dist_nccl_grads(dist_nccl *n);
// The global gradient norm before clipping, and the clip (optim_clip_grad_norm's; under ZeRO
// on this rank's shard, with the shards' sums of squares added).
float dist_nccl_clip(dist_nccl *n, float clip);
// AdamW at lr (under ZeRO: on the shard, then the weights gathered).
void dist_nccl_adamw(dist_nccl *n, pb_adamw *o, float lr);
// Under ZeRO, around a checkpoint (every rank calls both): the full moments in ps->m, ps->v
// on rank 0, then freed again.
void dist_nccl_moments_full(dist_nccl *n);
void dist_nccl_moments_release(dist_nccl *n);
// The communicator destroyed, the buffers freed, d->xfer cleared. NULL: nothing.
void dist_nccl_free(dist_nccl *n);

#endif
