// bench_smallcache.c: the CUDA small-cache attention (bf16 table) at torch_sdpa.py's shapes:
// 32768 tokens, hidden 2048 (B = 32768/T, H = 2048/D), D 128 (beside the wgmma kernel),
// 256, 512, 1024, T 1024, 4096, 16384, causal and not; forward and forward+backward ms,
// TFLOP/s with the FlashAttention convention (fwd 4 B H T^2 D, halved when causal;
// fwd+bwd 3.5x fwd), and the scratch the call allocates. A markdown table.
//   --rows R[,R...]   the causal rows at D 256 and 512 only, once per causal row block R
//                     (attn_smallcache_cuda_set_rows), for choosing the default
//   --ncu T D causal  one forward only, between cudaProfilerStart/Stop (for
//                     ncu --profile-from-start off), and the DRAM bytes the design predicts
// GPU machine only.
#include <cuda_profiler_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/flash_cuda.h"
#include "kernels/common.h"
#include "kernels/cuda/cuda.h"

#define TOKENS 32768
#define HIDDEN 2048

static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return x[n / 2];
}

// Score entries the forward's products compute per (b, h) pair: T^2, or with causal row
// blocks of R queries (smallcache_cuda.cu) the sum over blocks of rows x (block end).
static double score_entries(int T, int causal) {
    if (!causal) return (double)T * T;
    int R = attn_smallcache_cuda_rows(T, causal);
    double a = 0;
    for (int i0 = 0; i0 < T; i0 += R) {
        int n = T - i0 < R ? T - i0 : R;
        a += (double)n * (i0 + n);
    }
    return a;
}

// DRAM bytes one bf16 forward should move, by the design: per pair S written in fp32 and
// read once by the row kernel (its second pass over a row hits L2), P written and read once
// in bf16; Q, K, V read once (T D bf16 each: cuBLAS's tiles of K and V stay in L2) and O
// written once; lse written. A floor from the materialised scores: the products' own
// operand rereads come on top where L2 does not hold them.
static void predicted_fwd_bytes(int B, int T, int NH, int D, int causal, double *rd,
                                double *wr) {
    double A = score_entries(T, causal), pairs = (double)B * NH, td = (double)T * D;
    *wr = pairs * (4 * A + 2 * A + 2 * td + 4.0 * T);
    *rd = pairs * (4 * A + 2 * A + 3 * 2 * td);
}

static float *upload_bf16(const pb_ops *ops, size_t n, uint64_t seed) {
    uint16_t *h = pb_malloc(n * 2);
    pb_rng r;
    pb_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        float x = (float)(2.0 * pb_rng_uniform(&r) - 1.0);
        uint32_t b;
        memcpy(&b, &x, 4);
        h[i] = (uint16_t)(b >> 16);  // truncated: any bf16 values will do
    }
    float *d = ops->alloc(n * 2);
    ops->upload(d, h, n * 2);
    free(h);
    return d;
}

#define TABLE_HEAD                                                                           \
    "| kernel     |    D |     T |  B | H  | causal | fwd ms | fwd TFLOP/s | fwd+bwd ms | "      \
    "fwd+bwd TFLOP/s | scratch GiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n"

typedef struct {
    float *qkv, *dqkv, *out, *dout, *lse;
} bufs;

static void row(const pb_ops *ops, const char *name, const pb_attn_impl *im, int D, int T,
                int causal, const bufs *b, int iters) {
    int B = TOKENS / T, NH = HIDDEN / D;
    pb_attn_desc d = {B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, NULL, NULL, 0, 0};
    if (im->supports(&d)) {
        printf("| %-10s | %4d | %5d | %2d | %2d | %-3s | %s |\n", name, D, T, B, NH,
               causal ? "yes" : "no", im->supports(&d));
        return;
    }
    double fl = 4.0 * B * NH * (double)T * T * D / (causal ? 2.0 : 1.0);
    double t1[16], t2[16];
    for (int i = -1; i < iters; i++) {
        pb_cuda_sync();
        double a = pb_now();
        im->forward(b->out, b->lse, b->qkv, &d);
        pb_cuda_sync();
        double c = pb_now();
        im->forward(b->out, b->lse, b->qkv, &d);
        im->backward(b->dqkv, b->dout, b->out, b->lse, b->qkv, &d);
        pb_cuda_sync();
        double e = pb_now();
        if (i >= 0) t1[i] = c - a, t2[i] = e - c;
    }
    double f = median(t1, iters), fb = median(t2, iters);
    double scratch = strcmp(im->name, "smallcache") == 0
                         ? attn_smallcache_cuda_scratch_bytes(&d, PB_DTYPE_BF16) / 1073741824.0
                         : 0.0;
    printf("| %-10s | %4d | %5d | %2d | %2d | %-3s | %8.3f | %6.1f | %8.3f | %6.1f | %6.2f |\n",
           name, D, T, B, NH, causal ? "yes" : "no", f * 1e3, fl / f / 1e12, fb * 1e3,
           3.5 * fl / fb / 1e12, scratch);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (!pb_cuda_available()) {
        fprintf(stderr, "bench_smallcache: no usable GPU: %s\n", pb_cuda_unavailable_reason());
        return 1;
    }
    const pb_ops *ops = pb_ops_cuda_bf16();
    size_t n3 = (size_t)TOKENS * 3 * HIDDEN, n1 = (size_t)TOKENS * HIDDEN;
    bufs b;
    b.qkv = upload_bf16(ops, n3, 1);
    b.dout = upload_bf16(ops, n1, 2);
    b.dqkv = ops->alloc(n3 * 2), b.out = ops->alloc(n1 * 2);
    b.lse = ops->alloc((size_t)TOKENS * (HIDDEN / 8) * 4);  // B NH T floats, D >= 8

    if (argc == 5 && strcmp(argv[1], "--ncu") == 0) {
        int T = atoi(argv[2]), D = atoi(argv[3]), causal = atoi(argv[4]);
        int B = TOKENS / T, NH = HIDDEN / D;
        pb_attn_desc d = {B, T, T, NH, D, 1.0f / sqrtf((float)D), causal, NULL, NULL, 0, 0};
        if (T < 1 || D < 8 || attn_smallcache_cuda_supports(&d)) {
            fprintf(stderr, "bench_smallcache --ncu: cannot run T %d D %d\n", T, D);
            return 1;
        }
        // a first call outside the profiled range: scratch allocated (and zeroed), plans made
        attn_cuda_smallcache_bf16.forward(b.out, b.lse, b.qkv, &d);
        pb_cuda_sync();
        cudaProfilerStart();
        attn_cuda_smallcache_bf16.forward(b.out, b.lse, b.qkv, &d);
        pb_cuda_sync();
        cudaProfilerStop();
        double rd, wr;
        predicted_fwd_bytes(B, T, NH, D, causal, &rd, &wr);
        printf("predicted DRAM bytes, smallcache forward B %d T %d NH %d D %d causal %d: "
               "read %.3f GB, write %.3f GB (S fp32 written and read once, P bf16 written and "
               "read once, Q K V read and O written once)\n",
               B, T, NH, D, causal, rd / 1e9, wr / 1e9);
        return 0;
    }

    if (argc == 3 && strcmp(argv[1], "--rows") == 0) {
        printf("## smallcache attention, causal, by row block R (bf16, fwd+bwd)\n\n");
        for (char *r = argv[2]; *r;) {
            char *end;
            long R = strtol(r, &end, 10);
            if (end == r || R < 16 || R % 16 || (*end && *end != ',')) {
                fprintf(stderr, "bench_smallcache --rows: '%s' is not a list of multiples of 16\n", argv[2]);
                return 1;
            }
            attn_smallcache_cuda_set_rows((int)R);
            printf("\nR = %ld:\n\n%s", R, TABLE_HEAD);
            for (int D = 256; D <= 512; D *= 2)
                for (int T = 1024; T <= 16384; T *= 4)
                    row(ops, "smallcache", &attn_cuda_smallcache_bf16, D, T, 1, &b, 5);
            r = *end ? end + 1 : end;
        }
        return 0;
    }

    printf("## smallcache attention (bf16 table), %d tokens, hidden %d, median of 5\n\n", TOKENS,
           HIDDEN);
    printf("FLOPs: fwd 4 B H T^2 D (/2 causal), fwd+bwd 3.5x fwd (FlashAttention convention); "
           "scratch: the (T,T) score buffers of one chunk of (b, h) pairs (8 GiB budget)\n\n");
    printf("%s", TABLE_HEAD);
    int Ds[4] = {128, 256, 512, 1024}, Ts[3] = {1024, 4096, 16384};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            for (int c = 0; c < 2; c++) {
                if (Ds[i] == 128)
                    row(ops, "wgmma", &attn_cuda_wgmma, Ds[i], Ts[j], c, &b, 5);
                row(ops, "smallcache", &attn_cuda_smallcache_bf16, Ds[i], Ts[j], c, &b, 5);
            }
    printf("\nGPU memory in use at the end: %.2f GiB\n", pb_cuda_mem_used() / 1073741824.0);
    return 0;
}
