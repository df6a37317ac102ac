// trainer.c: `pebble train`: the training loop. Loader -> forward -> backward (accumulated
// over micro-batches) -> global-norm clip -> AdamW -> schedule -> log; periodic validation.
#include "train/trainer.h"

#include <glob.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/loader.h"
#include "data/mlm.h"
#include "kernels/common.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/cuda.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/dist_nccl.h"
#include "train/feed.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/rundir.h"
#include "train/sample.h"
#include "train/stop.h"

// Whether trainer_backend will pick the GPU (without starting it).
static int wants_cuda(const pb_config *cfg) {
    return strcmp(cfg->device, "cuda") == 0 ||
           (strcmp(cfg->device, "auto") == 0 && pb_cuda_available());
}

const pb_ops *trainer_backend(const pb_config *cfg) {
    // cuda when asked (an error if no GPU can be used); auto: cuda when one can, else cpu.
    int want_cuda = strcmp(cfg->device, "cuda") == 0;
    if (want_cuda && !pb_cuda_available())
        pb_die(PB_EXIT_RUNTIME, "system.device = cuda but no CUDA device is available: %s",
               pb_cuda_unavailable_reason());
    // precision auto: bf16 mixed precision on the GPU (the fast path), fp32 on the CPU. Which
    // attention kernel runs the model's head dim is the table's to say (pb_attn_choose).
    if (want_cuda || (strcmp(cfg->device, "auto") == 0 && pb_cuda_available()))
        return strcmp(cfg->precision, "fp32") == 0 ? pb_ops_cuda() : pb_ops_cuda_bf16();
    if (strcmp(cfg->precision, "bf16") == 0)
        pb_die(PB_EXIT_USAGE, "system.precision = bf16 needs the GPU, and training runs on the "
               "CPU here (system.device = %s%s): the CPU backend computes in fp32",
               cfg->device, strcmp(cfg->device, "auto") == 0 ? ", no usable GPU" : "");
    return pb_ops_cpu();
}

int trainer_val_batches(uint64_t have, int batches, int B, int T, const char *what,
                        const char *pattern, FILE *note) {
    if ((uint64_t)batches <= have) return batches;
    // More would go round the validation data again, weighting some of it twice.
    fprintf(note, "note: %s = %d, but %s holds %llu batches of %d x %d: each validation uses "
            "those %llu\n", what, batches, pattern, (unsigned long long)have, B, T,
            (unsigned long long)have);
    return (int)have;
}

int trainer_model_from_ckpt(const char *path, gpt2_config *mc, char *err, size_t errlen) {
    ckpt_model_info mi;
    if (ckpt_read_config(path, NULL, &mi, err, errlen) != 0) return -1;
    if (strcmp(mi.family, "gpt2") != 0) {
        pb_seterr(err, errlen, "%s: a checkpoint of model family '%s'; this command runs gpt2",
                  path, mi.family);
        return -1;
    }
    if (mi.n_embd % mi.n_head != 0) {
        pb_seterr(err, errlen, "%s: /config has n_embd %d not divisible by n_head %d", path,
                  mi.n_embd, mi.n_head);
        return -1;
    }
    // Generation attends through the KV cache, densely: a model trained with a block-sparse
    // pattern would see keys it never saw in training.
    pb_config cfg;
    config_defaults(&cfg);
    if (ckpt_load_config(path, &cfg, err, errlen) != 0) return -1;
    if (strcmp(cfg.attn_sparsity, "dense") != 0) {
        pb_seterr(err, errlen, "%s: trained with attention.sparsity = %s; generation (the KV "
                  "cache) runs dense attention only", path, cfg.attn_sparsity);
        return -1;
    }
    memset(mc, 0, sizeof *mc);
    mc->n_layer = mi.n_layer;
    mc->n_head = mi.n_head;
    mc->n_embd = mi.n_embd;
    mc->seq_len = mi.seq_len;
    mc->vocab_size = mi.vocab_size;
    return 0;
}

// Rank r of world computes the contiguous share [off[r], off[r+1]) of n items; off (world+1,).
static size_t *shares(const pb_dist *d, size_t n) {
    size_t *off = pb_malloc(((size_t)d->world + 1) * sizeof *off);
    for (int r = 0; r <= d->world; r++) off[r] = n * (size_t)r / (size_t)d->world;
    return off;
}

// On the CPU a step of a large model can take an hour: say so before the first one. FLOPs of
// one step: 6 per parameter per token (forward and backward matmuls) plus attention's
// 12 * L * C * T per token (PaLM's count, without causal savings). The rate is that of one
// (rows, C) x (C, 4C) matmul timed here, the model's most common shape; the other ops run
// slower, so the estimate is a lower bound.
static void note_cpu_step_time(const pb_config *cfg, const pb_model *model, long tokens_per_step) {
    int C = cfg->n_embd, rows = cfg->batch_size * cfg->seq_len;
    if (rows > 512) rows = 512;
    float *a = pb_calloc((size_t)rows * C, sizeof(float));
    float *w = pb_calloc((size_t)4 * C * C, sizeof(float));
    float *o = pb_malloc((size_t)rows * 4 * C * sizeof(float));
    double best = 1e30;
    for (int i = 0; i < 3; i++) {  // the first call pays for page faults
        double t0 = pb_now();
        cpu_matmul_forward(o, a, w, NULL, rows, C, 4 * C);
        double dt = pb_now() - t0;
        if (dt < best) best = dt;
    }
    free(a);
    free(w);
    free(o);
    double rate = 2.0 * rows * C * 4.0 * C / (best > 1e-9 ? best : 1e-9);
    double flops = model_flops_per_token(model, cfg->seq_len) * (double)tokens_per_step;
    printf("first step: ~%.3g s estimated on the CPU (%.4g GFLOP = 6 x parameters x %ld tokens "
           "+ attention, at %.1f GFLOP/s measured on one matmul now)\n",
           flops / rate, flops / 1e9, tokens_per_step, rate / 1e9);
}

// Mean loss over `batches` micro-batches from the start of the validation data (at most
// what it holds: the trainer caps val_batches, with a note), and the accuracy over them
// (-1 without one). A stop signal abandons it: returns NAN, and the resumed run computes it
// again (val_pending).
//
// With several ranks (d), rank r computes a contiguous share of the batches; every rank
// reads every batch, so each is the one a single rank would see. The losses are gathered, not
// added, and summed in batch order as one rank does; the counts are integers. So the result
// is the single rank's to the bit.
double trainer_evaluate(pb_model *model, pb_feed *val, int step, int batches, pb_batch *b,
                        double *acc, pb_dist *d) {
    pb_dist one = {.world = 1};
    pb_dist *dd = d ? d : &one;
    size_t *off = shares(dd, (size_t)batches), *off2 = shares(dd, 2 * (size_t)dd->world);
    double *loss = pb_calloc((size_t)batches, sizeof *loss);
    long *counts = pb_calloc(2 * (size_t)dd->world, sizeof *counts);  // (correct, count) a rank
    double sum = NAN;
    feed_reset(val);
    model_set_dropout(model, 0, 0);  // the training step turns it on again
    for (int i = 0; i < batches; i++) {
        if (stop_agreed(d, 0)) goto out;
        feed_next(val, b, FEED_VAL_STEP, i);
        if ((size_t)i >= off[dd->rank] && (size_t)i < off[dd->rank + 1]) {
            loss[i] = model_forward(model, b->inputs, b->targets, b->lengths, b->labels, b->B,
                                    b->T);
            long c, n;
            model_accuracy(model, &c, &n);
            counts[2 * dd->rank] += c, counts[2 * dd->rank + 1] += n;
        }
        stop_test_signal_at("PEBBLE_TEST_SIGNAL_AT_VAL", step, i + 1);
    }
    dist_allgather(dd, loss, sizeof *loss, off, "the validation losses");
    dist_allgather(dd, counts, sizeof *counts, off2, "the validation accuracy");
    long correct = 0, count = 0;
    for (int r = 0; r < dd->world; r++) correct += counts[2 * r], count += counts[2 * r + 1];
    sum = 0.0;
    for (int i = 0; i < batches; i++) sum += loss[i];
    sum /= batches;
    *acc = model_has_accuracy(model) ? (count ? (double)correct / count : 0.0) : -1.0;
out:
    free(off);
    free(off2);
    free(loss);
    free(counts);
    return sum;
}

// Whether run_dir/metrics.jsonl lacks the validation of `step`: a run stopped during that
// validation, which the resumed run then does first.
static int val_pending(const char *run_dir, int step) {
    char path[PB_PATH_MAX + 32], want[64], *line = NULL;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    snprintf(want, sizeof want, "{\"step\": %d, \"val_loss\": ", step);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t cap = 0;
    int found = 0;
    while (!found && getline(&line, &cap, f) > 0) found = strncmp(line, want, strlen(want)) == 0;
    free(line);
    fclose(f);
    return !found;
}

// ----------------------------------------------------------------------------
// checkpoints and resume

// Every rank calls it (under ZeRO-1 the moments' shards are gathered on rank 0 first);
// rank 0 writes.
// Every rank waits here until rank 0's checkpoint is on disk: with the full dist.timeout,
// even after a stop signal, so a slow save is never taken for a dead rank (which would
// abort rank 0 in the middle of it).
static void checkpoint_barrier(pb_dist *d) {
    if (!d || d->world < 2) return;
    d->patient = 1;
    dist_max(d, 0, "rank 0's checkpoint");
    d->patient = 0;
}

static void save_checkpoint(const pb_config *cfg, const pb_model *model, const pb_adamw *opt,
                            const pb_feed *train, int step, long long tokens_seen, double lr,
                            int tty, pb_dist *d, const size_t *zoff, dist_nccl *nccl) {
    if (nccl) dist_nccl_moments_full(nccl);  // ZeRO-1 on the GPU: the full moments on rank 0
    if (zoff) {
        dist_gather(d, model->p->m, sizeof(float), zoff, "the gather of the AdamW moments");
        dist_gather(d, model->p->v, sizeof(float), zoff, "the gather of the AdamW moments");
    }
    if (!dist_lead(d)) {
        checkpoint_barrier(d);
        return;
    }
    pb_ckpt_trainer_state st;
    memset(&st, 0, sizeof st);
    st.step = step;
    st.tokens_seen = tokens_seen;
    st.seed = cfg->seed;
    feed_get_state(train, &st.train_loader);
    st.lr = lr;
    st.total_steps = cfg->steps;
    st.warmup_steps = cfg->warmup_steps;
    st.max_lr = cfg->lr;
    st.min_lr_frac = cfg->min_lr_frac;
    char err[1024], path[PB_PATH_MAX + 80];
    double t0 = pb_now();
    // Training on without a checkpoint would risk everything after the last good one.
    if (ckpt_save(cfg->run_dir, model->p, opt, &st, cfg, cfg->ckpt_keep_last, path, sizeof path,
                  err, sizeof err) != 0)
        pb_die(PB_EXIT_RUNTIME, "%s (training stopped: it would go on unprotected)", err);
    // Test hook: PEBBLE_TEST_SLOW_CHECKPOINT=S: rank 0's save takes S seconds more.
    const char *slow = getenv("PEBBLE_TEST_SLOW_CHECKPOINT");
    if (slow) sleep((unsigned)atoi(slow));
    printf("%scheckpoint: %s (%.2f s)\n", tty ? "\r\033[K" : "", path, pb_now() - t0);
    fflush(stdout);
    if (nccl) dist_nccl_moments_release(nccl);
    checkpoint_barrier(d);
}

// config_write_ini text -> "\nsection.key = value\n..." lines, for comparing two configs.
static char *ini_lines(const char *ini) {
    size_t n = strlen(ini), lines = 1;
    for (const char *p = ini; *p; p++) lines += *p == '\n';
    // each line gains at most "section." (63 + 1 bytes) and its newline
    char *out = pb_malloc(n + lines * 66 + 2), section[64] = "";
    char *o = out;
    *o++ = '\n';
    for (const char *p = ini; *p;) {
        size_t len = strcspn(p, "\n");
        if (p[0] == '[' && len >= 2 && len < sizeof section) {
            snprintf(section, sizeof section, "%.*s", (int)(len - 2), p + 1);
        } else if (len > 0 && p[0] != ';' && p[0] != '#') {
            o += sprintf(o, "%.*s.%.*s\n", (int)strlen(section), section, (int)len, p);
        }
        p += len + (p[len] == '\n');
    }
    *o = '\0';
    return out;
}

// Resuming with other values (a new lr, more steps, other data) is allowed, but should not
// pass unnoticed: a note lists the keys that differ from the checkpoint's config.
static void note_config_changes(const char *path, const pb_config *cfg) {
    char *stored = NULL, err[1024];
    if (ckpt_read_config(path, &stored, NULL, err, sizeof err) != 0) return;
    char *now = config_ini_text(cfg);
    char *a = ini_lines(stored), *b = ini_lines(now), changed[1024] = "";
    for (char *line = b + 1; *line;) {
        char *end = strchr(line, '\n');
        *end = '\0';
        char probe[PB_PATH_MAX + 128];
        snprintf(probe, sizeof probe, "\n%s\n", line);
        if (!strstr(a, probe) && strlen(changed) + 64 < sizeof changed) {
            size_t key = strcspn(line, " =");
            snprintf(changed + strlen(changed), sizeof changed - strlen(changed), "%s%.*s",
                     changed[0] ? ", " : "", (int)key, line);
        }
        line = end + 1;
    }
    if (changed[0]) printf("note: the config differs from the checkpoint's in %s\n", changed);
    free(a);
    free(b);
    free(stored);
    free(now);
}

// What a resume loads into; ckpt_load verifies the whole file before changing any of it.
typedef struct {
    pb_params *params;
    pb_adamw *opt;
    pb_ckpt_trainer_state *st;
} resume_target;

static int try_resume(const char *path, void *user, char *err, size_t errlen) {
    resume_target *t = user;
    return ckpt_load(path, t->params, 1, t->st, err, errlen);
}

// --resume: loads model, optimizer, step and the loader's position. `auto` falls back past
// damaged checkpoints (each skipped with a line on stderr); a file named on the command line
// must load. Returns 1 when a run was resumed, 0 when `auto` found no checkpoint (a new run
// starts).
// With several ranks, rank 0 picks the checkpoint (auto) and the others load the same file.
static int resume_run(const pb_config *cfg, const char *resume, pb_model *model, pb_adamw *opt,
                      pb_feed *train, int *step, long long *tokens_seen, pb_dist *d) {
    char path[PB_PATH_MAX + 300] = "", err[2048];
    pb_ckpt_trainer_state st;
    if (strcmp(resume, "auto") == 0) {
        resume_target t = {model->p, opt, &st};
        int rc = 0;
        if (dist_lead(d))
            rc = ckpt_resume_auto(cfg->run_dir, try_resume, &t, stderr, path, sizeof path, err,
                                  sizeof err);
        if (rc == -2) pb_die(PB_EXIT_RUNTIME, "%s", err);
        if (rc == -1) pb_die(PB_EXIT_DATA, "%s", err);
        dist_bcast(d, &rc, sizeof rc, "the choice of the checkpoint to resume");
        dist_bcast(d, path, sizeof path, "the choice of the checkpoint to resume");
        if (rc == 1) {
            printf("note: no checkpoint in %s: starting a new run\n", cfg->run_dir);
            return 0;
        }
        if (!dist_lead(d) && ckpt_load(path, model->p, 1, &st, err, sizeof err) != 0)
            pb_die(PB_EXIT_DATA, "rank %d: %s", d->rank, err);
    } else {
        snprintf(path, sizeof path, "%s", resume);
        if (ckpt_load(path, model->p, 1, &st, err, sizeof err) != 0)
            pb_die(PB_EXIT_DATA, "%s", err);
    }
    if (st.step > cfg->steps)
        pb_die(PB_EXIT_USAGE, "%s is at step %lld, past train.steps = %d (raise train.steps to "
               "train further)", path, (long long)st.step, cfg->steps);
    if (feed_set_state(train, &st.train_loader, err, sizeof err) != 0)
        pb_die(PB_EXIT_DATA, "%s: %s", path, err);
    if (dist_lead(d)) note_config_changes(path, cfg);
    printf("resume: %s: step %lld, %lld tokens seen\n", path, (long long)st.step,
           (long long)st.tokens_seen);
    *step = (int)st.step;
    *tokens_seen = st.tokens_seen;
    return 1;
}

int trainer_run(const pb_config *cfg) { return trainer_run_from(cfg, NULL); }

// What the ranks must agree on: the effective config as "section.key = value" lines, then
// each data file with its size ("data-files.<path> = <bytes>").
static char *run_identity(const pb_config *cfg) {
    char *cfg_ini = config_ini_text(cfg), *ini = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&ini, &len);
    if (!f) pb_die(PB_EXIT_RUNTIME, "out of memory");
    fprintf(f, "%s[data-files]\n", cfg_ini);
    free(cfg_ini);
    const char *pats[3] = {cfg->train_data, cfg->val_data, cfg->test_data};
    for (int i = 0; i < 3; i++) {
        glob_t g;
        if (!pats[i][0] || glob(pats[i], 0, NULL, &g) != 0) continue;
        for (size_t j = 0; j < g.gl_pathc; j++) {
            struct stat sb;
            fprintf(f, "%s = %lld\n", g.gl_pathv[j],
                    stat(g.gl_pathv[j], &sb) == 0 ? (long long)sb.st_size : -1LL);
        }
        globfree(&g);
    }
    fclose(f);
    char *lines = ini_lines(ini);
    free(ini);
    return lines;
}

int trainer_run_from(const pb_config *cfg_in, const pb_train_start *start) {
    char err[1024];
    // the run's effective config (what config.ini records)
    pb_config *run_cfg = pb_malloc(sizeof *run_cfg);
    *run_cfg = *cfg_in;
    const pb_config *cfg = run_cfg;
    if (run_cfg->warmup_steps > run_cfg->steps) {
        // A short trial run: warm up over the whole run rather than refuse it.
        printf("note: train.warmup_steps = %d is longer than the run (train.steps = %d): "
               "warming up over %d steps\n", run_cfg->warmup_steps, run_cfg->steps,
               run_cfg->steps);
        run_cfg->warmup_steps = run_cfg->steps;
    }
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
    int B = cfg->batch_size, T = cfg->seq_len;
    long tokens_per_micro = (long)B * T;

    // --- the ranks: rank 0 alone prints and writes; all of them agree on config and data
    // The GPU's exchanges may go over NCCL (dist_nccl.h), which also takes torchrun-style
    // launches without MPI.
    int gpu = wants_cuda(cfg), reduce_auto = strcmp(cfg->dist_reduce, "auto") == 0;
    if (gpu && !pb_cuda_available())  // system.device = cuda without one: its line, first
        pb_die(PB_EXIT_RUNTIME, "system.device = cuda but no CUDA device is available: %s",
               pb_cuda_unavailable_reason());
    pb_dist d;
    if (dist_init_for(&d, gpu && (reduce_auto || strcmp(cfg->dist_reduce, "nccl") == 0), err,
                      sizeof err) != 0)
        pb_die(PB_EXIT_USAGE, "%s", err);
    d.timeout_s = cfg->dist_timeout;
    d.stop = stop_flag();
    const int W = d.world, lead = dist_lead(&d);
    // NCCL: asked for (also at world 1: the path's own test, the single GPU's bits), or auto on
    // several GPUs. auto on one GPU needs nothing exchanged: the plain path, NCCL not loaded.
    dist_nccl *nccl = NULL;
    if (strcmp(cfg->dist_reduce, "nccl") == 0 && !gpu)
        pb_die(PB_EXIT_USAGE, "dist.reduce = nccl needs the GPU, and training runs on the CPU "
               "here (system.device = %s%s): the CPU's exact exchange is dist.reduce = tree",
               cfg->device, strcmp(cfg->device, "auto") == 0 ? ", no usable GPU" : "");
    if (gpu && (strcmp(cfg->dist_reduce, "nccl") == 0 || (reduce_auto && W > 1))) {
        pb_cuda_select_device(d.local_rank);  // before the backend starts on the GPU
        if (pb_make_dirs(cfg->run_dir, err, sizeof err) != 0)  // the id file's directory
            pb_die(PB_EXIT_RUNTIME, "%s", err);
        nccl = dist_nccl_init(&d, cfg->run_dir, err, sizeof err);
        if (!nccl) pb_die(PB_EXIT_RUNTIME, "%s", err);
    } else if (gpu) {
        pb_cuda_select_device(d.local_rank);
    }
    // 0: one micro-batch per rank; config_validate checked divisibility by B*T
    long total_batch = cfg->total_batch_tokens ? cfg->total_batch_tokens : tokens_per_micro * W;
    int accum_global = (int)(total_batch / tokens_per_micro);
    if (!lead && !freopen("/dev/null", "w", stdout))
        pb_die(PB_EXIT_RUNTIME, "rank %d: cannot silence stdout: %s", d.rank, strerror(errno));
    char *ident = run_identity(cfg);
    if (dist_same(&d, ident, err, sizeof err) != 0) {
        if (lead) fprintf(stderr, "pebble: %s\n", err);
        fflush(stderr);
        dist_finalize(&d);
        exit(PB_EXIT_USAGE);
    }
    free(ident);
    // The global batch stays train.total_batch_tokens: each rank takes 1/W of its micro-batches.
    if (accum_global % W != 0)
        pb_die(PB_EXIT_USAGE, "train.total_batch_tokens = %ld is %d micro-batches of %d x %d, "
               "which %d ranks cannot share evenly (make it a multiple of %ld)", total_batch,
               accum_global, B, T, W, tokens_per_micro * W);
    const int accum = accum_global / W;  // micro-batches per rank and step

    // --- the run directory: ours alone for the whole run (before anything reads it)
    if (pb_make_dirs(cfg->run_dir, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "%s", err);
    if (lead) rundir_lock(cfg->run_dir);

    // --- data
    if (cfg->sample_every && strcmp(cfg->model_family, "gpt2") != 0)
        pb_die(PB_EXIT_USAGE, "sample.every = %d: text samples need a gpt2 model (this one is "
               "%s); set sample.every = 0", cfg->sample_every, cfg->model_family);
    if (cfg->sample_every && strcmp(cfg->attn_sparsity, "dense") != 0)
        pb_die(PB_EXIT_USAGE, "sample.every = %d: samples run dense attention (the KV cache), "
               "and attention.sparsity = %s; set sample.every = 0", cfg->sample_every,
               cfg->attn_sparsity);
    feed_task task = feed_task_of(cfg);
    // Rank r's micro-batch k is the step's slot r*accum + k (data/loader.h).
    pb_feed *train = feed_open(cfg, cfg->train_data, B, 1, d.rank, W, err, sizeof err);
    if (!train) pb_die(PB_EXIT_DATA, "%s", err);
    feed_set_block(train, accum);
    pb_feed *val = NULL;
    if (cfg->val_data[0]) {
        // every rank reads all of it; trainer_evaluate shares the batches out
        val = feed_open(cfg, cfg->val_data, B, 0, 0, 1, err, sizeof err);
        if (!val) pb_die(PB_EXIT_DATA, "%s", err);
    }
    pb_feed *test = NULL;  // checked now, evaluated after the last step
    if (cfg->test_data[0]) {
        test = feed_open(cfg, cfg->test_data, B, 0, 0, 1, err, sizeof err);
        if (!test) pb_die(PB_EXIT_DATA, "%s", err);
    }

    // --- model and optimizer
    const pb_ops *ops = trainer_backend(cfg);
    if (ops == pb_ops_cpu() && strcmp(cfg->device, "auto") == 0)
        printf("device: cpu (system.device = auto and no usable GPU: %s)\n",
               pb_cuda_unavailable_reason());
    pb_model model;
    model_build(&model, cfg, ops);
    // The attention kernel for (B,T), checked now: an explicit model.attention that cannot
    // run this model is one line before anything is written.
    const pb_attn_impl *attn = model_attention(&model, B, T, err, sizeof err);
    if (!attn) pb_die(PB_EXIT_USAGE, "%s", err);
    model_init_weights(&model, cfg->seed);
    pb_adamw opt;
    adamw_init(&opt, model.p, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->eps,
               (float)cfg->weight_decay);
    // How the step's gradient is summed (dist.h): the tree on the CPU (the same bits for any
    // world size); on the GPU in place, then over NCCL between ranks (dist_nccl.h: the same
    // bits for one world size).
    int tree = strcmp(cfg->dist_reduce, "tree") == 0 ||
               (strcmp(cfg->dist_reduce, "auto") == 0 && ops == pb_ops_cpu());
    if (ops != pb_ops_cpu() && tree)
        pb_die(PB_EXIT_USAGE, "dist.reduce = tree is the CPU's exact exchange; on the GPU use "
               "nccl, sum (one rank) or auto");
    if (ops != pb_ops_cpu() && W > 1 && !nccl)
        pb_die(PB_EXIT_USAGE, "several ranks on the GPU exchange over NCCL: dist.reduce = %s "
               "cannot (set nccl or auto)", cfg->dist_reduce);
    if (tree && W > 1 && (accum & (accum - 1)) != 0 && lead)
        printf("note: %d micro-batches per rank is not a power of two: the run repeats to the "
               "bit on %d ranks, but is not bit-identical to one on another number of ranks\n",
               accum, W);
    const size_t nfl = model.p->num_floats;
    dist_tree grads;
    dist_tree_init(&grads, nfl);
    float *scratch = W > 1 && !nccl ? pb_malloc(nfl * sizeof(float)) : NULL;
    size_t *zoff = NULL, *moff = shares(&d, (size_t)accum_global);
    if (cfg->dist_zero && !nccl) {
        zoff = pb_malloc(((size_t)W + 1) * sizeof *zoff);
        dist_shards(&d, nfl, zoff);
    }
    double *mloss = pb_calloc((size_t)accum_global, sizeof *mloss);  // the step's, slot order

    // --- where the run starts: step 0, a checkpoint (--resume), or its weights (--init)
    int start_step = 0, resumed = 0;
    long long tokens_seen = 0;
    if (start && start->resume) {
        resumed = resume_run(cfg, start->resume, &model, &opt, train, &start_step, &tokens_seen,
                             &d);
    } else if (start && start->init) {
        char ipath[PB_PATH_MAX + 300];
        int skipped, rc = ckpt_pick(start->init, stderr, ipath, sizeof ipath, err, sizeof err);
        if (rc != 0) pb_die(rc, "%s", err);
        if (ckpt_load_init(ipath, model.p, &skipped, err, sizeof err) != 0)
            pb_die(PB_EXIT_DATA, "%s", err);
        printf("init: weights from %s (a new run: step 0, fresh optimizer)\n", ipath);
        if (skipped)
            printf("note: %d tensors of this model's head are not in %s (another head): they "
                   "start from train.seed\n", skipped, ipath);
    }
    // The NCCL path takes the store now that any resume has loaded the moments (ZeRO-1 keeps
    // this rank's shard of them).
    if (nccl) dist_nccl_attach(nccl, &model, cfg->dist_zero, stdout);
    // A new run: after --init has read its file (on every rank), which may be among those
    // archived.
    dist_max(&d, 0, "the start");
    if (!(start && start->resume) && lead)
        rundir_claim_fresh(cfg->run_dir, start && start->force);
    // Samples (sample.every): the tokenizer and the prompt are checked now, not at the
    // first sample.
    sample_trainer *sampler = NULL;
    if (cfg->sample_every && lead) {
        int code;
        sampler = sample_trainer_open(cfg, &model.gpt2, &code, err, sizeof err);
        if (!sampler) pb_die(code, "%s", err);
    }

    // --- run directory: the effective config and the metrics
    char path[PB_PATH_MAX + 64];
    pb_progress prog;
    memset(&prog, 0, sizeof prog);
    if (lead) {
        // (an earlier run's metrics.jsonl was archived by rundir_claim_fresh)
        if (!resumed && start && start->resume) rundir_claim_fresh(cfg->run_dir, 0);  // auto
        snprintf(path, sizeof path, "%s/config.ini", cfg->run_dir);
        FILE *fc = fopen(path, "w");
        if (!fc) pb_die(PB_EXIT_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
        config_write_ini(cfg, fc);
        if (fclose(fc) != 0)
            pb_die(PB_EXIT_RUNTIME, "%s: write failed: %s", path, strerror(errno));
        // A resumed run continues its metrics.jsonl; a new one starts it.
        if ((resumed ? progress_resume(&prog, cfg->run_dir, cfg->steps, start_step, err,
                                       sizeof err)
                     : progress_open(&prog, cfg->run_dir, cfg->steps, err, sizeof err)) != 0)
            pb_die(PB_EXIT_RUNTIME, "%s", err);
    }

    char desc[160];
    model_describe(&model, desc, sizeof desc);
    printf("pebble %s | %s | %.2fM parameters | %s backend, %d threads, %s attention\n",
           PEBBLE_VERSION, desc, model_num_trainable(&model) / 1e6, ops->name,
           omp_get_max_threads(), attn->name);
    printf("data (%s): %llu train tokens (%llu batches/epoch)%s | batch %d x %d, %d micro-steps "
           "= %ld tokens/step | %d steps | run dir %s\n",
           feed_task_name(task), (unsigned long long)feed_num_tokens(train),
           (unsigned long long)feed_num_batches(train) * W, val ? ", validation on" : "", B, T,
           accum_global, total_batch, cfg->steps, cfg->run_dir);
    if (nccl) {
        char what[160];
        dist_nccl_describe(nccl, what, sizeof what);
        printf("dist: %d rank%s (%s launch), %d micro-steps each | gradients: %s, per block on a "
               "second stream during the last backward (the same bits for this number of "
               "GPUs) | ZeRO-%d\n", W, W > 1 ? "s" : "", d.launcher, accum, what,
               cfg->dist_zero);
    } else if (W > 1) {
        printf("dist: %d ranks (%s launch), %d micro-steps each | gradients: %s | ZeRO-%d\n", W,
               d.launcher, accum, tree ? "fixed tree (the same bits for any number of ranks)"
                                       : "summed in place",
               cfg->dist_zero);
    }
    if (ops == pb_ops_cpu() && lead) note_cpu_step_time(cfg, &model, total_batch);
    fflush(stdout);

    pb_batch batch;
    batch_alloc(&batch, B, T);
    double last_val = -1.0, val_acc = -1.0;
    int stopped = 0, stopped_at = 0, mid_step = 0;
    int val_batches = val ? trainer_val_batches(feed_num_batches(val), cfg->val_batches, B, T,
                                                "train.val_batches",
                                                cfg->val_data, stdout) : 0;
    stop_install();
    double run_t0 = pb_now();
    long long run_tokens = 0;
    // A run stopped during a validation did not log it: do it now, as the uninterrupted run did.
    int pending = lead && resumed && val && start_step > 0 &&
                  ((cfg->val_every && start_step % cfg->val_every == 0) ||
                   start_step == cfg->steps) &&
                  val_pending(cfg->run_dir, start_step);
    dist_bcast(&d, &pending, sizeof pending, "the start");
    if (pending) {
        last_val = trainer_evaluate(&model, val, start_step, val_batches, &batch, &val_acc, &d);
        if (!isnan(last_val) && lead) progress_val(&prog, start_step, last_val, val_acc);
    }
    int stop_sig = 0;  // the reason all ranks act on (stop_agreed)
    double slowest_s = 0.0;  // the slowest step of this run, for train.time_limit
    pb_loader_state step_start;  // the loader before this step: a stop mid-step goes back to it
    // A signal before the first step stops here; after that the end of each step asks (and
    // checkpoints), so a signal between two steps is never taken for one before any step.
    for (int step = start_step;
         step < cfg->steps && !(step == start_step && (stop_sig = stop_agreed(&d, 0))); step++) {
        double t0 = pb_now();
        double lr = lr_schedule(step, cfg->steps, cfg->warmup_steps, cfg->lr, cfg->min_lr_frac);
        feed_get_state(train, &step_start);
        params_zero_grad(model.p);
        int micro = 0;
        while (micro < accum) {
            // tree: each micro-batch's gradient in a zeroed buffer, then a leaf of the tree
            if (tree && micro > 0) params_zero_grad(model.p);
            feed_next(train, &batch, (uint64_t)step, micro);
            // NCCL: the last micro-batch's backward starts the exchange, block by block
            if (nccl) dist_nccl_arm(nccl, micro == accum - 1);
            model_set_dropout(&model, 1,
                              model_dropout_key(cfg->seed, (uint64_t)step,
                                                mlm_first_row(micro, d.rank, accum, B)));
            mloss[d.rank * accum + micro] = model_forward(&model, batch.inputs, batch.targets,
                                                          batch.lengths, batch.labels, B, T);
            model_backward(&model, 1.0f / accum_global);
            if (tree && accum > 1) dist_tree_add(&grads, model.p->grad);
            micro++;
            stop_test_signal_at("PEBBLE_TEST_SIGNAL_AT_MICRO", step + 1, micro);
            if (micro < accum && (stop_sig = stop_agreed(&d, 0)) != 0) break;
        }
        if (micro < accum) {
            // Stopped mid-step: the unfinished step is dropped (its gradients are never
            // applied), and the checkpoint is of the last finished step with the loader
            // where that step left it, so that the resumed run is the uninterrupted one.
            if (tree && accum > 1) dist_tree_sum(&grads, model.p->grad);  // (empties it)
            if (feed_set_state(train, &step_start, err, sizeof err) != 0)
                pb_die(PB_EXIT_RUNTIME, "%s", err);
            if (step > start_step)
                save_checkpoint(cfg, &model, &opt, train, step, tokens_seen,
                                lr_schedule(step - 1, cfg->steps, cfg->warmup_steps, cfg->lr,
                                            cfg->min_lr_frac), prog.tty, &d, zoff, nccl);
            stopped = 1, stopped_at = step, mid_step = micro;
            break;
        }
        if (tree && accum > 1) dist_tree_sum(&grads, model.p->grad);
        // The ranks' sums added in the same tree, on rank 0; the losses gathered in slot
        // order and averaged as one rank averages its micro-batches.
        if (nccl) dist_nccl_grads(nccl);
        else dist_reduce(&d, model.p->grad, scratch, nfl, "the gradient sum");
        dist_allgather(&d, mloss, sizeof *mloss, moff, "the losses");
        double loss = 0.0;
        for (int i = 0; i < accum_global; i++) loss += mloss[i] / accum_global;
        float norm;
        if (nccl) {
            norm = dist_nccl_clip(nccl, (float)cfg->grad_clip);
        } else if (!zoff) {
            dist_bcast(&d, model.p->grad, nfl * sizeof(float), "the gradient");
            norm = optim_clip_grad_norm(model.p, (float)cfg->grad_clip);
        } else {
            // ZeRO-1: rank 0 holds the whole gradient (the norm needs all of it); each rank
            // gets its shard, clipped as every rank would clip the whole.
            norm = lead ? optim_clip_grad_norm(model.p, (float)cfg->grad_clip) : 0.0f;
            dist_bcast(&d, &norm, sizeof norm, "the gradient norm");
            dist_scatter(&d, model.p->grad, sizeof(float), zoff, "the gradient shards");
        }
        if (!isfinite(loss) || !isfinite(norm))
            pb_die(PB_EXIT_RUNTIME, "step %d: loss %g, gradient norm %g: training diverged "
                   "(lower train.lr?)", step + 1, loss, (double)norm);
        if (nccl) {
            dist_nccl_adamw(nccl, &opt, (float)lr);
        } else if (!zoff) {
            adamw_step(&opt, model.p, (float)lr);
        } else {
            // AdamW is elementwise: a shard's update is the same bits as in the whole one
            adamw_step_range(&opt, model.p, (float)lr, zoff[d.rank], zoff[d.rank + 1]);
            dist_allgather(&d, model.p->mem, sizeof(float), zoff, "the weights");
        }
        tokens_seen += total_batch;
        run_tokens += total_batch;
        double ms = (pb_now() - t0) * 1000.0;
        pb_step_stats st = {step + 1, loss, lr, norm, ms, total_batch / (ms / 1000.0),
                            tokens_seen};
        if (lead) progress_step(&prog, &st);

        int last = step + 1 == cfg->steps;
        if (val && ((cfg->val_every && (step + 1) % cfg->val_every == 0) || last)) {
            last_val = trainer_evaluate(&model, val, step + 1, val_batches, &batch, &val_acc, &d);
            if (!isnan(last_val) && lead) progress_val(&prog, step + 1, last_val, val_acc);
        }
        if (sampler && !stop_requested() && (step + 1) % cfg->sample_every == 0)
            sample_trainer_print(sampler, &model.gpt2, step + 1, prog.tty);

        stop_test_after_step(step + 1);
        // train.time_limit: stop now when one more step as slow as the slowest so far
        // (its validation included) would end past the limit.
        double iter_s = pb_now() - t0;
        if (iter_s > slowest_s) slowest_s = iter_s;
        stop_sig = stop_agreed(&d, !last && stop_time_up(cfg->time_limit, run_t0, slowest_s));

        int stopping = stop_sig != 0;
        if ((cfg->ckpt_every && (step + 1) % cfg->ckpt_every == 0) || last || stopping)
            save_checkpoint(cfg, &model, &opt, train, step + 1, tokens_seen, lr, prog.tty, &d,
                            zoff, nccl);
        if (stopping) {
            stopped = 1, stopped_at = step + 1;
            break;
        }
    }
    // A signal between steps (or before the first) with no step run since.
    if (stop_sig && !stopped) stopped = 1, stopped_at = start_step;
    // The test data, once, whole (every full batch of it), after a finished run.
    double test_loss = -1.0, test_acc = -1.0;
    if (test && !stopped) {
        int tb = (int)feed_num_batches(test);
        test_loss = trainer_evaluate(&model, test, cfg->steps, tb, &batch, &test_acc, &d);
        if (isnan(test_loss)) test_loss = -1.0;  // stopped during it: the run is complete
        else if (lead) progress_test(&prog, cfg->steps, test_loss, test_acc, tb);
    }
    if (lead) progress_close(&prog);
    if (stopped) stop_report(cfg, stop_sig, stopped_at, mid_step, accum);

    if (cfg->plot && lead) {
        if (plot_run(cfg->run_dir, err, sizeof err) == 0)
            printf("plot: %s/loss.png\n", cfg->run_dir);
        else
            fprintf(stderr, "pebble: warning: no plot: %s\n", err);
    }
    double wall = pb_now() - run_t0;
    char took[96];
    snprintf(took, sizeof took, "%.3f s, %.0f tokens/s", wall, wall > 0 ? run_tokens / wall : 0.0);
    if (!stopped) {
        printf("done: %d steps, %lld tokens", cfg->steps, tokens_seen);
        if (last_val >= 0) printf(", final val loss %.4f", last_val);
        if (last_val >= 0 && val_acc >= 0) printf(", accuracy %.4f", val_acc);
        if (test_loss >= 0) printf(", test loss %.4f", test_loss);
        if (test_loss >= 0 && test_acc >= 0) printf(", accuracy %.4f", test_acc);
        printf(" | this run: %d steps in %s\n", cfg->steps - start_step, took);
    } else {
        printf("this run: %d steps in %s\n", stopped_at - start_step, took);
    }

    batch_free(&batch);
    dist_tree_free(&grads);
    free(scratch);
    free(zoff);
    free(moff);
    free(mloss);
    dist_nccl_free(nccl);
    dist_finalize(&d);
    adamw_free(&opt);
    sample_trainer_close(sampler);
    model_free(&model);
    feed_close(train);
    feed_close(val);
    feed_close(test);
    free(run_cfg);
    return 0;
}
