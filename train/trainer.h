// trainer.h: the training loop of `pebble train`.
#ifndef PEBBLE_TRAINER_H
#define PEBBLE_TRAINER_H

#include "kernels/ops.h"
#include "model/gpt2.h"
#include "train/config.h"

// Trains as the (validated) config says; exits with a clear message on bad data or IO.
int trainer_run(const pb_config *cfg);

// The op table the config asks for, and the model shape from the config.
const pb_ops *trainer_backend(const pb_config *cfg);
void trainer_model_config(const pb_config *cfg, gpt2_config *mc);

#endif
