// dist.c: ranks, the exact exchanges between them, the gradient tree, the NCCL id file and
// the --nproc launcher (see dist.h).
#include "train/dist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels/common.h"
#include "train/config.h"

#define PB_PATH_MAX_RDZV (PB_PATH_MAX + 96)

#ifdef PB_HAVE_MPI
#include <mpi.h>
#endif

// ----------------------------------------------------------------------------
// who we are

// An integer environment variable: 1 and *v when set and valid, 0 when unset, -1 when bad.
static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > 1 << 24) return -1;
    *v = (int)x;
    return 1;
}

typedef struct {
    const char *name, *rank, *world, *local;
} launcher_env;

static const launcher_env launchers[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
};

int dist_init(pb_dist *d, char *err, size_t errlen) { return dist_init_for(d, 0, err, errlen); }

int dist_init_for(pb_dist *d, int nccl, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->world = 1;
    d->timeout_s = 300;
    snprintf(d->launcher, sizeof d->launcher, "none");
    // mpirun inside a Slurm allocation sets both: OpenMPI's variables win (listed first).
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        const launcher_env *L = &launchers[i];
        int world = 0, rank = 0, local = 0;
        int hw = env_int(L->world, &world), hr = env_int(L->rank, &rank);
        if (hw == 0) continue;
        if (hw < 0 || hr <= 0 || world < 1 || rank >= world || env_int(L->local, &local) < 0) {
            pb_seterr(err, errlen, "%s launch: %s=%s, %s=%s, %s=%s do not name a rank of the "
                      "world", L->name, L->world, getenv(L->world), L->rank,
                      getenv(L->rank) ? getenv(L->rank) : "(unset)", L->local,
                      getenv(L->local) ? getenv(L->local) : "(unset)");
            return -1;
        }
        d->world = world, d->rank = rank, d->local_rank = local;
        snprintf(d->launcher, sizeof d->launcher, "%s", L->name);
        break;
    }
    if (d->world == 1) return 0;
    // The NCCL path takes these with the file rendezvous and exchanges over NCCL alone.
    if (strcmp(d->launcher, "torchrun") == 0 && nccl) return 0;
    if (strcmp(d->launcher, "torchrun") == 0) {
        // The CPU path exchanges over MPI, which only mpirun or srun can start.
        pb_seterr(err, errlen, "launched as rank %d of %d by RANK/WORLD_SIZE (torchrun's "
                  "convention): the CPU path exchanges gradients over MPI; launch with "
                  "pebble train --nproc %d, mpirun -np %d, or srun --mpi=pmix", d->rank,
                  d->world, d->world, d->world);
        return -1;
    }
#ifdef PB_HAVE_MPI
    int provided, size = 0, rank = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        pb_seterr(err, errlen, "MPI_Init failed (rank %d of %d, %s launch)", d->rank, d->world,
                  d->launcher);
        return -1;
    }
    d->mpi = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (size != d->world || rank != d->rank) {
        // srun without PMIx starts N singletons: each MPI_Init sees a world of one.
        pb_seterr(err, errlen, "%s says rank %d of %d but MPI sees rank %d of %d: under Slurm "
                  "run srun --mpi=pmix (OpenMPI needs PMIx), or mpirun inside the allocation",
                  d->launcher, d->rank, d->world, rank, size);
        return -1;
    }
    return 0;
#else
    pb_seterr(err, errlen, "launched as rank %d of %d (%s) but this pebble was built without "
              "MPI: install libopenmpi-dev and rebuild", d->rank, d->world, d->launcher);
    return -1;
#endif
}

void dist_finalize(pb_dist *d) {
#ifdef PB_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    d->mpi = 0;
}

// ----------------------------------------------------------------------------
// point to point, polled

#ifdef PB_HAVE_MPI
#define MPI_CHUNK ((size_t)1 << 30)  // MPI counts are int: messages go in pieces of 1 GiB

// Waits for n requests, sleeping between polls. Past dist.timeout without them, or long
// after the stop flag was raised (a peer that died while the others were stopped), one line
// and MPI_Abort: never a silent hang.
static void wait_all(pb_dist *d, MPI_Request *req, int n, int peer, const char *what) {
    double t0 = pb_now(), stop_seen = 0;
    for (long polls = 0;; polls++) {
        int done = 0;
        if (MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
            pb_die(PB_EXIT_RUNTIME, "rank %d: MPI failed during %s with rank %d", d->rank, what,
                   peer);
        if (done) return;
        double now = pb_now();
        if (d->stop && *d->stop && !stop_seen) stop_seen = now;
        // Every rank that is stopped reaches this exchange at once; one that does not come
        // half a second after our stop signal has likely died (mpirun then stops us too).
        if (stop_seen && stop_seen > 0 && now - stop_seen > 0.5 && !d->patient) {
            fprintf(stderr, "pebble: rank %d: stopping, but rank %d has not come to %s: has a "
                    "rank died?\n", d->rank, peer, what);
            fflush(stderr);
            stop_seen = -stop_seen;  // said once
        }
        double limit = d->timeout_s, since = stop_seen < 0 ? -stop_seen : stop_seen;
        if (stop_seen && !d->patient && since + 10 - t0 < limit) limit = since + 10 - t0;
        if (now - t0 > limit) {
            fprintf(stderr, "pebble: rank %d: rank %d did not answer for %.0f s during %s%s: a "
                    "rank died or hangs; stopping every rank\n", d->rank, peer, now - t0, what,
                    stop_seen ? " (after a stop signal)" : "");
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, PB_EXIT_RUNTIME);
        }
        if (polls > 64) {  // a short spin first: most waits end within microseconds
            struct timespec ts = {0, polls > 4096 ? 1000000 : 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static void xfer(pb_dist *d, void *buf, size_t bytes, int peer, int send, const char *what) {
    char *p = buf;
    while (bytes > 0) {
        int n = (int)(bytes < MPI_CHUNK ? bytes : MPI_CHUNK);
        MPI_Request r;
        int rc = send ? MPI_Isend(p, n, MPI_BYTE, peer, 0, MPI_COMM_WORLD, &r)
                      : MPI_Irecv(p, n, MPI_BYTE, peer, 0, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS)
            pb_die(PB_EXIT_RUNTIME, "rank %d: MPI could not start %s with rank %d", d->rank,
                   what, peer);
        wait_all(d, &r, 1, peer, what);
        p += n, bytes -= (size_t)n;
    }
}
#endif

// MPI's transport, or the one the NCCL path set (d->xfer: launches without MPI). Without
// either the world is one rank (dist_init refuses more): nothing is ever exchanged.
static void transfer(pb_dist *d, void *buf, size_t bytes, int peer, int send, const char *what) {
    if (d->xfer) {
        d->xfer(d, buf, bytes, peer, send, what);
        return;
    }
#ifdef PB_HAVE_MPI
    xfer(d, buf, bytes, peer, send, what);
#else
    PB_ASSERT(0 && buf && bytes && peer >= 0 && send >= 0 && what);
#endif
}
#define SEND(buf, bytes, peer) transfer(d, buf, bytes, peer, 1, what)
#define RECV(buf, bytes, peer) transfer(d, buf, bytes, peer, 0, what)

// ----------------------------------------------------------------------------
// exchanges

void dist_bcast(pb_dist *d, void *buf, size_t bytes, const char *what) {
    if (d->world == 1 || bytes == 0) return;
    if (d->rank == 0)
        for (int r = 1; r < d->world; r++) SEND(buf, bytes, r);
    else
        RECV(buf, bytes, 0);
}

// The blocks of every rank but 0 to rank 0 (to_lead) or from it.
static void blocks(pb_dist *d, void *buf, size_t elem, const size_t *off, int to_lead,
                   const char *what) {
    if (d->world == 1) return;
    char *b = buf;
    for (int r = 1; r < d->world; r++) {
        if (off[r + 1] == off[r] || (d->rank != 0 && d->rank != r)) continue;
        char *at = b + off[r] * elem;
        size_t bytes = (off[r + 1] - off[r]) * elem;
        if ((d->rank == 0) == (to_lead != 0))
            RECV(at, bytes, d->rank == 0 ? r : 0);
        else
            SEND(at, bytes, d->rank == 0 ? r : 0);
    }
}

void dist_gather(pb_dist *d, void *buf, size_t elem, const size_t *off, const char *what) {
    blocks(d, buf, elem, off, 1, what);
}

void dist_allgather(pb_dist *d, void *buf, size_t elem, const size_t *off, const char *what) {
    dist_gather(d, buf, elem, off, what);
    dist_bcast(d, buf, (off[d->world] - off[0]) * elem, what);  // off[0] is 0
}

void dist_scatter(pb_dist *d, void *buf, size_t elem, const size_t *off, const char *what) {
    blocks(d, buf, elem, off, 0, what);
}

int dist_max(pb_dist *d, int v, const char *what) {
    if (d->world == 1) return v;
    int *all = pb_calloc((size_t)d->world, sizeof *all);
    size_t *off = pb_malloc(((size_t)d->world + 1) * sizeof *off);
    for (int r = 0; r <= d->world; r++) off[r] = (size_t)r;
    all[d->rank] = v;
    dist_allgather(d, all, sizeof *all, off, what);
    int m = all[0];
    for (int r = 1; r < d->world; r++) m = all[r] > m ? all[r] : m;
    free(all);
    free(off);
    return m;
}

static void add_into(float *dst, const float *src, size_t n) {
    // elementwise: the same bits for any thread split
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void dist_reduce(pb_dist *d, float *buf, float *scratch, size_t n, const char *what) {
    // Recursive doubling: at distance s, rank r (a multiple of 2s) holds the sum of ranks
    // r .. r+s-1 and adds that of r+s .. r+2s-1: the aligned tree over the ranks.
    for (int s = 1; s < d->world; s <<= 1) {
        if (d->rank % (2 * s) == 0) {
            if (d->rank + s < d->world) {
                RECV(scratch, n * sizeof(float), d->rank + s);
                add_into(buf, scratch, n);
            }
        } else {
            SEND(buf, n * sizeof(float), d->rank - s);
            return;
        }
    }
}

// The line of text holding byte i (without its newline), into out.
static void line_at(const char *text, size_t i, char *out, size_t cap) {
    size_t a = i, b = i;
    while (a > 0 && text[a - 1] != '\n') a--;
    while (text[b] && text[b] != '\n') b++;
    snprintf(out, cap, "%.*s", (int)(b - a), text + a);
}

int dist_same(pb_dist *d, const char *text, char *err, size_t errlen) {
    if (d->world == 1) return 0;
    const char *what = "the comparison of the ranks' configs";
    uint64_t len = strlen(text);
    dist_bcast(d, &len, sizeof len, what);
    char *lead = pb_malloc(len + 1);
    if (d->rank == 0) memcpy(lead, text, len);
    dist_bcast(d, lead, len, what);
    lead[len] = '\0';
    // Where this rank's text first differs from rank 0's (INT_MAX-free: -1 = the same)
    size_t i = 0;
    while (text[i] && text[i] == lead[i]) i++;
    int differs = text[i] != lead[i];
    int first = dist_max(d, differs ? d->world - d->rank : 0, what);  // the lowest rank
    if (first == 0) {
        free(lead);
        return 0;
    }
    int bad = d->world - first;
    char mine[512] = "", theirs[512] = "";
    if (d->rank == bad) line_at(text, i, mine, sizeof mine);
    if (bad != 0) {  // its line to rank 0, which names the difference
        if (d->rank == bad) {
            SEND(mine, sizeof mine, 0);
            SEND(&i, sizeof i, 0);
        } else if (d->rank == 0) {
            RECV(theirs, sizeof theirs, bad);
            RECV(&i, sizeof i, bad);
        }
    }
    if (d->rank == 0) {
        char here[512];
        line_at(lead, i < len ? i : len, here, sizeof here);
        pb_seterr(err, errlen, "rank %d's run differs from rank 0's: '%s' there, '%s' on rank "
                  "0 (every rank must run the same config and data files)", bad,
                  theirs[0] ? theirs : "(end)", here[0] ? here : "(end)");
    }
    free(lead);
    return -1;
}

void dist_shards(const pb_dist *d, size_t n, size_t *off) {
    for (int r = 0; r < d->world; r++) off[r] = n / 16 * (size_t)r / (size_t)d->world * 16;
    off[d->world] = n;
}

// ----------------------------------------------------------------------------
// the gradient tree

void dist_tree_init(dist_tree *t, size_t n) {
    memset(t, 0, sizeof *t);
    t->n = n;
}

static float *tree_take(dist_tree *t) {
    if (t->nspare) return t->spare[--t->nspare];
    t->nbuf++;
    return pb_malloc(t->n * sizeof(float));
}

static void tree_give(dist_tree *t, float *b) { t->spare[t->nspare++] = b; }

void dist_tree_add(dist_tree *t, const float *g) {
    // A binary counter: the new leaf pairs with the partial sum of equal size to its left,
    // and that pair with the next, as long as there is one (an earlier sum on the left).
    float *carry = NULL;
    int l = 0;
    while (t->level[l]) {
        float *left = t->level[l];
        add_into(left, carry ? carry : g, t->n);
        if (carry) tree_give(t, carry);
        carry = left;
        t->level[l++] = NULL;
    }
    if (!carry) {
        carry = tree_take(t);
        memcpy(carry, g, t->n * sizeof(float));
    }
    t->level[l] = carry;
}

void dist_tree_sum(dist_tree *t, float *out) {
    // Lowest level first: acc = level[l] + acc, the aligned tree's right-hand partial sums.
    float *acc = NULL;
    for (int l = 0; l < 64; l++) {
        if (!t->level[l]) continue;
        if (acc) {
            add_into(t->level[l], acc, t->n);
            tree_give(t, acc);
        }
        acc = t->level[l];
        t->level[l] = NULL;
    }
    PB_ASSERT(acc);
    memcpy(out, acc, t->n * sizeof(float));
    tree_give(t, acc);
}

void dist_tree_free(dist_tree *t) {
    for (int l = 0; l < 64; l++)
        if (t->level[l]) tree_give(t, t->level[l]);
    for (int i = 0; i < t->nspare; i++) free(t->spare[i]);
    memset(t, 0, sizeof *t);
}

// ----------------------------------------------------------------------------
// the NCCL id through a file

#define RDZV_MAGIC 0x5044525a  // "ZRDP"

typedef struct {
    uint32_t magic, world;
    uint64_t bytes;
    char token[64];
} rdzv_header;

static void rdzv_path(char *out, size_t cap, const char *dir, const char *token) {
    snprintf(out, cap, "%s/.pebble-rdzv-%s", dir, token);
}

int dist_rdzv_exchange(const char *dir, const char *token, int rank, int world, void *id,
                       size_t bytes, double timeout_s, char *err, size_t errlen) {
    char path[PB_PATH_MAX_RDZV], tmpp[PB_PATH_MAX_RDZV + 16];
    if (!token[0] || strlen(token) >= sizeof ((rdzv_header *)0)->token || strchr(token, '/')) {
        pb_seterr(err, errlen, "rendezvous token '%s': 1 to 63 characters, no '/'", token);
        return -1;
    }
    rdzv_path(path, sizeof path, dir, token);
    rdzv_header h = {RDZV_MAGIC, (uint32_t)world, bytes, ""};
    snprintf(h.token, sizeof h.token, "%s", token);
    if (rank == 0) {
        snprintf(tmpp, sizeof tmpp, "%s.tmp%ld", path, (long)getpid());
        int fd = open(tmpp, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) {
            pb_seterr(err, errlen, "%s: cannot create: %s", tmpp, strerror(errno));
            return -1;
        }
        int ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
                 write(fd, id, bytes) == (ssize_t)bytes && fsync(fd) == 0;
        close(fd);
        // link(), unlike rename(), fails on an existing name: a file there is never replaced,
        // so no rank can have read another id under this name.
        if (!ok || link(tmpp, path) != 0) {
            int e = errno;
            unlink(tmpp);
            pb_seterr(err, errlen, "%s: %s%s", path, ok ? "cannot create: " : "write failed: ",
                      e == EEXIST ? "it exists already (a stale file of a launch with the "
                                    "same token: remove it)" : strerror(e));
            return -1;
        }
        unlink(tmpp);
        return 0;
    }
    double t0 = pb_now();
    for (;;) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            rdzv_header got;
            int whole = read(fd, &got, sizeof got) == (ssize_t)sizeof got &&
                        read(fd, id, bytes) == (ssize_t)bytes;
            close(fd);
            // link() makes the whole file appear at once, so a short read is a wrong file.
            if (!whole || got.magic != RDZV_MAGIC || got.bytes != bytes ||
                strcmp(got.token, token) != 0) {
                pb_seterr(err, errlen, "%s: not a pebble rendezvous file of %zu bytes for "
                          "launch '%s'", path, bytes, token);
                return -1;
            }
            if (got.world != (uint32_t)world) {
                pb_seterr(err, errlen, "%s: written for %u ranks, this rank %d is of %d", path,
                          got.world, rank, world);
                return -1;
            }
            return 0;
        }
        if (pb_now() - t0 > timeout_s) {
            pb_seterr(err, errlen, "rank %d: no rendezvous file %s from rank 0 after %.0f s "
                      "(did rank 0 start, with the same run.dir?)", rank, path, timeout_s);
            return -1;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
}

void dist_rdzv_remove(const char *dir, const char *token) {
    char path[PB_PATH_MAX_RDZV];
    rdzv_path(path, sizeof path, dir, token);
    unlink(path);
}

// ----------------------------------------------------------------------------
// --nproc

// The program on PATH named name, into out; 0 when found.
static int find_on_path(const char *name, char *out, size_t cap) {
    const char *p = getenv("PATH");
    if (!p) p = "/usr/bin:/bin";
    while (*p) {
        size_t n = strcspn(p, ":");
        snprintf(out, cap, "%.*s/%s", (int)n, p, name);
        if (n && access(out, X_OK) == 0) return 0;
        p += n + (p[n] == ':');
    }
    return -1;
}

static volatile sig_atomic_t got_signal;  // SIGTERM, SIGINT or SIGHUP, to pass on

static void note_signal(int sig) { got_signal = sig; }

// sig to mpirun's children, the ranks (on one machine mpirun starts them itself); 0 when
// it found any. mpirun itself is never signalled: on SIGTERM or SIGINT it sends the ranks
// SIGTERM and SIGKILL one second later (odls_base_sigkill_timeout), before a step can end and
// rank 0 checkpoint, and then exits 1 even when every rank exited 0.
static int signal_ranks(pid_t mpirun, int sig) {
    DIR *proc = opendir("/proc");
    if (!proc) return -1;
    int found = 0;
    for (struct dirent *e; (e = readdir(proc));) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = e->d_name[0] >= '1' && e->d_name[0] <= '9' ? fopen(path, "r") : NULL;
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');  // "pid (comm) state ppid ...": comm may hold spaces
        long ppid;
        if (rp && sscanf(rp + 1, " %*c %ld", &ppid) == 1 && ppid == (long)mpirun &&
            kill((pid_t)atol(e->d_name), sig) == 0)
            found = 1;
    }
    closedir(proc);
    return found ? 0 : -1;
}

int dist_launch_nproc(int nproc, int argc, char **argv) {
    char mpirun[PB_PATH_MAX_RDZV], self[PB_PATH_MAX_RDZV];
    if (find_on_path("mpirun", mpirun, sizeof mpirun) != 0)
        pb_die(PB_EXIT_USAGE, "--nproc %d runs the ranks under OpenMPI's mpirun, which is not on "
               "PATH (apt-get install openmpi-bin)", nproc);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) pb_die(PB_EXIT_RUNTIME, "--nproc: cannot find this program: %s", strerror(errno));
    self[n] = '\0';
    // The cores shared out, unless the user chose: N ranks of all-core OpenMP would fight.
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char threads[32];
    snprintf(threads, sizeof threads, "%ld", cores / nproc > 0 ? cores / nproc : 1);
    setenv("OMP_NUM_THREADS", threads, 0);
    // Containers: OpenMPI's shared-memory transport would try CMA (ptrace), often refused.
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    char np[16];
    snprintf(np, sizeof np, "%d", nproc);
    char **av = pb_calloc((size_t)argc + 12, sizeof *av);
    int k = 0;
    av[k++] = mpirun;
    av[k++] = "-np";
    av[k++] = np;
    av[k++] = "--oversubscribe";  // more ranks than cores is allowed (and slots not counted)
    av[k++] = "--bind-to";        // each rank's OpenMP threads may use every core
    av[k++] = "none";
    if (geteuid() == 0) av[k++] = "--allow-run-as-root";
    av[k++] = self;
    for (int i = 0; i < argc; i++) av[k++] = argv[i];
    av[k] = NULL;
    // SIGTERM and SIGINT (Ctrl-C) come to us alone and go to the ranks (signal_ranks): each
    // stops at the same micro-batch, rank 0 checkpoints once, every rank exits 0. Installed
    // before the fork, so that none is lost in between.
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) pb_die(PB_EXIT_RUNTIME, "--nproc: fork failed: %s", strerror(errno));
    if (pid == 0) {
        // Out of the terminal's process group, so Ctrl-C does not reach mpirun; stdin from
        // /dev/null, as a background group reading the terminal would be stopped (SIGTTIN).
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        execv(mpirun, av);
        fprintf(stderr, "pebble: --nproc: cannot run %s: %s\n", mpirun, strerror(errno));
        _exit(127);
    }
    int st;
    for (;;) {
        int sig = got_signal;
        got_signal = 0;
        // SIGHUP (the terminal gone) ends mpirun and the ranks, as it would in one group;
        // with no rank started yet, mpirun stops the launch.
        if (sig == SIGHUP) kill(-pid, SIGHUP);
        else if (sig && signal_ranks(pid, sig) != 0) kill(pid, sig);
        pid_t w = waitpid(pid, &st, WNOHANG);  // polled: a signal is never missed
        if (w == pid) break;
        if (w < 0 && errno != EINTR)
            pb_die(PB_EXIT_RUNTIME, "--nproc: waitpid: %s", strerror(errno));
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    free(av);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    fprintf(stderr, "pebble: --nproc %d: the ranks failed (mpirun exit status %d; the lines "
            "above say which rank and why)\n", nproc, code);
    return code ? code : PB_EXIT_RUNTIME;
}
