// checkpoint.h: checkpoints in HDF5: atomic save (temp file, fsync, rename, `latest`
// pointer, keep the last K), all-or-nothing load with every checksum and shape verified.
//
// File layout (format "pebble-checkpoint", version 1; README.md "Checkpoints" says more):
//   /                     attributes: format, version, model_family, pebble_version
//   /config               attributes: ini (the run's effective INI text), n_layer, n_head,
//                         n_embd, seq_len, vocab_size
//   /model/<name>         fp32, named and shaped as GPT2LMHeadModel's state_dict: Conv1D
//                         weights (in, out), transformer.wte.weight (V, C) (unpadded)
//   /optimizer            attributes: t, beta1, beta2, eps, weight_decay
//   /optimizer/m/<name>   AdamW first moments, same names and shapes as /model
//   /optimizer/v/<name>   AdamW second moments
//   /trainer              attributes: step, tokens_seen, seed, loader_seed, loader_epoch,
//                         loader_cursor, lr, schedule, total_steps, warmup_steps, max_lr,
//                         min_lr_frac
// Every dataset is chunked with a Fletcher32 checksum, which HDF5 verifies on each read;
// the file is in the HDF5 1.8 format, whose metadata (attributes included) is checksummed.
#ifndef PEBBLE_CHECKPOINT_H
#define PEBBLE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/loader.h"
#include "model/params.h"
#include "train/config.h"
#include "train/optim.h"

#define CKPT_FORMAT "pebble-checkpoint"
#define CKPT_VERSION 1

// What the training loop needs, besides weights and moments, to continue exactly.
// There is no RNG state beyond the seed: initialisation and data order are functions of
// (seed, step), and the training step itself draws no random numbers.
typedef struct pb_ckpt_trainer_state {
    int64_t step;         // optimizer steps completed
    int64_t tokens_seen;  // training tokens consumed
    uint64_t seed;        // train.seed of the run
    pb_loader_state train_loader;  // the training loader's position after `step` steps
    // The schedule is a pure function of the step and these; they are stored so that a
    // resume can tell when the config changed them.
    double lr;            // learning rate of the last step taken
    int64_t total_steps;
    int64_t warmup_steps;
    double max_lr;
    double min_lr_frac;
} pb_ckpt_trainer_state;

// The model a checkpoint holds: its family and the shape keys of /config.
typedef struct ckpt_model_info {
    char family[32];  // model_family: "gpt2", ...
    int n_layer, n_head, n_embd, seq_len, vocab_size;
} ckpt_model_info;

// Writes <dir>/ckpt_<step, 8 digits>.h5 atomically (temp file in dir, flush, fsync,
// rename, fsync dir), points <dir>/latest at it, then deletes all but the newest
// keep_last checkpoints older than it (keep_last <= 0 keeps all). dir must exist.
// path_out (may be NULL) receives the file's path. Returns 0, or -1 with one line in err;
// on failure no temp file is left and the previous checkpoints and `latest` are untouched.
// The store's weights, moments and step count (ps->m must exist: adamw_init), its family as
// model_family, and cfg's shape keys and INI text as /config.
int ckpt_save(const char *dir, const pb_params *ps, const pb_adamw *opt,
              const pb_ckpt_trainer_state *st, const pb_config *cfg, int keep_last,
              char *path_out, size_t path_len, char *err, size_t errlen);

// The same checkpoint at exactly path (temp file beside it, fsync, rename), without `latest`
// or pruning: for files made outside a run (pebble import). Returns 0, or -1 with err.
int ckpt_save_as(const char *path, const pb_params *ps, const pb_adamw *opt,
                 const pb_ckpt_trainer_state *st, const pb_config *cfg, char *err,
                 size_t errlen);

// A checkpoint to start from, not to resume, at exactly path: ps's weights at step 0 with
// zero AdamW moments and cfg (train --init, sample, eval take it; pebble import and
// pebble lra upsample-pos write it). An existing path is never replaced. 0, or -1 with err.
int ckpt_save_start(const char *path, pb_params *ps, const pb_config *cfg, char *err,
                    size_t errlen);

// Loads a checkpoint into a parameter store already built with the expected table (ps),
// with its AdamW moments and step count when with_optimizer (ps->m must exist), and st (may
// be NULL). Reads everything into host temporaries and verifies it (format, the family is
// ps->family, every dataset present, no extra ones, shapes, dtype, checksums) before touching
// ps, so a failed load changes nothing. Returns 0, or -1 with one line in err naming the
// file and what is wrong (another family: "a checkpoint of model family 'x'; this model is y").
int ckpt_load(const char *path, pb_params *ps, int with_optimizer, pb_ckpt_trainer_state *st,
              char *err, size_t errlen);
// The weights a new run starts from (`pebble train --init`): as ckpt_load without optimizer
// or trainer state, except that the model's head tensors (pb_param.head: BERT's MLM head,
// pooler and classifier) the checkpoint lacks keep the values ps holds (its init), counted in
// *skipped, and the checkpoint's own other tensors are ignored: a masked-LM checkpoint
// starts a classifier. Every other tensor must be there with its shape.
int ckpt_load_init(const char *path, pb_params *ps, int *skipped, char *err, size_t errlen);

// The stored run configuration: *ini (may be NULL; free() it) gets the INI text, mi (may be
// NULL) the family and model shape. Returns 0, or -1 with one line in err.
int ckpt_read_config(const char *path, char **ini, ckpt_model_info *mi, char *err,
                     size_t errlen);

// Applies the checkpoint's stored run configuration (/config's INI text) onto cfg, as
// config_load_file does a file: for `pebble train --resume FILE` without -c. Returns 0, or
// -1 with one line in err.
int ckpt_load_config(const char *path, pb_config *cfg, char *err, size_t errlen);

// The inverse: internal (p's layout, numel floats) from the Hugging Face layout (hf_shape):
// Conv1D weights transposed, the padding rows of an embedding zero.
void ckpt_param_from_hf(const pb_param *p, const float *hf, float *internal);

// p's tensor in the Hugging Face layout (hf_shape, row-major) into out: Conv1D weights
// transposed, wte without its padding rows. internal is the host copy of the tensor.
void ckpt_param_to_hf(const pb_param *p, const float *internal, float *out);

// The checkpoints of dir in the order a resume tries them: the one `latest` names, then
// every other ckpt_*.h5, newest first. Returns how many (0 also when dir does not exist),
// their paths in *paths (free with ckpt_free_candidates), or -1 with err on an IO error.
int ckpt_candidates(const char *dir, char ***paths, char *err, size_t errlen);
void ckpt_free_candidates(char **paths, int n);

// The checkpoint to resume from in dir: the first candidate that opens as a pebble
// checkpoint with all its groups (a cheap check; checksums are verified by ckpt_load).
// Returns 0 with its path in out, 1 when there is none (or dir does not exist), -1 with err
// on an IO error.
int ckpt_find_latest(const char *dir, char *out, size_t outlen, char *err, size_t errlen);

// Loads path into the caller's state, all or nothing: 0, or -1 with "<path>: <why>" in err.
typedef int (*ckpt_try_fn)(const char *path, void *user, char *err, size_t errlen);

// `--resume auto`: tries the candidates of dir in order with try_load, so that a damaged
// newest checkpoint falls back to the one before it. Each that fails is reported on skipped
// (NULL: silently) as "pebble: skipping checkpoint <path>: <why>". Returns 0 with the path
// that loaded in out; 1 when dir has no checkpoint; -1 with one line in err when none loads
// (bad data); -2 with err when dir cannot be listed (IO).
int ckpt_resume_auto(const char *dir, ckpt_try_fn try_load, void *user, FILE *skipped,
                     char *out, size_t outlen, char *err, size_t errlen);

// A checkpoint named on a command line: a file as it is, or in a run directory the newest
// one whose config reads (each damaged one named on skipped, as --resume auto does). Returns
// 0 with the path in out, or an exit code (PB_EXIT_DATA: none loads / none there;
// PB_EXIT_RUNTIME: the directory cannot be listed) with one line in err.
int ckpt_pick(const char *arg, FILE *skipped, char *out, size_t outlen, char *err,
              size_t errlen);

#endif
