// params.c: the parameter store (see params.h).
#include "model/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"

void params_init(pb_params *ps, const char *family, const pb_ops *ops) {
    memset(ps, 0, sizeof *ps);
    snprintf(ps->family, sizeof ps->family, "%s", family);
    ps->ops = ops;
}

void params_add(pb_params *ps, const char *name, int rows, int cols, int hf_transposed,
                int hf_rows, int decay) {
    PB_ASSERT(!ps->mem && rows > 0 && cols >= 0);
    if (ps->num == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 64;
        ps->tab = realloc(ps->tab, (size_t)ps->cap * sizeof(pb_param));
        if (!ps->tab) pb_die(PB_EXIT_RUNTIME, "out of memory");
    }
    pb_param *p = &ps->tab[ps->num++];
    memset(p, 0, sizeof *p);
    PB_ASSERT(strlen(name) < sizeof p->name);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = cols ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->hf_shape[0] = hf_transposed ? cols : hf_rows;
    p->hf_shape[1] = hf_transposed ? rows : cols;
    p->hf_transposed = hf_transposed;
    p->offset = ps->num_floats;
    p->numel = (size_t)rows * (size_t)(cols ? cols : 1);
    p->decay = decay;
    ps->num_floats += p->numel;
    if (!hf_transposed && hf_rows < rows)
        ps->num_padding += (size_t)(rows - hf_rows) * (size_t)(cols ? cols : 1);
}

void params_alloc(pb_params *ps) {
    const pb_ops *ops = ps->ops;
    size_t bytes = ps->num_floats * sizeof(float);
    ps->mem = ops->alloc(bytes);
    ps->grad = ops->alloc(bytes);
    if (ops->act_dtype != PB_DTYPE_FP32) ps->act = ops->alloc(ps->num_floats * pb_act_bytes(ops));
}

void params_alloc_moments(pb_params *ps) {
    PB_ASSERT(ps->mem && !ps->m);
    ps->m = ps->ops->alloc(ps->num_floats * sizeof(float));
    ps->v = ps->ops->alloc(ps->num_floats * sizeof(float));
}

void params_free(pb_params *ps) {
    const pb_ops *ops = ps->ops;
    float *bufs[] = {ps->mem, ps->grad, ps->m, ps->v, ps->act};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) ops->free(bufs[i]);
    free(ps->tab);
    memset(ps, 0, sizeof *ps);
}

const pb_param *params_find(const pb_params *ps, const char *name) {
    for (int i = 0; i < ps->num; i++)
        if (strcmp(ps->tab[i].name, name) == 0) return &ps->tab[i];
    return NULL;
}

float *params_at(const pb_params *ps, const void *base, size_t elem_bytes, int i) {
    PB_ASSERT(i >= 0 && i < ps->num);
    return (float *)((char *)base + ps->tab[i].offset * elem_bytes);
}

size_t params_num_trainable(const pb_params *ps) { return ps->num_floats - ps->num_padding; }

void params_zero_grad(pb_params *ps) { ps->ops->zero(ps->grad, ps->num_floats * sizeof(float)); }

void params_round(pb_params *ps) {
    if (!ps->act) return;
    ps->ops->params_to_act(ps->act, ps->mem, ps->num_floats,
                           ps->round_seed * 0x9E3779B97F4A7C15ull + ps->step);
}
