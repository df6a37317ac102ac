// trainer.c: `pebble train`: the training loop. Loader -> forward -> backward (accumulated
// over micro-batches) -> global-norm clip -> AdamW -> schedule -> log; periodic validation.
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/loader.h"
#include "kernels/common.h"
#include "kernels/cuda/cuda.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/sample.h"

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

void trainer_model_config(const pb_config *cfg, gpt2_config *mc) {
    memset(mc, 0, sizeof *mc);
    mc->n_layer = cfg->n_layer;
    mc->n_head = cfg->n_head;
    mc->n_embd = cfg->n_embd;
    mc->seq_len = cfg->seq_len;
    mc->vocab_size = cfg->vocab_size;
    snprintf(mc->attention, sizeof mc->attention, "%s", cfg->attention);
}

// Mean loss over `batches` micro-batches from the start of the validation data.
static double validate(gpt2 *model, pb_loader *val, int batches, int B, int T, int32_t *inputs,
                       int32_t *targets) {
    loader_reset(val);
    double sum = 0.0;
    for (int i = 0; i < batches; i++) {
        loader_next(val, inputs, targets);
        sum += gpt2_forward(model, inputs, targets, B, T);
    }
    return sum / batches;
}

// ----------------------------------------------------------------------------
// checkpoints, resume and signals

// SIGINT/SIGTERM (Ctrl-C, or a scheduler preempting the job) ask the loop to finish the
// current step, write a checkpoint and exit 0. A second signal ends the process at once.
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // IO in progress completes; the loop polls the flag
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

// Test hook: PEBBLE_TEST_SIGNAL_AT_STEP=N makes the process send itself SIGTERM right after
// step N, so that tests stop a run at an exact step through the real signal path.
static int test_signal_step(void) {
    const char *s = getenv("PEBBLE_TEST_SIGNAL_AT_STEP");
    return s ? atoi(s) : 0;
}

static void save_checkpoint(const pb_config *cfg, const gpt2 *model, const pb_adamw *opt,
                            const pb_loader *train, int step, long long tokens_seen, double lr,
                            int tty) {
    pb_ckpt_trainer_state st;
    memset(&st, 0, sizeof st);
    st.step = step;
    st.tokens_seen = tokens_seen;
    st.seed = cfg->seed;
    loader_get_state(train, &st.train_loader);
    st.lr = lr;
    st.total_steps = cfg->steps;
    st.warmup_steps = cfg->warmup_steps;
    st.max_lr = cfg->lr;
    st.min_lr_frac = cfg->min_lr_frac;
    char err[1024], path[PB_PATH_MAX + 80];
    double t0 = pb_now();
    // Training on without a checkpoint would risk everything after the last good one.
    if (ckpt_save(cfg->run_dir, &model->p, opt, &st, cfg, cfg->ckpt_keep_last, path, sizeof path,
                  err, sizeof err) != 0)
        pb_die(PB_EXIT_RUNTIME, "%s (training stopped: it would go on unprotected)", err);
    printf("%scheckpoint: %s (%.2f s)\n", tty ? "\r\033[K" : "", path, pb_now() - t0);
    fflush(stdout);
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
    char *stored = NULL, *now = NULL, err[1024];
    if (ckpt_read_config(path, &stored, NULL, err, sizeof err) != 0) return;
    size_t len = 0;
    FILE *f = open_memstream(&now, &len);
    if (!f) pb_die(PB_EXIT_RUNTIME, "out of memory");
    config_write_ini(cfg, f);
    fclose(f);
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
    gpt2 *model;
    pb_adamw *opt;
    pb_ckpt_trainer_state *st;
} resume_target;

static int try_resume(const char *path, void *user, char *err, size_t errlen) {
    resume_target *t = user;
    return ckpt_load(path, &t->model->p, 1, t->st, err, errlen);
}

// --resume: loads model, optimizer, step and the loader's position. `auto` falls back past
// damaged checkpoints (each skipped with a line on stderr); a file named on the command line
// must load. Returns 1 when a run was resumed, 0 when `auto` found no checkpoint (a new run
// starts).
static int resume_run(const pb_config *cfg, const char *resume, gpt2 *model, pb_adamw *opt,
                      pb_loader *train, int *step, long long *tokens_seen) {
    char path[PB_PATH_MAX + 300], err[2048];
    pb_ckpt_trainer_state st;
    if (strcmp(resume, "auto") == 0) {
        resume_target t = {model, opt, &st};
        int rc = ckpt_resume_auto(cfg->run_dir, try_resume, &t, stderr, path, sizeof path, err,
                                  sizeof err);
        if (rc == -2) pb_die(PB_EXIT_RUNTIME, "%s", err);
        if (rc == -1) pb_die(PB_EXIT_DATA, "%s", err);
        if (rc == 1) {
            printf("note: no checkpoint in %s: starting a new run\n", cfg->run_dir);
            return 0;
        }
    } else {
        snprintf(path, sizeof path, "%s", resume);
        if (ckpt_load(path, &model->p, 1, &st, err, sizeof err) != 0)
            pb_die(PB_EXIT_DATA, "%s", err);
    }
    if (st.step > cfg->steps)
        pb_die(PB_EXIT_USAGE, "%s is at step %lld, past train.steps = %d (raise train.steps to "
               "train further)", path, (long long)st.step, cfg->steps);
    if (loader_set_state(train, &st.train_loader, err, sizeof err) != 0)
        pb_die(PB_EXIT_DATA, "%s: %s", path, err);
    note_config_changes(path, cfg);
    printf("resume: %s: step %lld, %lld tokens seen\n", path, (long long)st.step,
           (long long)st.tokens_seen);
    *step = (int)st.step;
    *tokens_seen = st.tokens_seen;
    return 1;
}

int trainer_run(const pb_config *cfg) { return trainer_run_from(cfg, NULL); }

int trainer_run_from(const pb_config *cfg, const pb_train_start *start) {
    char err[1024];
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
    int B = cfg->batch_size, T = cfg->seq_len;
    long tokens_per_micro = (long)B * T;
    long total_batch = cfg->total_batch_tokens ? cfg->total_batch_tokens : tokens_per_micro;
    int accum = (int)(total_batch / tokens_per_micro);  // config_validate checked divisibility

    // --- data
    pb_loader *train = loader_open(cfg->train_data, B, T, 0, 1, cfg->seed, 1, cfg->vocab_size,
                                   err, sizeof err);
    if (!train) pb_die(PB_EXIT_DATA, "%s", err);
    pb_loader *val = NULL;
    if (cfg->val_data[0]) {
        val = loader_open(cfg->val_data, B, T, 0, 1, cfg->seed, 0, cfg->vocab_size, err,
                          sizeof err);
        if (!val) pb_die(PB_EXIT_DATA, "%s", err);
    }

    // --- model and optimizer
    const pb_ops *ops = trainer_backend(cfg);
    gpt2_config mc;
    trainer_model_config(cfg, &mc);
    gpt2 model;
    gpt2_build(&model, &mc, ops);
    // The attention kernel for (B,T), checked now: an explicit model.attention that cannot
    // run this model is one line before anything is written.
    const pb_attn_impl *attn = gpt2_attention(&model, B, T, err, sizeof err);
    if (!attn) pb_die(PB_EXIT_USAGE, "%s", err);
    gpt2_init_weights(&model, cfg->seed);
    pb_adamw opt;
    adamw_init(&opt, &model.p, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->eps,
               (float)cfg->weight_decay);

    // --- where the run starts: step 0, a checkpoint (--resume), or its weights (--init)
    int start_step = 0, resumed = 0;
    long long tokens_seen = 0;
    if (start && start->resume) {
        resumed = resume_run(cfg, start->resume, &model, &opt, train, &start_step, &tokens_seen);
    } else if (start && start->init) {
        if (ckpt_load(start->init, &model.p, 0, NULL, err, sizeof err) != 0)
            pb_die(PB_EXIT_DATA, "%s", err);
        printf("init: weights from %s (a new run: step 0, fresh optimizer)\n", start->init);
    }
    // Samples (sample.every): the tokenizer and the prompt are checked now, not at the
    // first sample.
    sample_trainer *sampler = NULL;
    if (cfg->sample_every) {
        int code;
        sampler = sample_trainer_open(cfg, &model, &code, err, sizeof err);
        if (!sampler) pb_die(code, "%s", err);
    }

    // --- run directory: the effective config and the metrics
    if (pb_make_dirs(cfg->run_dir, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "%s", err);
    char path[PB_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    struct stat st;
    if (!resumed && stat(path, &st) == 0) {
        // Never silently lose an earlier run's log: keep one previous copy.
        char bak[PB_PATH_MAX + 80];
        snprintf(bak, sizeof bak, "%s.prev", path);
        if (rename(path, bak) != 0)
            pb_die(PB_EXIT_RUNTIME, "cannot move %s aside: %s", path, strerror(errno));
        printf("note: %s existed; moved to %s\n", path, bak);
    }
    snprintf(path, sizeof path, "%s/config.ini", cfg->run_dir);
    FILE *fc = fopen(path, "w");
    if (!fc) pb_die(PB_EXIT_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
    config_write_ini(cfg, fc);
    if (fclose(fc) != 0) pb_die(PB_EXIT_RUNTIME, "%s: write failed: %s", path, strerror(errno));
    pb_progress prog;
    // A resumed run continues its metrics.jsonl; a new one starts it.
    if ((resumed ? progress_resume(&prog, cfg->run_dir, cfg->steps, start_step, err, sizeof err)
                 : progress_open(&prog, cfg->run_dir, cfg->steps, err, sizeof err)) != 0)
        pb_die(PB_EXIT_RUNTIME, "%s", err);

    printf("pebble %s | gpt2 L%d H%d C%d T%d V%d (padded %d) | %.2fM parameters | %s backend, "
           "%d threads, %s attention\n",
           PEBBLE_VERSION, mc.n_layer, mc.n_head, mc.n_embd, mc.seq_len, mc.vocab_size,
           model.cfg.padded_vocab, gpt2_num_trainable(&model) / 1e6, ops->name,
           omp_get_max_threads(), attn->name);
    printf("data: %llu train tokens (%llu batches/epoch)%s | batch %d x %d, %d micro-steps = %ld "
           "tokens/step | %d steps | run dir %s\n",
           (unsigned long long)loader_num_tokens(train),
           (unsigned long long)loader_num_batches(train), val ? ", validation on" : "", B, T,
           accum, total_batch, cfg->steps, cfg->run_dir);
    fflush(stdout);

    int32_t *inputs = pb_malloc((size_t)B * T * sizeof(int32_t));
    int32_t *targets = pb_malloc((size_t)B * T * sizeof(int32_t));
    double last_val = -1.0;
    int stopped_at = 0, signal_step = test_signal_step();
    install_stop_handlers();
    for (int step = start_step; step < cfg->steps; step++) {
        double t0 = pb_now();
        double lr = lr_schedule(step, cfg->steps, cfg->warmup_steps, cfg->lr, cfg->min_lr_frac);
        gpt2_zero_grad(&model);
        double loss = 0.0;
        for (int micro = 0; micro < accum; micro++) {
            loader_next(train, inputs, targets);
            loss += gpt2_forward(&model, inputs, targets, B, T) / accum;
            gpt2_backward(&model, 1.0f / accum);
        }
        float norm = optim_clip_grad_norm(&model.p, (float)cfg->grad_clip);
        if (!isfinite(loss) || !isfinite(norm))
            pb_die(PB_EXIT_RUNTIME, "step %d: loss %g, gradient norm %g: training diverged "
                   "(lower train.lr?)", step + 1, loss, (double)norm);
        adamw_step(&opt, &model.p, (float)lr);
        tokens_seen += total_batch;
        double ms = (pb_now() - t0) * 1000.0;
        pb_step_stats s = {step + 1, loss, lr, norm, ms, total_batch / (ms / 1000.0), tokens_seen};
        progress_step(&prog, &s);

        int last = step + 1 == cfg->steps;
        if (val && ((cfg->val_every && (step + 1) % cfg->val_every == 0) || last)) {
            last_val = validate(&model, val, cfg->val_batches, B, T, inputs, targets);
            progress_val(&prog, step + 1, last_val);
        }
        if (sampler && (step + 1) % cfg->sample_every == 0)
            sample_trainer_print(sampler, &model, step + 1, prog.tty);

        if (signal_step == step + 1) raise(SIGTERM);
        int stopping = stop_signal != 0;
        if ((cfg->ckpt_every && (step + 1) % cfg->ckpt_every == 0) || last || stopping)
            save_checkpoint(cfg, &model, &opt, train, step + 1, tokens_seen, lr, prog.tty);
        if (stopping) {
            stopped_at = step + 1;
            break;
        }
    }
    progress_close(&prog);
    if (stopped_at) {
        printf("stopped by %s after step %d of %d; continue with --resume auto\n",
               stop_signal == SIGINT ? "SIGINT" : "SIGTERM", stopped_at, cfg->steps);
        fflush(stdout);
    }

    if (cfg->plot) {
        if (plot_run(cfg->run_dir, err, sizeof err) == 0)
            printf("plot: %s/loss.png\n", cfg->run_dir);
        else
            fprintf(stderr, "pebble: warning: no plot: %s\n", err);
    }
    if (!stopped_at) {
        printf("done: %d steps, %lld tokens%s", cfg->steps, tokens_seen,
               last_val >= 0 ? "" : "\n");
        if (last_val >= 0) printf(", final val loss %.4f\n", last_val);
    }

    free(inputs);
    free(targets);
    adamw_free(&opt);
    sample_trainer_close(sampler);
    gpt2_free(&model);
    loader_close(train);
    if (val) loader_close(val);
    return 0;
}
