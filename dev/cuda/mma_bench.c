// mma_bench.c: the mma.sync attention of dev/cuda/flash_mma_cuda.cu against the production
// wgmma kernels on the same bf16 inputs: largest difference of out, lse and dqkv, and the
// forward and forward+backward times of each. Build with `make dev-mma`; run on a Hopper GPU:
//   build/dev/cuda/mma_bench [T]       (B = 4, NH = 12 (D 64) and 6 (D 128), causal)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dev/cuda/flash_mma_cuda.h"
#include "kernels/attention/flash_cuda.h"
#include "kernels/cuda/cuda.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static uint16_t to_bf16(float x) {  // round to nearest even (finite inputs)
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// largest |a - b| over n bf16 elements of two device buffers
static double maxdiff16(const pb_ops *ops, const void *a, const void *b, size_t n) {
    uint16_t *x = malloc(n * 2), *y = malloc(n * 2);
    ops->download(x, a, n * 2), ops->download(y, b, n * 2);
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(from_bf16(x[i]) - from_bf16(y[i])));
    free(x), free(y);
    return m;
}

int main(int argc, char **argv) {
    if (!pb_cuda_available()) {
        fprintf(stderr, "mma_bench: %s\n", pb_cuda_unavailable_reason());
        return 1;
    }
    const pb_ops *ops = pb_ops_cuda_bf16();
    int B = 4, T = argc > 1 ? atoi(argv[1]) : 1024, iters = 10;
    for (int D = 64; D <= 128; D *= 2) {
        int NH = 768 / D, C = NH * D;
        size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
        uint16_t *h = malloc(nq * 2);
        srand(1);
        for (size_t i = 0; i < nq; i++) h[i] = to_bf16((float)rand() / RAND_MAX * 2 - 1);
        void *qkv = ops->alloc(nq * 2), *dout = ops->alloc(no * 2);
        ops->upload(qkv, h, nq * 2);
        ops->upload(dout, h, no * 2);  // the first B*T*C inputs as the output gradient
        void *out[2], *lse[2], *dqkv[2];
        for (int k = 0; k < 2; k++)
            out[k] = ops->alloc(no * 2), lse[k] = ops->alloc(nl * 4), dqkv[k] = ops->alloc(nq * 2);
        pb_attn_desc d = {B, T, T, NH, D, 1.0f / sqrtf((float)D), 1, NULL, NULL};
        double tf[2], tb[2];
        for (int k = 0; k < 2; k++) {  // 0: wgmma, 1: mma.sync
            for (int it = -1; it < iters; it++) {
                if (it == 0) pb_cuda_sync(), tf[k] = now();
                if (k == 0) attn_wgmma_cuda_forward(out[k], lse[k], qkv, &d);
                else attn_flash_mma_cuda_forward_bf16(out[k], lse[k], qkv, B, T, C, NH, 1);
            }
            pb_cuda_sync();
            tf[k] = (now() - tf[k]) / iters;
            for (int it = -1; it < iters; it++) {
                if (it == 0) pb_cuda_sync(), tb[k] = now();
                ops->zero(dqkv[k], nq * 2);
                if (k == 0) attn_wgmma_cuda_backward(dqkv[k], dout, out[k], lse[k], qkv, &d);
                else attn_flash_mma_cuda_backward_bf16(dqkv[k], dout, out[k], lse[k], qkv, B, T,
                                                       C, NH, 1);
            }
            pb_cuda_sync();
            tb[k] = (now() - tb[k]) / iters;
        }
        double dout_max = maxdiff16(ops, out[0], out[1], no);
        double dq_max = maxdiff16(ops, dqkv[0], dqkv[1], nq);
        printf("D %3d T %5d causal: fwd wgmma %.3f ms, mma %.3f ms; bwd wgmma %.3f ms, mma %.3f ms;"
               " max |out diff| %.2e, max |dqkv diff| %.2e\n",
               D, T, 1e3 * tf[0], 1e3 * tf[1], 1e3 * tb[0], 1e3 * tb[1], dout_max, dq_max);
        int bad = !(dout_max < 0.05 && dq_max < 0.5);
        for (int k = 0; k < 2; k++) ops->free(out[k]), ops->free(lse[k]), ops->free(dqkv[k]);
        ops->free(qkv), ops->free(dout), free(h);
        if (bad) {
            fprintf(stderr, "mma_bench: mma.sync and wgmma disagree (D %d)\n", D);
            return 1;
        }
    }
    return 0;
}
