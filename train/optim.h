// optim.h: AdamW over a model's parameter table, global-norm clipping, and the learning
// rate schedule (linear warmup, then cosine decay to a floor).
#ifndef PEBBLE_OPTIM_H
#define PEBBLE_OPTIM_H

#include "model/gpt2.h"

typedef struct pb_adamw {
    float lr, beta1, beta2, eps, weight_decay;
    float *m, *v;  // first and second moments, same layout as the parameters (backend memory)
    int t;         // steps taken
    // scratch for the op's segment table (where each parameter tensor ends, its weight
    // decay), filled from the model's parameter table and weight_decay at every step
    int nseg;
    size_t *seg_end;
    float *seg_wd;
} pb_adamw;

void adamw_init(pb_adamw *o, const gpt2 *model, float beta1, float beta2, float eps,
                float weight_decay);
void adamw_free(pb_adamw *o, const gpt2 *model);
// One step at learning rate lr, all parameters in one op call: decay only on the parameters
// the table marks (2-D weights).
void adamw_step(pb_adamw *o, gpt2 *model, float lr);

// The gradients' global L2 norm; when clip > 0 and the norm exceeds it, scales them by
// clip / (norm + 1e-6) (as torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
float optim_clip_grad_norm(gpt2 *model, float clip);

// Learning rate at step (0-based) of `steps`: linear warmup to max_lr over warmup steps,
// then cosine decay from max_lr to max_lr * min_lr_frac at the last step.
double lr_schedule(int step, int steps, int warmup, double max_lr, double min_lr_frac);

#endif
