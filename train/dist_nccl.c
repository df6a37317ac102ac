// dist_nccl.c: the GPU's data-parallel path over NCCL (see dist_nccl.h).
#include "train/dist_nccl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"

#ifndef PB_HAVE_NCCL
// ----------------------------------------------------------------------------
// built without nccl.h or the CUDA runtime: the path refuses with one line

int dist_nccl_built(void) { return 0; }

int dist_nccl_load(char *err, size_t errlen) {
    pb_seterr(err, errlen, "dist.reduce = nccl: this pebble was built without NCCL (no nvcc, or "
              "no nccl.h on the include path when it was built)");
    return -1;
}

dist_nccl *dist_nccl_init(pb_dist *d, const char *rdzv_dir, char *err, size_t errlen) {
    (void)d, (void)rdzv_dir;
    dist_nccl_load(err, errlen);
    return NULL;
}

// Unreachable: no dist_nccl exists without the path.
void dist_nccl_describe(const dist_nccl *n, char *buf, size_t cap) { PB_ASSERT(!n && buf && cap); }
void dist_nccl_attach(dist_nccl *n, pb_model *m, int zero, FILE *note) { PB_ASSERT(0 && n && m && zero >= 0 && note); }
void dist_nccl_arm(dist_nccl *n, int on) { PB_ASSERT(0 && n && on >= 0); }
void dist_nccl_grads(dist_nccl *n) { PB_ASSERT(0 && n); }
float dist_nccl_clip(dist_nccl *n, float clip) { PB_ASSERT(0 && n && clip >= 0); return 0; }
void dist_nccl_adamw(dist_nccl *n, pb_adamw *o, float lr) { PB_ASSERT(0 && n && o && lr >= 0); }
void dist_nccl_moments_full(dist_nccl *n) { PB_ASSERT(0 && n); }
void dist_nccl_moments_release(dist_nccl *n) { PB_ASSERT(0 && n); }
void dist_nccl_free(dist_nccl *n) { PB_ASSERT(!n); }

#else
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>
#include <time.h>

// ----------------------------------------------------------------------------
// the library, opened at run time

// The calls used, declared through nccl.h's own prototypes (so a mismatch cannot compile).
#define NCCL_CALLS(X)                                                                      \
    X(ncclGetVersion) X(ncclGetUniqueId) X(ncclCommInitRankConfig) X(ncclCommGetAsyncError) \
    X(ncclCommAbort) X(ncclCommFinalize) X(ncclCommDestroy) X(ncclGetErrorString)           \
    X(ncclAllReduce) X(ncclReduce) X(ncclBroadcast) X(ncclSend) X(ncclRecv)                 \
    X(ncclGroupStart) X(ncclGroupEnd)

static struct {
#define NCCL_DECL(f) __typeof__(f) *f;
    NCCL_CALLS(NCCL_DECL)
#undef NCCL_DECL
    void *lib;
    char name[256];
} nc;

int dist_nccl_built(void) { return 1; }

int dist_nccl_load(char *err, size_t errlen) {
    if (nc.lib) return 0;
    const char *name = getenv("PEBBLE_NCCL_LIB");
    if (!name || !*name) name = "libnccl.so.2";
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        pb_seterr(err, errlen, "cannot load NCCL (%s): %s; the GPU data-parallel path needs "
                  "libnccl.so.2 on LD_LIBRARY_PATH, or PEBBLE_NCCL_LIB set to its path", name,
                  dlerror());
        return -1;
    }
    const char *missing = NULL;
#define NCCL_FIND(f) \
    if (!missing && !(nc.f = (__typeof__(f) *)dlsym(lib, #f))) missing = #f;
    NCCL_CALLS(NCCL_FIND)
#undef NCCL_FIND
    if (missing) {
        pb_seterr(err, errlen, "%s is not a usable NCCL: it has no %s (NCCL 2.14 or later is "
                  "needed)", name, missing);
        dlclose(lib);
        memset(&nc, 0, sizeof nc);
        return -1;
    }
    nc.lib = lib;
    snprintf(nc.name, sizeof nc.name, "%s", name);
    return 0;
}

// ----------------------------------------------------------------------------
// the state, and checked calls

#define STAGE_BYTES ((size_t)4 << 20)  // the host exchanges' device buffer

struct dist_nccl {
    pb_dist *d;
    ncclComm_t comm;
    cudaStream_t stream;        // the comm stream (non-blocking)
    cudaEvent_t mark, done;     // compute stream -> comm stream; the comm stream's end
    cudaEvent_t *layer_ev;      // [L] block l's gradients queued on the compute stream
    int version;
    // the store and its ranges
    pb_params *ps;
    int L, armed;
    size_t *span_lo, *span_hi;  // [L] the blocks' gradient ranges
    unsigned char *sent;        // [L] this step's exchange of block l is queued
    int nrest;
    size_t *rest_lo, *rest_hi;  // [L + 1] the ranges outside the blocks
    // ZeRO-1
    int zero;
    size_t *off;                // (world + 1,) dist_shards
    float *m, *v;               // this rank's shard of the moments
    void *stage;                // STAGE_BYTES of device memory
};

#define CU(call)                                                                           \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess)                                                             \
            pb_die(PB_EXIT_RUNTIME, "%s:%d: %s: %s", __FILE__, __LINE__, #call,            \
                   cudaGetErrorString(e_));                                                \
    } while (0)

// Ends the run from a rank: the line, the communicator aborted (its kernels stop), exit.
static void __attribute__((noreturn, format(printf, 2, 3))) fail(dist_nccl *n, const char *fmt,
                                                                  ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "pebble: rank %d: %s\n", n->d->rank, msg);
    fflush(stderr);
    if (n->comm) nc.ncclCommAbort(n->comm);
    n->comm = NULL;
    exit(PB_EXIT_RUNTIME);
}

// How long a wait may last: dist.timeout, or 10 s once a stop signal was seen (a peer that
// stopped comes at once), except while the ranks wait for rank 0's checkpoint.
static double wait_limit(const dist_nccl *n, double t0, double *stop_seen) {
    const pb_dist *d = n->d;
    double now = pb_now();
    if (d->stop && *d->stop && !*stop_seen) *stop_seen = now;
    if (*stop_seen && !d->patient && *stop_seen + 10 - t0 < d->timeout_s)
        return *stop_seen + 10 - t0;
    return d->timeout_s;
}

static void nap(long polls) {
    if (polls < 64) return;  // a short spin first: most waits end within microseconds
    struct timespec ts = {0, polls > 4096 ? 1000000 : 50000};
    nanosleep(&ts, NULL);
}

// rc of an NCCL call on the (non-blocking) communicator: success, or in progress until the
// communicator says otherwise; anything else, or no end within the limit, ends the run.
static void settle(dist_nccl *n, ncclResult_t rc, const char *call, const char *what) {
    double t0 = pb_now(), stop_seen = 0;
    for (long polls = 0; rc == ncclInProgress; polls++) {
        if (pb_now() - t0 > wait_limit(n, t0, &stop_seen))
            fail(n, "NCCL %s did not complete within %.0f s during %s: a rank died or hangs; "
                 "aborting NCCL", call, pb_now() - t0, what);
        nap(polls);
        ncclResult_t st = ncclSuccess;
        ncclResult_t q = nc.ncclCommGetAsyncError(n->comm, &st);
        rc = q != ncclSuccess ? q : st;
    }
    if (rc != ncclSuccess)
        fail(n, "NCCL %s failed during %s: %s", call, what, nc.ncclGetErrorString(rc));
}
#define NC(call, what) settle(n, nc.call, #call, what)

// Waits, bounded, for the comm stream's work queued so far.
static void wait_stream(dist_nccl *n, const char *what) {
    CU(cudaEventRecord(n->done, n->stream));
    double t0 = pb_now(), stop_seen = 0;
    for (long polls = 0;; polls++) {
        cudaError_t q = cudaEventQuery(n->done);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady)
            fail(n, "CUDA failed while waiting for %s: %s", what, cudaGetErrorString(q));
        ncclResult_t st = ncclSuccess;
        if (nc.ncclCommGetAsyncError(n->comm, &st) != ncclSuccess ||
            (st != ncclSuccess && st != ncclInProgress))
            fail(n, "NCCL failed during %s: %s (has a rank died?)", what,
                 nc.ncclGetErrorString(st));
        double limit = wait_limit(n, t0, &stop_seen);
        if (pb_now() - t0 > limit)
            fail(n, "%s did not finish within %.0f s (%s): a rank died or hangs; aborting NCCL",
                 what, pb_now() - t0, stop_seen ? "after a stop signal" : "dist.timeout");
        nap(polls);
    }
}

// The comm stream waits for what the compute stream (the legacy default stream) queued.
static void after_compute(dist_nccl *n, cudaEvent_t ev) {
    CU(cudaEventRecord(ev, 0));
    CU(cudaStreamWaitEvent(n->stream, ev, 0));
}

// ----------------------------------------------------------------------------
// the host exchanges without MPI: pb_dist's transport over NCCL

static void host_xfer(pb_dist *d, void *buf, size_t bytes, int peer, int send,
                      const char *what) {
    dist_nccl *n = d->xfer_ctx;
    for (char *p = buf; bytes > 0;) {
        size_t k = bytes < STAGE_BYTES ? bytes : STAGE_BYTES;
        if (send) {
            CU(cudaMemcpyAsync(n->stage, p, k, cudaMemcpyHostToDevice, n->stream));
            NC(ncclSend(n->stage, k, ncclUint8, peer, n->comm, n->stream), what);
            wait_stream(n, what);
        } else {
            NC(ncclRecv(n->stage, k, ncclUint8, peer, n->comm, n->stream), what);
            wait_stream(n, what);  // done: the copy below cannot hang
            CU(cudaMemcpyAsync(p, n->stage, k, cudaMemcpyDeviceToHost, n->stream));
            CU(cudaStreamSynchronize(n->stream));
        }
        p += k, bytes -= k;
    }
}

// ----------------------------------------------------------------------------
// the communicator

// The id file's token for a torchrun-style launch: [A-Za-z0-9._-] only, at most 63 bytes.
static void rdzv_token(char *out, size_t cap) {
    const char *t = getenv("PEBBLE_RDZV_TOKEN");
    char raw[256];
    if (t && *t) {
        snprintf(raw, sizeof raw, "%s", t);
    } else {
        const char *id = getenv("TORCHELASTIC_RUN_ID"), *port = getenv("MASTER_PORT");
        snprintf(raw, sizeof raw, "torchrun-%s-%s", id && *id ? id : "none",
                 port && *port ? port : "0");
    }
    size_t i = 0;
    for (; raw[i] && i + 1 < cap && i < 63; i++) {
        char c = raw[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
}

dist_nccl *dist_nccl_init(pb_dist *d, const char *rdzv_dir, char *err, size_t errlen) {
    if (dist_nccl_load(err, errlen) != 0) return NULL;
    cudaError_t ce = cudaSetDevice(d->local_rank);
    if (ce != cudaSuccess) {
        pb_seterr(err, errlen, "rank %d: cannot use GPU %d (its local rank): %s", d->rank,
                  d->local_rank, cudaGetErrorString(ce));
        return NULL;
    }
    dist_nccl *n = pb_calloc(1, sizeof *n);
    n->d = d;
    nc.ncclGetVersion(&n->version);
    // The id: rank 0 makes it; MPI carries it when there is MPI, else the file.
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (d->rank == 0) {
        ncclResult_t rc = nc.ncclGetUniqueId(&id);
        if (rc != ncclSuccess) {
            pb_seterr(err, errlen, "NCCL ncclGetUniqueId failed: %s", nc.ncclGetErrorString(rc));
            free(n);
            return NULL;
        }
    }
    char token[64] = "";
    int by_file = !d->mpi && strcmp(d->launcher, "torchrun") == 0;
    if (d->mpi) {
        dist_bcast(d, &id, sizeof id, "the NCCL id's broadcast");
    } else if (by_file) {
        rdzv_token(token, sizeof token);
        if (dist_rdzv_exchange(rdzv_dir, token, d->rank, d->world, &id, sizeof id, d->timeout_s,
                               err, errlen) != 0) {
            free(n);
            return NULL;
        }
    } else if (d->world > 1) {
        pb_seterr(err, errlen, "rank %d of %d: no way to pass the NCCL id (no MPI, not a "
                  "torchrun-style launch)", d->rank, d->world);
        free(n);
        return NULL;
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;  // every call returns; the waits are ours, bounded (dist_nccl.h)
    NC(ncclCommInitRankConfig(&n->comm, d->world, id, d->rank, &cfg),
       "the NCCL communicator's creation");
    // Every rank has read the id once the communicator exists.
    if (by_file && d->rank == 0) dist_rdzv_remove(rdzv_dir, token);
    CU(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    CU(cudaEventCreateWithFlags(&n->mark, cudaEventDisableTiming));
    CU(cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming));
    CU(cudaMalloc(&n->stage, STAGE_BYTES));
    if (!d->mpi && d->world > 1) {
        d->xfer = host_xfer;
        d->xfer_ctx = n;
    }
    return n;
}

void dist_nccl_describe(const dist_nccl *n, char *buf, size_t cap) {
    int v = n->version;
    snprintf(buf, cap, "NCCL %d.%d.%d (%s), %d rank%s, GPU %d", v / 10000, v / 100 % 100,
             v % 100, nc.name, n->d->world, n->d->world > 1 ? "s" : "", n->d->local_rank);
}

// ----------------------------------------------------------------------------
// the gradient exchange

// grad[a, b) summed over the ranks, on the comm stream: on every rank (ZeRO-0), or on the
// owner of each shard it overlaps (ZeRO-1).
static void reduce_range(dist_nccl *n, size_t a, size_t b) {
    float *g = n->ps->grad;
    const char *what = "the gradient exchange";
    if (b <= a) return;
    if (!n->zero) {
        NC(ncclAllReduce(g + a, g + a, b - a, ncclFloat, ncclSum, n->comm, n->stream), what);
        return;
    }
    NC(ncclGroupStart(), what);
    for (int r = 0; r < n->d->world; r++) {
        size_t x = a > n->off[r] ? a : n->off[r], y = b < n->off[r + 1] ? b : n->off[r + 1];
        if (x < y)
            NC(ncclReduce(g + x, g + x, y - x, ncclFloat, ncclSum, r, n->comm, n->stream), what);
    }
    NC(ncclGroupEnd(), what);
}

// The backward's hook (model_set_layer_hook).
static void on_layer(void *ctx, int l) {
    dist_nccl *n = ctx;
    if (!n->armed) return;
    PB_ASSERT(l >= 0 && l < n->L && !n->sent[l]);
    after_compute(n, n->layer_ev[l]);
    reduce_range(n, n->span_lo[l], n->span_hi[l]);
    n->sent[l] = 1;
}

void dist_nccl_attach(dist_nccl *n, pb_model *m, int zero, FILE *note) {
    pb_params *ps = m->p;
    n->ps = ps;
    int L = model_num_layers(m);
    n->span_lo = pb_calloc((size_t)L + 1, sizeof *n->span_lo);
    n->span_hi = pb_calloc((size_t)L + 1, sizeof *n->span_hi);
    n->rest_lo = pb_calloc((size_t)L + 1, sizeof *n->rest_lo);
    n->rest_hi = pb_calloc((size_t)L + 1, sizeof *n->rest_hi);
    n->sent = pb_calloc((size_t)L + 1, 1);
    n->L = model_layer_spans(m, n->span_lo, n->span_hi);
    if (n->L == 0 && L > 0 && note)
        fprintf(note, "note: the blocks' gradients are not contiguous in the store: they are "
                "exchanged after the backward, without overlap\n");
    n->layer_ev = pb_calloc((size_t)n->L + 1, sizeof *n->layer_ev);
    for (int l = 0; l < n->L; l++)
        CU(cudaEventCreateWithFlags(&n->layer_ev[l], cudaEventDisableTiming));
    // The rest: the gaps between the blocks' ranges (sorted by position), and after them.
    int *order = pb_calloc((size_t)n->L + 1, sizeof *order);
    for (int l = 0; l < n->L; l++) {
        int k = l;
        while (k > 0 && n->span_lo[order[k - 1]] > n->span_lo[l]) order[k] = order[k - 1], k--;
        order[k] = l;
    }
    size_t at = 0;
    for (int i = 0; i < n->L; i++) {
        size_t lo = n->span_lo[order[i]], hi = n->span_hi[order[i]];
        PB_ASSERT(lo >= at);  // one table: the blocks do not overlap
        if (lo > at) n->rest_lo[n->nrest] = at, n->rest_hi[n->nrest++] = lo;
        at = hi;
    }
    if (at < ps->num_floats) n->rest_lo[n->nrest] = at, n->rest_hi[n->nrest++] = ps->num_floats;
    free(order);
    if (n->L) model_set_layer_hook(m, on_layer, n);
    n->zero = zero;
    if (!zero) return;
    // ZeRO-1: this rank's shard of the moments; the full ones (a resume loaded them) freed.
    const pb_ops *ops = ps->ops;
    n->off = pb_malloc(((size_t)n->d->world + 1) * sizeof *n->off);
    dist_shards(n->d, ps->num_floats, n->off);
    size_t lo = n->off[n->d->rank], hi = n->off[n->d->rank + 1], cnt = hi - lo;
    size_t alloc = cnt > 16 ? cnt : 16;
    n->m = ops->alloc(alloc * sizeof(float));
    n->v = ops->alloc(alloc * sizeof(float));
    PB_ASSERT(ps->m && ps->v);  // adamw_init allocated them
    if (cnt) {
        CU(cudaMemcpy(n->m, ps->m + lo, cnt * sizeof(float), cudaMemcpyDeviceToDevice));
        CU(cudaMemcpy(n->v, ps->v + lo, cnt * sizeof(float), cudaMemcpyDeviceToDevice));
    }
    ops->free(ps->m);
    ops->free(ps->v);
    ps->m = ps->v = NULL;
    if (note) {
        double full = 2.0 * ps->num_floats * sizeof(float) / 1048576.0;
        double mine = 2.0 * cnt * sizeof(float) / 1048576.0;
        fprintf(note, "dist: ZeRO-1: AdamW moments %.1f MiB -> %.1f MiB on this GPU (%.1f MiB "
                "less; rank %d's shard: elements %zu .. %zu of %zu)\n", full, mine, full - mine,
                n->d->rank, lo, hi, ps->num_floats);
    }
}

void dist_nccl_arm(dist_nccl *n, int on) {
    n->armed = on;
    if (on) memset(n->sent, 0, (size_t)n->L + 1);
}

void dist_nccl_grads(dist_nccl *n) {
    PB_ASSERT(n->ps);
    // The tensors outside the blocks (and any block whose hook did not run), once the whole
    // backward is queued.
    after_compute(n, n->mark);
    for (int i = 0; i < n->nrest; i++) reduce_range(n, n->rest_lo[i], n->rest_hi[i]);
    for (int l = 0; l < n->L; l++)
        if (!n->sent[l]) reduce_range(n, n->span_lo[l], n->span_hi[l]);
    n->armed = 0;
    // Bounded: a dead rank ends the run here, never in a later sync of the compute stream
    // (which the comm stream has not been allowed to block).
    wait_stream(n, "the gradient exchange");
}

// A few doubles summed over the ranks (the ZeRO norm), through the staging buffer.
static void allreduce_host(dist_nccl *n, double *x, size_t count, const char *what) {
    PB_ASSERT(count * sizeof *x <= STAGE_BYTES);
    CU(cudaMemcpyAsync(n->stage, x, count * sizeof *x, cudaMemcpyHostToDevice, n->stream));
    NC(ncclAllReduce(n->stage, n->stage, count, ncclDouble, ncclSum, n->comm, n->stream), what);
    wait_stream(n, what);
    CU(cudaMemcpyAsync(x, n->stage, count * sizeof *x, cudaMemcpyDeviceToHost, n->stream));
    CU(cudaStreamSynchronize(n->stream));
}

float dist_nccl_clip(dist_nccl *n, float clip) {
    pb_params *ps = n->ps;
    if (!n->zero) return optim_clip_grad_norm(ps, clip);  // every rank holds the whole sum
    size_t lo = n->off[n->d->rank], hi = n->off[n->d->rank + 1];
    double s = optim_grad_sumsq(ps, lo, hi);
    allreduce_host(n, &s, 1, "the gradient norm");
    return optim_clip_by_sumsq(ps, clip, s, lo, hi);
}

void dist_nccl_adamw(dist_nccl *n, pb_adamw *o, float lr) {
    pb_params *ps = n->ps;
    if (!n->zero) {
        adamw_step(o, ps, lr);
        return;
    }
    size_t lo = n->off[n->d->rank], hi = n->off[n->d->rank + 1];
    adamw_step_shard(o, ps, lr, lo, hi, n->m, n->v);
    // The updated weights: each shard from its owner, once its AdamW is done.
    const char *what = "the gather of the weights";
    after_compute(n, n->mark);
    NC(ncclGroupStart(), what);
    for (int r = 0; r < n->d->world; r++) {
        size_t a = n->off[r], b = n->off[r + 1];
        if (b > a)
            NC(ncclBroadcast(ps->mem + a, ps->mem + a, b - a, ncclFloat, r, n->comm, n->stream),
               what);
    }
    NC(ncclGroupEnd(), what);
    wait_stream(n, what);  // before the next forward reads them
}

void dist_nccl_moments_full(dist_nccl *n) {
    if (!n->zero) return;
    pb_params *ps = n->ps;
    const pb_dist *d = n->d;
    const char *what = "the gather of the AdamW moments";
    size_t lo = n->off[d->rank], cnt = n->off[d->rank + 1] - lo;
    if (d->rank == 0) {
        PB_ASSERT(!ps->m && !ps->v);
        ps->m = ps->ops->alloc(ps->num_floats * sizeof(float));
        ps->v = ps->ops->alloc(ps->num_floats * sizeof(float));
        if (cnt) {
            CU(cudaMemcpy(ps->m + lo, n->m, cnt * sizeof(float), cudaMemcpyDeviceToDevice));
            CU(cudaMemcpy(ps->v + lo, n->v, cnt * sizeof(float), cudaMemcpyDeviceToDevice));
        }
    }
    if (d->world == 1) return;
    after_compute(n, n->mark);  // the last AdamW on the shards
    NC(ncclGroupStart(), what);
    if (d->rank == 0) {
        for (int r = 1; r < d->world; r++) {
            size_t a = n->off[r], c = n->off[r + 1] - a;
            if (!c) continue;
            NC(ncclRecv(ps->m + a, c, ncclFloat, r, n->comm, n->stream), what);
            NC(ncclRecv(ps->v + a, c, ncclFloat, r, n->comm, n->stream), what);
        }
    } else if (cnt) {
        NC(ncclSend(n->m, cnt, ncclFloat, 0, n->comm, n->stream), what);
        NC(ncclSend(n->v, cnt, ncclFloat, 0, n->comm, n->stream), what);
    }
    NC(ncclGroupEnd(), what);
    wait_stream(n, what);
}

void dist_nccl_moments_release(dist_nccl *n) {
    if (!n->zero || n->d->rank != 0) return;
    pb_params *ps = n->ps;
    ps->ops->free(ps->m);
    ps->ops->free(ps->v);
    ps->m = ps->v = NULL;
}

void dist_nccl_free(dist_nccl *n) {
    if (!n) return;
    if (n->d->xfer_ctx == n) n->d->xfer = NULL, n->d->xfer_ctx = NULL;
    if (n->ps && n->zero) {
        n->ps->ops->free(n->m);
        n->ps->ops->free(n->v);
    }
    // Finalize flushes and may take a while (settled, bounded); destroy then only frees, and
    // the handle is gone after it (no asynchronous error to poll).
    NC(ncclCommFinalize(n->comm), "the NCCL communicator's end");
    ncclResult_t rc = nc.ncclCommDestroy(n->comm);
    n->comm = NULL;
    if (rc != ncclSuccess && rc != ncclInProgress)
        fail(n, "NCCL ncclCommDestroy failed: %s", nc.ncclGetErrorString(rc));
    for (int l = 0; l < n->L; l++) CU(cudaEventDestroy(n->layer_ev[l]));
    CU(cudaEventDestroy(n->mark));
    CU(cudaEventDestroy(n->done));
    CU(cudaStreamDestroy(n->stream));
    CU(cudaFree(n->stage));
    free(n->layer_ev);
    free(n->span_lo);
    free(n->span_hi);
    free(n->rest_lo);
    free(n->rest_hi);
    free(n->sent);
    free(n->off);
    free(n);
}
#endif
