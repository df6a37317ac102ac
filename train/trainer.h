// trainer.h: the training loop of `pebble train`.
#ifndef PEBBLE_TRAINER_H
#define PEBBLE_TRAINER_H

#include "kernels/ops.h"
#include "model/gpt2.h"
#include "train/config.h"

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

// The op table the config asks for, and the model shape from the config.
const pb_ops *trainer_backend(const pb_config *cfg);
void trainer_model_config(const pb_config *cfg, gpt2_config *mc);

#endif
