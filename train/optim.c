// optim.c: AdamW, gradient clipping and the learning rate schedule (see optim.h).
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/common.h"

void adamw_init(pb_adamw *o, const gpt2 *model, float beta1, float beta2, float eps,
                float weight_decay) {
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->t = 0;
    size_t bytes = model->num_floats * sizeof(float);
    o->m = model->ops->alloc(bytes);  // zeroed
    o->v = model->ops->alloc(bytes);
    o->nseg = model->num_params;
    o->seg_end = pb_malloc(sizeof(size_t) * (size_t)o->nseg);
    o->seg_wd = pb_malloc(sizeof(float) * (size_t)o->nseg);
}

void adamw_free(pb_adamw *o, const gpt2 *model) {
    model->ops->free(o->m);
    model->ops->free(o->v);
    free(o->seg_end);
    free(o->seg_wd);
    o->m = o->v = NULL;
    o->seg_end = NULL;
    o->seg_wd = NULL;
}

void adamw_step(pb_adamw *o, gpt2 *model, float lr) {
    o->t++;
    o->lr = lr;
    PB_ASSERT(o->nseg == model->num_params);
    for (int i = 0; i < o->nseg; i++) {
        const pb_param *p = &model->params[i];
        PB_ASSERT(p->offset == (i ? o->seg_end[i - 1] : 0));  // the table is contiguous
        o->seg_end[i] = p->offset + p->numel;
        o->seg_wd[i] = p->decay ? o->weight_decay : 0.0f;
    }
    model->ops->adamw_update(model->params_mem, model->grads_mem, o->m, o->v, o->seg_end,
                             o->seg_wd, o->nseg, lr, o->beta1, o->beta2, o->eps, o->t);
    model->updates = (uint64_t)o->t;  // seeds the next rounding of low-precision weights
}

float optim_clip_grad_norm(gpt2 *model, float clip) {
    double norm = sqrt(model->ops->sumsq(model->grads_mem, model->num_floats));
    if (clip > 0.0f) {
        double coef = clip / (norm + 1e-6);
        if (coef < 1.0) model->ops->scale(model->grads_mem, (float)coef, model->num_floats);
    }
    return (float)norm;
}

double lr_schedule(int step, int steps, int warmup, double max_lr, double min_lr_frac) {
    if (step < warmup) return max_lr * (step + 1) / warmup;
    double min_lr = max_lr * min_lr_frac;
    if (steps - 1 <= warmup) return max_lr;
    double ratio = (double)(step - warmup) / (double)(steps - 1 - warmup);  // 0 .. 1
    if (ratio > 1.0) ratio = 1.0;
    return min_lr + 0.5 * (1.0 + cos(M_PI * ratio)) * (max_lr - min_lr);
}
