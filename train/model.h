// model.h: the model of a run, whatever its family, for the commands that only train or
// evaluate it (train, eval): built from the [model] keys of a run config, one forward and
// backward over a batch, the accuracy of heads that predict a class, and the parameter store
// that the optimizer, checkpoints and export take. The families stay plain structs
// (model/gpt2.h, model/bert.h); this is the one switch over them.
#ifndef PEBBLE_TRAIN_MODEL_H
#define PEBBLE_TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model/bert.h"
#include "model/gpt2.h"
#include "train/config.h"

typedef enum { MODEL_GPT2 = 0, MODEL_BERT = 1 } model_family;

typedef struct pb_model {
    model_family family;
    gpt2 gpt2;
    bert bert;
    pb_params *p;  // the family's store
} pb_model;

// The family configs from a run config (every key already validated).
void model_gpt2_config(const pb_config *cfg, gpt2_config *mc);
void model_bert_config(const pb_config *cfg, bert_config *mc);

// Whether the [model] keys of cfg describe a model that can be built (family, sizes, heads
// dividing the channels, positions): for configs read back from a checkpoint, which never
// went through config_validate's run checks. 0, or -1 with one line in err.
int model_check_config(const pb_config *cfg, char *err, size_t errlen);
// Builds (zeroed parameters) on ops' backend; model_init_weights then draws them from seed.
void model_build(pb_model *m, const pb_config *cfg, const pb_ops *ops);
void model_init_weights(pb_model *m, uint64_t seed);
void model_free(pb_model *m);

// One forward over B sequences of T tokens. lm: targets (B,T) the next tokens; mlm: targets
// (B,T) the masked positions' tokens, -1 elsewhere; classify: labels (B). lengths (B) the
// unpadded length of each sequence (bert; NULL = T). Returns the mean loss.
double model_forward(pb_model *m, const int32_t *inputs, const int32_t *targets,
                     const int32_t *lengths, const int32_t *labels, int B, int T);
void model_backward(pb_model *m, float loss_scale);
// The dropout of the next forwards (and their backwards): on, model.dropout with masks drawn
// from key (the trainer's: one per step and micro-batch, model_dropout_key); off, none (a
// model starts so: validation, evaluation and sampling never drop).
void model_set_dropout(pb_model *m, int on, uint64_t key);
// The key of a training micro-batch: the run's seed, the step, and the step-global index of
// its first row (mlm_first_row), so that N ranks drop what one rank accumulating N would.
uint64_t model_dropout_key(uint64_t seed, uint64_t step, uint64_t first_row);
// fn(ctx, l) after the backward has queued the last op writing block l's weight gradients
// (blocks L-1 down to 0; fn NULL: none): the data-parallel path's hook (train/dist_nccl.h).
void model_set_layer_hook(pb_model *m, void (*fn)(void *ctx, int layer), void *ctx);
// The blocks' gradient ranges in the store: lo[l], hi[l] in floats for l < L (arrays of at
// least L). Returns L, or 0 when a block's tensors are not one contiguous range.
int model_layer_spans(const pb_model *m, size_t *lo, size_t *hi);
int model_num_layers(const pb_model *m);
// Of the last forward's predictions (mlm: the chosen positions; classify: the sequences),
// how many were right. 0 of 0 for gpt2 (its accuracy is not reported).
void model_accuracy(pb_model *m, long *correct, long *count);
int model_has_accuracy(const pb_model *m);

// The attention implementation that runs (B,T), or NULL with one line in err.
const pb_attn_impl *model_attention(const pb_model *m, int B, int T, char *err, size_t errlen);
// "gpt2 L4 H4 C128 T128 V50257 (padded 50304)", as the trainer's banner prints it.
void model_describe(const pb_model *m, char *buf, size_t n);
size_t model_num_trainable(const pb_model *m);
// FLOPs of one training token (forward and backward): 6 per parameter plus attention's
// 12 L C T (PaLM's count), for the trainer's CPU estimate and benchmarks' MFU.
double model_flops_per_token(const pb_model *m, int T);

#endif
