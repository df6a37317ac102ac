// optim.c: AdamW, gradient clipping and the learning rate schedule (see optim.h).
#include "train/optim.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"

void adamw_init(pb_adamw *o, pb_params *ps, float beta1, float beta2, float eps,
                float weight_decay) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    if (!ps->m) params_alloc_moments(ps);
    o->nseg = ps->num;
    o->seg_end = pb_malloc(sizeof(size_t) * (size_t)o->nseg);
    o->seg_wd = pb_malloc(sizeof(float) * (size_t)o->nseg);
}

void adamw_free(pb_adamw *o) {
    free(o->seg_end);
    free(o->seg_wd);
    o->seg_end = NULL;
    o->seg_wd = NULL;
}

void adamw_step(pb_adamw *o, pb_params *ps, float lr) {
    ps->step++;
    o->lr = lr;
    PB_ASSERT(o->nseg == ps->num && ps->m);
    for (int i = 0; i < o->nseg; i++) {
        const pb_param *p = &ps->tab[i];
        PB_ASSERT(p->offset == (i ? o->seg_end[i - 1] : 0));  // the table is contiguous
        o->seg_end[i] = p->offset + p->numel;
        o->seg_wd[i] = p->decay ? o->weight_decay : 0.0f;
    }
    PB_ASSERT(ps->step <= INT32_MAX);
    ps->ops->adamw_update(ps->mem, ps->grad, ps->m, ps->v, o->seg_end, o->seg_wd, o->nseg, lr,
                          o->beta1, o->beta2, o->eps, (int)ps->step);
}

void adamw_step_range(pb_adamw *o, pb_params *ps, float lr, size_t lo, size_t hi) {
    PB_ASSERT(ps->m && ps->v);
    adamw_step_shard(o, ps, lr, lo, hi, ps->m + lo, ps->v + lo);
}

void adamw_step_shard(pb_adamw *o, pb_params *ps, float lr, size_t lo, size_t hi, float *m,
                      float *v) {
    ps->step++;
    o->lr = lr;
    PB_ASSERT(o->nseg == ps->num && m && v && lo <= hi && hi <= ps->num_floats);
    // The tensors that overlap [lo, hi), each cut to it, as segments from lo.
    int n = 0;
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        size_t a = p->offset, b = p->offset + p->numel;
        if (b <= lo || a >= hi) continue;
        o->seg_end[n] = (b < hi ? b : hi) - lo;
        o->seg_wd[n] = p->decay ? o->weight_decay : 0.0f;
        n++;
    }
    PB_ASSERT(ps->step <= INT32_MAX);
    if (n == 0) return;
    ps->ops->adamw_update(ps->mem + lo, ps->grad + lo, m, v, o->seg_end, o->seg_wd, n, lr,
                          o->beta1, o->beta2, o->eps, (int)ps->step);
}

float optim_clip_grad_norm(pb_params *ps, float clip) {
    return optim_clip_by_sumsq(ps, clip, optim_grad_sumsq(ps, 0, ps->num_floats), 0,
                               ps->num_floats);
}

double optim_grad_sumsq(const pb_params *ps, size_t lo, size_t hi) {
    PB_ASSERT(lo <= hi && hi <= ps->num_floats);
    return hi > lo ? ps->ops->sumsq(ps->grad + lo, hi - lo) : 0.0;
}

float optim_clip_by_sumsq(pb_params *ps, float clip, double sumsq, size_t lo, size_t hi) {
    double norm = sqrt(sumsq);
    if (clip > 0.0f) {
        double coef = clip / (norm + 1e-6);
        if (coef < 1.0 && hi > lo) ps->ops->scale(ps->grad + lo, (float)coef, hi - lo);
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
