// trainer.c: `pebble train`: the training loop. Loader -> forward -> backward (accumulated
// over micro-batches) -> global-norm clip -> AdamW -> schedule -> log; periodic validation.
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <sys/stat.h>

#include "data/loader.h"
#include "kernels/common.h"
#include "model/gpt2.h"
#include "train/optim.h"
#include "train/plot.h"
#include "train/progress.h"

// mkdir -p; returns -1 with err set on failure.
static int make_dirs(const char *path, char *err, size_t errlen) {
    char buf[PB_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create run directory %s: %s", buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

const pb_ops *trainer_backend(const pb_config *cfg) {
    pb_attn_kind attn = strcmp(cfg->attention, "naive") == 0 ? PB_ATTN_NAIVE : PB_ATTN_FLASH;
    return pb_ops_cpu(attn);
}

void trainer_model_config(const pb_config *cfg, gpt2_config *mc) {
    memset(mc, 0, sizeof *mc);
    mc->n_layer = cfg->n_layer;
    mc->n_head = cfg->n_head;
    mc->n_embd = cfg->n_embd;
    mc->seq_len = cfg->seq_len;
    mc->vocab_size = cfg->vocab_size;
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

int trainer_run(const pb_config *cfg) {
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
    gpt2_init_weights(&model, cfg->seed);
    pb_adamw opt;
    adamw_init(&opt, &model, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->eps,
               (float)cfg->weight_decay);

    // --- run directory: the effective config and the metrics
    if (make_dirs(cfg->run_dir, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "%s", err);
    char path[PB_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    struct stat st;
    if (stat(path, &st) == 0) {
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
    if (progress_open(&prog, cfg->run_dir, cfg->steps, err, sizeof err) != 0)
        pb_die(PB_EXIT_RUNTIME, "%s", err);

    printf("pebble %s | gpt2 L%d H%d C%d T%d V%d (padded %d) | %.2fM parameters | %s backend, "
           "%d threads, %s attention\n",
           PEBBLE_VERSION, mc.n_layer, mc.n_head, mc.n_embd, mc.seq_len, mc.vocab_size,
           model.cfg.padded_vocab, gpt2_num_trainable(&model) / 1e6, ops->name,
           omp_get_max_threads(), cfg->attention);
    printf("data: %llu train tokens (%llu batches/epoch)%s | batch %d x %d, %d micro-steps = %ld "
           "tokens/step | %d steps | run dir %s\n",
           (unsigned long long)loader_num_tokens(train),
           (unsigned long long)loader_num_batches(train), val ? ", validation on" : "", B, T,
           accum, total_batch, cfg->steps, cfg->run_dir);
    fflush(stdout);

    int32_t *inputs = pb_malloc((size_t)B * T * sizeof(int32_t));
    int32_t *targets = pb_malloc((size_t)B * T * sizeof(int32_t));
    long long tokens_seen = 0;
    double last_val = -1.0;
    for (int step = 0; step < cfg->steps; step++) {
        double t0 = pb_now();
        double lr = lr_schedule(step, cfg->steps, cfg->warmup_steps, cfg->lr, cfg->min_lr_frac);
        gpt2_zero_grad(&model);
        double loss = 0.0;
        for (int micro = 0; micro < accum; micro++) {
            loader_next(train, inputs, targets);
            loss += gpt2_forward(&model, inputs, targets, B, T) / accum;
            gpt2_backward(&model, 1.0f / accum);
        }
        float norm = optim_clip_grad_norm(&model, (float)cfg->grad_clip);
        if (!isfinite(loss) || !isfinite(norm))
            pb_die(PB_EXIT_RUNTIME, "step %d: loss %g, gradient norm %g: training diverged "
                   "(lower train.lr?)", step + 1, loss, (double)norm);
        adamw_step(&opt, &model, (float)lr);
        tokens_seen += total_batch;
        double ms = (pb_now() - t0) * 1000.0;
        pb_step_stats s = {step + 1, loss, lr, norm, ms, total_batch / (ms / 1000.0), tokens_seen};
        progress_step(&prog, &s);

        int last = step + 1 == cfg->steps;
        if (val && ((cfg->val_every && (step + 1) % cfg->val_every == 0) || last)) {
            last_val = validate(&model, val, cfg->val_batches, B, T, inputs, targets);
            progress_val(&prog, step + 1, last_val);
        }
    }
    progress_close(&prog);

    if (cfg->plot) {
        if (plot_run(cfg->run_dir, err, sizeof err) == 0)
            printf("plot: %s/loss.png\n", cfg->run_dir);
        else
            fprintf(stderr, "pebble: warning: no plot: %s\n", err);
    }
    printf("done: %d steps, %lld tokens%s", cfg->steps, tokens_seen, last_val >= 0 ? "" : "\n");
    if (last_val >= 0) printf(", final val loss %.4f\n", last_val);

    free(inputs);
    free(targets);
    adamw_free(&opt, &model);
    gpt2_free(&model);
    loader_close(train);
    if (val) loader_close(val);
    return 0;
}
