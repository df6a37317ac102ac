// eval.c: `pebble eval` (see eval.h). The windows are those the trainer validates on: the
// data read in order from its start (no shuffle), B sequences of T = model.seq_len tokens
// per batch, and the loss is the mean of the batches' mean losses, as the trainer's
// validation computes it; so on the trainer's validation data, with its batch size and
// val_batches, eval prints the trainer's own last validation loss.
#include "train/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/feed.h"
#include "train/model.h"
#include "train/trainer.h"

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: pebble eval --ckpt FILE|RUN_DIR --data PATTERN [--batches N]\n"
            "                   [--batch-size B] [--json] [--set section.key=value ...]\n"
            "\n"
            "The checkpoint's loss on the data's validation windows: read in order from the\n"
            "start, B sequences of model.seq_len tokens per batch, as `pebble train` validates.\n"
            "  --ckpt RUN_DIR   the newest checkpoint there that reads (damaged ones skipped)\n"
            "  --batches N      batches to evaluate (default: the run's train.val_batches)\n"
            "  --batch-size B   sequences per batch (default: the run's train.batch_size)\n"
            "  --json           print the result as one JSON object\n"
            "  --set k=v        override a key of the checkpoint's config (system.device, ...)\n"
            "The model, device and precision are the checkpoint's configuration, then --set.\n"
            "Last line: loss L ppl P [accuracy A, for bert] tokens N (B x T per batch).\n");
}

// A positive integer option value, or a usage error naming the option.
static int positive(const char *opt, const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end || n < 1 || n > 1000000000)
        pb_die(PB_EXIT_USAGE, "eval: %s: '%s' is not a positive integer", opt, v);
    return (int)n;
}

int eval_main(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL;
    int batches = 0, batch_size = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            eval_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strcmp(a, "--ckpt") && strcmp(a, "--data") && strcmp(a, "--batches") &&
            strcmp(a, "--batch-size") && strcmp(a, "--set"))
            pb_die(PB_EXIT_USAGE, "eval: unknown option '%s' (see pebble eval --help)", a);
        if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "eval: %s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--ckpt") == 0) ckpt = v;
        else if (strcmp(a, "--data") == 0) data = v;
        else if (strcmp(a, "--batches") == 0) batches = positive(a, v);
        else if (strcmp(a, "--batch-size") == 0) batch_size = positive(a, v);
    }
    if (!ckpt || !data)
        pb_die(PB_EXIT_USAGE, "eval: --ckpt FILE|RUN_DIR and --data PATTERN are required (see "
               "pebble eval --help)");

    char path[PB_PATH_MAX + 300], err[2048];
    int rc = ckpt_pick(ckpt, stderr, path, sizeof path, err, sizeof err);
    if (rc != 0) pb_die(rc, "eval: %s", err);

    // --- the run's configuration, then --set
    pb_config cfg;
    config_defaults(&cfg);
    if (ckpt_load_config(path, &cfg, err, sizeof err) != 0) pb_die(PB_EXIT_DATA, "eval: %s", err);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) continue;
        if (strcmp(argv[i], "--set") == 0 && config_set(&cfg, argv[i + 1], err, sizeof err) != 0)
            pb_die(PB_EXIT_USAGE, "eval: %s", err);
        i++;
    }
    if (model_check_config(&cfg, err, sizeof err) != 0)
        pb_die(PB_EXIT_DATA, "eval: %s: /config: %s", path, err);
    if (batch_size) cfg.batch_size = batch_size;
    if (!batches) batches = cfg.val_batches;
    int B = cfg.batch_size, T = cfg.seq_len;
    // eval never drops: a kernel that cannot drop attention probabilities must not be refused
    cfg.attn_dropout = 0;

    // --- data, model, weights
    pb_feed *val = feed_open(&cfg, data, B, 0, 0, 1, err, sizeof err);
    if (!val) pb_die(PB_EXIT_DATA, "eval: %s", err);
    batches = trainer_val_batches(feed_num_batches(val), batches, B, T, "--batches", data, stderr);
    const pb_ops *ops = trainer_backend(&cfg);
    pb_model m;
    model_build(&m, &cfg, ops);
    if (!model_attention(&m, B, T, err, sizeof err)) pb_die(PB_EXIT_USAGE, "eval: %s", err);
    pb_ckpt_trainer_state st;
    if (ckpt_load(path, m.p, 0, &st, err, sizeof err) != 0)
        pb_die(PB_EXIT_DATA, "eval: %s", err);
    // Low-precision weights round as the run rounded them after its last step.
    m.p->round_seed = cfg.seed;
    m.p->step = (uint64_t)st.step;
    fprintf(stderr, "eval: %s (step %lld) on %s | %s | %s backend | %d batches of %d x %d\n",
            path, (long long)st.step, data, feed_task_name(feed_task_of(&cfg)), ops->name,
            batches, B, T);

    pb_batch b;
    batch_alloc(&b, B, T);
    double acc;
    double loss = trainer_evaluate(&m, val, 0, batches, &b, &acc, NULL);
    long long tokens = (long long)batches * B * T;
    if (json) {
        printf("{\"ckpt\": \"%s\", \"step\": %lld, \"loss\": %.6f, \"ppl\": %.6f, ", path,
               (long long)st.step, loss, exp(loss));
        if (acc >= 0) printf("\"accuracy\": %.6f, ", acc);
        printf("\"tokens\": %lld, \"batches\": %d}\n", tokens, batches);
    } else {
        printf("loss %.6f ppl %.4f", loss, exp(loss));
        if (acc >= 0) printf(" accuracy %.6f", acc);
        printf(" tokens %lld\n", tokens);
    }
    batch_free(&b);
    model_free(&m);
    feed_close(val);
    return 0;
}
