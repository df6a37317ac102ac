// optim.h: AdamW over a parameter store (model/params.h), global-norm clipping, and the
// learning rate schedule (linear warmup, then cosine decay to a floor).
#ifndef PEBBLE_OPTIM_H
#define PEBBLE_OPTIM_H

#include "model/params.h"

// The hyperparameters. The state AdamW updates (weights, moments m and v, the step count t)
// belongs to the store: ps->mem, ps->m, ps->v, ps->step.
typedef struct pb_adamw {
    float lr, beta1, beta2, eps, weight_decay;
    // scratch for the op's segment table (where each parameter tensor ends, its weight
    // decay), filled from the store's table and weight_decay at every step
    int nseg;
    size_t *seg_end;
    float *seg_wd;
} pb_adamw;

// Allocates the store's moments (zeroed) when it has none.
void adamw_init(pb_adamw *o, pb_params *ps, float beta1, float beta2, float eps,
                float weight_decay);
void adamw_free(pb_adamw *o);
// One step at learning rate lr, all parameters in one op call: decay only on the parameters
// the table marks (2-D weights). Advances ps->step.
void adamw_step(pb_adamw *o, pb_params *ps, float lr);
// The same step on the elements [lo, hi) of the buffers only (a ZeRO-1 shard: a tensor cut
// by a shard boundary is a segment on each side). AdamW is elementwise, so the shards' updates
// together are adamw_step's bits. Advances ps->step.
void adamw_step_range(pb_adamw *o, pb_params *ps, float lr, size_t lo, size_t hi);
// The same with the shard's own moments: m, v (hi - lo,) hold elements lo .. hi-1 (ZeRO-1 on
// the GPU, where each rank allocates only its shard of them).
void adamw_step_shard(pb_adamw *o, pb_params *ps, float lr, size_t lo, size_t hi, float *m,
                      float *v);

// The gradients' global L2 norm; when clip > 0 and the norm exceeds it, scales them by
// clip / (norm + 1e-6) (as torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
float optim_clip_grad_norm(pb_params *ps, float clip);
// The pieces of it for a gradient held in shards: the sum of squares of grad[lo, hi), and the
// clip of grad[lo, hi) given the sum of squares of the whole (every shard's added). With
// [0, num_floats) the two are optim_clip_grad_norm's bits.
double optim_grad_sumsq(const pb_params *ps, size_t lo, size_t hi);
float optim_clip_by_sumsq(pb_params *ps, float clip, double sumsq, size_t lo, size_t hi);

// Learning rate at step (0-based) of `steps`: linear warmup to max_lr over warmup steps,
// then cosine decay from max_lr to max_lr * min_lr_frac at the last step.
double lr_schedule(int step, int steps, int warmup, double max_lr, double min_lr_frac);

#endif
