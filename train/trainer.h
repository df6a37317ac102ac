// trainer.h: the training loop of `pebble train`.
#ifndef PEBBLE_TRAINER_H
#define PEBBLE_TRAINER_H

#include "kernels/ops.h"
#include "data/batch.h"
#include "data/loader.h"
#include "model/gpt2.h"
#include "train/config.h"
#include "train/feed.h"
#include "train/model.h"

// Where a run starts. resume: "auto" (the newest checkpoint in run.dir that loads and
// verifies, damaged ones skipped with a line each; none at all: a new run) or a checkpoint
// file, restoring weights, AdamW state, step and data position; init: a checkpoint whose
// weights start a new run. Both NULL: a new run from the seed. A new run into a run.dir that
// holds checkpoints is refused unless force (then the old run's files are archived).
typedef struct pb_train_start {
    const char *resume;
    const char *init;
    int force;
} pb_train_start;

// Trains as the (validated) config says; exits with a clear message on bad data or IO.
// Checkpoints go to run.dir every checkpoint.every steps, at the end, and on SIGINT or
// SIGTERM (seen after each micro-batch and validation batch: an unfinished step is dropped,
// the last finished one is checkpointed, and it returns 0). run.dir is locked for the run.
int trainer_run(const pb_config *cfg);  // a new run
int trainer_run_from(const pb_config *cfg, const pb_train_start *start);

// The op table the config asks for.
const pb_ops *trainer_backend(const pb_config *cfg);
// Validation batches: batches, or all that the data holds (have) when it holds fewer (a note
// on `note` naming what (the key or flag) and pattern). The trainer and `pebble eval` both
// use it, so that they average the same windows.
int trainer_val_batches(uint64_t have, int batches, int B, int T, const char *what,
                        const char *pattern, FILE *note);

// The mean loss over the first `batches` batches of f (read from its start, validation masks),
// and in *acc the accuracy over them (-1 when the task has none): the trainer's validation
// and `pebble eval`. b holds B x T. A stop signal in a run abandons it (NAN). With d (NULL:
// one rank) the ranks share the batches and every rank gets the one-rank result to the bit.
struct pb_dist;
double trainer_evaluate(pb_model *model, pb_feed *f, int step, int batches, pb_batch *b,
                        double *acc, struct pb_dist *d);

// The GPT-2 shape stored in the checkpoint at path (its /config), for the commands that
// build a model from a checkpoint (sample, export, eval's checks). Returns 0, or -1 with one
// line in err: not a readable checkpoint, another model family, or n_embd not a multiple
// of n_head.
int trainer_model_from_ckpt(const char *path, gpt2_config *mc, char *err, size_t errlen);

#endif
