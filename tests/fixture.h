// fixture.h: the reader of the PyTorch fixtures (tests/fixtures/*.bin, written by
// gen_gpt2_fixture.py and gen_block_fixture.py): magic "PBFX", u32 count, then per record
// u32 name length, the name, u32 dtype (0 float32, 1 int32), u32 ndim, u32 dims[ndim], the
// data, little endian. Header-only, static: each suite that includes it reads one file.
#ifndef PEBBLE_TESTS_FIXTURE_H
#define PEBBLE_TESTS_FIXTURE_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "kernels/common.h"
#include "model/params.h"

typedef struct fx_record {
    char name[128];
    int dtype;  // 0 float32, 1 int32
    int ndim;
    int dims[4];
    size_t numel;
    void *data;
} fx_record;

#define FX_MAX 1024
static fx_record fx[FX_MAX];
static int fx_count;

// Reads path once (later calls return at once).
static void fx_load(const char *path) {
    if (fx_count) return;
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (run from the repository root)", path);
    char magic[4];
    uint32_t count;
    cr_assert(fread(magic, 1, 4, f) == 4 && memcmp(magic, "PBFX", 4) == 0);
    cr_assert(fread(&count, 4, 1, f) == 1 && count <= FX_MAX);
    for (uint32_t i = 0; i < count; i++) {
        fx_record *r = &fx[i];
        uint32_t len, dtype, ndim, dim;
        cr_assert(fread(&len, 4, 1, f) == 1 && len < sizeof r->name);
        cr_assert(fread(r->name, 1, len, f) == len);
        r->name[len] = '\0';
        cr_assert(fread(&dtype, 4, 1, f) == 1 && fread(&ndim, 4, 1, f) == 1 && ndim <= 4);
        r->dtype = (int)dtype;
        r->ndim = (int)ndim;
        r->numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            cr_assert(fread(&dim, 4, 1, f) == 1);
            r->dims[d] = (int)dim;
            r->numel *= dim;
        }
        r->data = malloc(r->numel * 4);
        cr_assert(fread(r->data, 4, r->numel, f) == r->numel);
    }
    fx_count = (int)count;
    fclose(f);
}

static const fx_record *fx_get(const char *name) {
    for (int i = 0; i < fx_count; i++)
        if (strcmp(fx[i].name, name) == 0) return &fx[i];
    cr_assert_fail("fixture has no record %s", name);
    return NULL;
}

// --- fixtures of whole models: tensors named as the parameter table names them, in the
// Hugging Face layout

// Copies tensor hf (Hugging Face layout) into pebble's layout of parameter p at dst.
static void fx_hf_to_internal(const pb_param *p, const float *hf, float *dst) {
    if (p->hf_transposed) {
        for (int i = 0; i < p->shape[0]; i++)
            for (int j = 0; j < p->shape[1]; j++)
                dst[(size_t)i * p->shape[1] + j] = hf[(size_t)j * p->shape[0] + i];
    } else {
        size_t n = (size_t)p->hf_shape[0] * (p->ndim == 2 ? p->hf_shape[1] : 1);
        memcpy(dst, hf, n * sizeof(float));  // padding rows stay as they are (zero)
    }
}

// Every parameter of the (CPU) store from the records "<prefix><name>", shapes checked.
static void fx_load_params(pb_params *ps, const char *prefix) {
    char name[160];
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        const fx_record *r = fx_get(name);
        cr_assert_eq(r->ndim, p->ndim, "%s: ndim", p->name);
        for (int d = 0; d < p->ndim; d++)
            cr_assert_eq(r->dims[d], p->hf_shape[d], "%s: dim %d is %d, table says %d", p->name,
                         d, r->dims[d], p->hf_shape[d]);
        fx_hf_to_internal(p, r->data, ps->mem + p->offset);
    }
}

// max |a - b| / (max |b| + tiny) over a tensor given in Hugging Face layout (b).
static double rel_err_hf(const pb_param *p, const float *internal, const float *hf) {
    size_t n = (size_t)p->hf_shape[0] * (p->ndim == 2 ? p->hf_shape[1] : 1);
    float *tmp = calloc(p->numel, sizeof(float));
    fx_hf_to_internal(p, hf, tmp);
    double maxdiff = 0.0, maxref = 0.0;
    for (size_t i = 0; i < n; i++) {
        maxdiff = fmax(maxdiff, fabs((double)internal[i] - tmp[i]));
        maxref = fmax(maxref, fabs((double)tmp[i]));
    }
    free(tmp);
    return maxdiff / (maxref + 1e-12);
}

// Directional derivatives of the loss, one per parameter tensor, against the gradients in
// ps->grad (of the same loss, computed before the call): d has random +-1 entries, so d.grad
// is of the size of |grad|_2 and an error e in the gradient shows as e.d. Central
// differences of the fp32 model (step h, the loss summed in double): truncation O(h^2) and
// rounding ~1e-7 |loss| / h; h = 5e-4 balances them. Padding rows are left alone, and so are
// the tensors whose name contains skip (if not NULL).
static void fx_check_finite_differences(pb_params *ps, double (*loss)(void *), void *ctx,
                                        const char *skip) {
    float *grads = malloc(ps->num_floats * sizeof(float));
    memcpy(grads, ps->grad, ps->num_floats * sizeof(float));
    pb_rng rng;
    pb_rng_seed(&rng, 99);
    const double h = 5e-4;
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        if (skip && strstr(p->name, skip)) continue;
        float *x = ps->mem + p->offset;
        size_t n = (size_t)p->hf_shape[0] * (p->ndim == 2 ? p->hf_shape[1] : 1);
        if (p->hf_transposed) n = p->numel;
        float *x0 = malloc(n * sizeof(float));
        signed char *d = malloc(n);
        memcpy(x0, x, n * sizeof(float));
        double gd = 0.0, gnorm = 0.0;
        for (size_t j = 0; j < n; j++) {
            d[j] = (pb_rng_u64(&rng) & 1) ? 1 : -1;
            gd += (double)d[j] * grads[p->offset + j];
            gnorm += (double)grads[p->offset + j] * grads[p->offset + j];
        }
        for (size_t j = 0; j < n; j++) x[j] = (float)(x0[j] + h * d[j]);
        double lp = loss(ctx);
        for (size_t j = 0; j < n; j++) x[j] = (float)(x0[j] - h * d[j]);
        double lm = loss(ctx);
        memcpy(x, x0, n * sizeof(float));
        double fd = (lp - lm) / (2 * h);
        double tol = 2e-3 * sqrt(gnorm) + 1e-4;  // 2e-3 |grad|_2, plus the rounding floor
        cr_expect(fabs(fd - gd) <= tol, "%s: finite difference %.8g, analytic %.8g (tol %.3g)",
                  p->name, fd, gd, tol);
        free(x0);
        free(d);
    }
    free(grads);
}

#endif
