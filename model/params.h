// params.h: the parameter store, model-neutral. A model (gpt2.c, later bert.c) fills a named
// tensor table; the store owns everything that lives as long as the parameters do:
//   - the fp32 master weights and their gradients, one allocation each, same layout;
//   - the AdamW moments m and v (same layout; allocated when an optimizer asks);
//   - in mixed precision, the copy of the weights the ops read (act_dtype) and the seed and
//     step count that fix its stochastic rounding;
//   - the op table whose memory all of it is in.
// The optimizer, checkpoints and export take a pb_params, never a model: one owner for each
// piece of state, and each of them works for every family.
#ifndef PEBBLE_PARAMS_H
#define PEBBLE_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

// One parameter tensor. The name and the shape a Hugging Face state_dict gives it (hf_shape)
// may differ from pebble's internal layout (shape):
//   - GPT-2's Conv1D weights are (in, out) there and (out, in) here, so matmul_forward reads
//     rows;
//   - an embedding padded to Vp rows here has V rows there (the padding rows stay zero).
typedef struct pb_param {
    char name[64];     // e.g. "transformer.h.0.attn.c_attn.weight"
    int ndim;          // 1 or 2
    int shape[2];      // internal, row-major
    int hf_shape[2];   // as in the Hugging Face state_dict
    int hf_transposed; // 1: internal = transpose of the Hugging Face tensor
    size_t offset;     // in floats, from the start of the one allocation
    size_t numel;
    int decay;         // AdamW weight decay applies
    int head;          // a task head's (BERT's MLM head, pooler, classifier): a run that
                       // starts from another head's checkpoint (--init) draws it fresh
} pb_param;

typedef struct pb_params {
    char family[16];     // model.family: "gpt2", ... (checkpoints record and check it)
    char shape[160];     // the model's shape in words, for messages ("n_layer=4 n_head=4 ...")
    const pb_ops *ops;   // the backend all the memory below belongs to
    int num, cap;
    pb_param *tab;       // [num]
    size_t num_floats;   // elements of every tensor together
    size_t num_padding;  // of those, padding (rows no token maps to): not trainable
    float *mem;          // fp32 master weights (backend memory)
    float *grad;         // their gradients, same layout
    float *m, *v;        // AdamW moments, same layout; NULL until params_alloc_moments
    // Mixed precision (ops->act_dtype != fp32): the weights the ops read, rounded from mem at
    // each forward (params_round). NULL with an fp32 table: the ops read mem.
    float *act;
    uint64_t round_seed;  // seeds the rounding (the model's init seed)
    uint64_t step;        // optimizer steps applied: AdamW's t, and the rounding's other half
} pb_params;

void params_init(pb_params *ps, const char *family, const pb_ops *ops);
// Appends a tensor of rows x cols (cols 0: a vector of rows). hf_rows is its row count in the
// Hugging Face state_dict when not transposed (V for a padded embedding); hf_transposed: it
// is stored there as (cols, rows).
void params_add(pb_params *ps, const char *name, int rows, int cols, int hf_transposed,
                int hf_rows, int decay);
// Allocates (zeroed) the weights, the gradients and, in mixed precision, the act copy.
void params_alloc(pb_params *ps);
void params_alloc_moments(pb_params *ps);  // m and v, zeroed; once
void params_free(pb_params *ps);

const pb_param *params_find(const pb_params *ps, const char *name);
// The tensor i of a buffer laid out like the table (mem, grad, act, m, v) whose elements are
// elem_bytes wide.
float *params_at(const pb_params *ps, const void *base, size_t elem_bytes, int i);
size_t params_num_trainable(const pb_params *ps);  // num_floats - num_padding

void params_zero_grad(pb_params *ps);
// act = mem in the activation type, stochastically rounded with (round_seed, step): the same
// masters and step give the same bits, so calling it before each forward keeps act right
// after any change to mem (optimizer, checkpoint load). No-op with an fp32 table.
void params_round(pb_params *ps);
// The weights the ops read: act in mixed precision, else mem.
static inline float *params_read(const pb_params *ps) { return ps->act ? ps->act : ps->mem; }

#endif
