// bench_blocksparse.c: the CUDA block-sparse attention (bf16, wgmma) against the dense wgmma
// kernel at the shapes of .deps/bench/torch_flex.py (its FlexAttention peer): D 64 and 128,
// T 16384 and 65536, B = 65536 / T, H = 1024 / D, non-causal, density 10% and 25%, blocks of
// 128, the same pattern (per query block the diagonal, one neighbour each side, the first
// block, random blocks up to the density; the same for every head and row). Prints a
// markdown table. FLOPs counted on the kept blocks as torch_flex.py does: forward
// 4 B H D pairs block^2, forward + backward 3.5x that.
//   bench_blocksparse                 the table
//   bench_blocksparse --quick [N]     the same rows without the dense column, fwd+bwd median
//                                     of N (default 5, at most 14) calls: tests/gpu/bs_sweep.sh
//   bench_blocksparse --ncu T D       one dense wgmma forward, then one blocksparse forward
//                                     (10%), for ncu; prints the DRAM bytes the tile model
//                                     predicts for each (bs_fwd_bytes)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention/blocksparse.h"
#include "kernels/attention/flash_cuda.h"
#include "kernels/common.h"
#include "kernels/cuda/cuda.h"

#define BLOCK 128

// The block mask of torch_flex.py's layout(): nb x nb, density d, seeded.
static uint8_t *flex_mask(int nb, double density, uint64_t seed) {
    uint8_t *m = pb_calloc((size_t)nb * nb, 1);
    int32_t *freeb = pb_malloc((size_t)nb * sizeof(int32_t));
    pb_rng rng;
    pb_rng_seed(&rng, seed);
    for (int i = 0; i < nb; i++) {
        uint8_t *row = m + (size_t)i * nb;
        for (int j = i - 1; j <= i + 1; j++)
            if (j >= 0 && j < nb) row[j] = 1;
        row[0] = 1;
        int kept = 0, nf = 0;
        for (int j = 0; j < nb; j++) kept += row[j];
        int want = (int)lround(density * nb);
        if (want < kept) want = kept;
        for (int j = 0; j < nb; j++)
            if (!row[j]) freeb[nf++] = j;
        for (int r = 0; r < want - kept && r < nf; r++) {  // partial Fisher-Yates
            int pick = r + (int)(pb_rng_u64(&rng) % (uint64_t)(nf - r));
            int32_t t = freeb[r];
            freeb[r] = freeb[pick];
            freeb[pick] = t;
            row[freeb[r]] = 1;
        }
    }
    free(freeb);
    return m;
}

// Predicted DRAM bytes of one forward with the kernel's tiles: a block of Br = 128 query rows
// reads its Q tile once and the K and V tiles of every key block it visits (pairs of them per
// head), writes O and lse once; bf16 tensors, fp32 lse. L2 reuse across blocks is ignored
// (an upper bound when K/V blocks are shared through L2; the floor is Q+K+V+O+lse once).
static double bs_fwd_bytes(int B, int H, int T, int D, long pairs_per_head) {
    double rows = (double)B * H * T;
    return rows * D * 2 /* Q */ + (double)B * H * pairs_per_head * BLOCK * D * 2 * 2 /* K,V */ +
           rows * D * 2 /* O */ + rows * 4 /* lse */;
}
static double floor_fwd_bytes(int B, int H, int T, int D) {
    return (double)B * H * T * (4.0 * D * 2 + 4);  // Q, K, V, O once, lse
}

static double median(double *t, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return t[n / 2];
}

typedef struct bufs {
    float *qkv, *out, *lse, *dout, *dqkv;
} bufs;

// ms per call (median of iters after warm) of fwd, or fwd + bwd when bwd
static double time_it(const pb_attn_impl *im, const pb_attn_desc *d, const bufs *b, int bwd,
                      int iters) {
    double t[16];
    for (int i = -2; i < iters; i++) {
        pb_cuda_sync();
        double t0 = pb_now();
        im->forward(b->out, b->lse, b->qkv, d);
        if (bwd) im->backward(b->dqkv, b->dout, b->out, b->lse, b->qkv, d);
        pb_cuda_sync();
        if (i >= 0) t[i] = (pb_now() - t0) * 1e3;
    }
    return median(t, iters);
}

static bufs alloc_bufs(const pb_ops *G, int B, int T, int C, int H) {
    size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C;
    bufs b = {G->alloc(n3 * 2), G->alloc(n1 * 2), G->alloc((size_t)B * H * T * 4),
              G->alloc(n1 * 2), G->alloc(n3 * 2)};
    // small random bf16 values (bit patterns of [-1, 1) numbers): finite scores
    uint16_t *h = pb_malloc(n3 * 2);
    pb_rng r;
    pb_rng_seed(&r, 5);
    for (size_t i = 0; i < n3; i++) {
        float x = (float)(2.0 * pb_rng_uniform(&r) - 1.0);
        uint32_t u;
        memcpy(&u, &x, 4);
        h[i] = (uint16_t)(u >> 16);
    }
    G->upload(b.qkv, h, n3 * 2);
    G->upload(b.dout, h, n1 * 2);
    free(h);
    return b;
}

static void free_bufs(const pb_ops *G, bufs *b) {
    G->free(b->qkv), G->free(b->out), G->free(b->lse), G->free(b->dout), G->free(b->dqkv);
}

static pb_block_layout *flex_layout(int T, double density) {
    char err[256];
    int nb = T / BLOCK;
    uint8_t *m = flex_mask(nb, density, 0);
    pb_block_layout *l = attn_bs_from_mask(m, BLOCK, T, 1, 1, 0, NULL, err, sizeof err);
    free(m);
    if (!l) pb_die(PB_EXIT_RUNTIME, "bench_blocksparse: %s", err);
    return l;
}

static int ncu_mode(const pb_ops *G, int T, int D) {
    int B = 65536 / T < 1 ? 1 : 65536 / T, H = 1024 / D, C = H * D;
    pb_block_layout *l = flex_layout(T, 0.1);
    bufs b = alloc_bufs(G, B, T, C, H);
    pb_attn_desc dd = {B, T, T, H, D, 1.0f / sqrtf((float)D), 0, NULL, NULL, 0, 0}, ds = dd;
    ds.layout = l;
    const char *why = attn_cuda_blocksparse_bf16.supports(&ds);
    if (why) pb_die(PB_EXIT_RUNTIME, "bench_blocksparse: blocksparse cannot run: %s", why);
    attn_cuda_wgmma.forward(b.out, b.lse, b.qkv, &dd);
    attn_cuda_blocksparse_bf16.forward(b.out, b.lse, b.qkv, &ds);
    pb_cuda_sync();
    long nbk = T / BLOCK;
    printf("ncu-model T=%d D=%d B=%d H=%d: predicted DRAM bytes (tile model, Br=128)\n", T, D, B,
           H);
    printf("  dense wgmma fwd:  %.1f MB read+write (floor Q,K,V,O,lse once: %.1f MB)\n",
           bs_fwd_bytes(B, H, T, D, nbk * nbk) / 1e6, floor_fwd_bytes(B, H, T, D) / 1e6);
    printf("  blocksparse fwd:  %.1f MB read+write (density %.4f, %ld pairs per head)\n",
           bs_fwd_bytes(B, H, T, D, l->kept) / 1e6, attn_bs_density(l), l->kept);
    free_bufs(G, &b);
    attn_bs_free(l);
    return 0;
}

int main(int argc, char **argv) {
    if (!pb_cuda_available()) {
        fprintf(stderr, "bench_blocksparse: no GPU: %s\n", pb_cuda_unavailable_reason());
        return 1;
    }
    const pb_ops *G = pb_ops_cuda_bf16();
    if (argc == 4 && strcmp(argv[1], "--ncu") == 0) return ncu_mode(G, atoi(argv[2]), atoi(argv[3]));
    int quick = argc >= 2 && strcmp(argv[1], "--quick") == 0;
    int iters = quick && argc >= 3 ? atoi(argv[2]) : 5;
    if (iters < 1 || iters > 14) pb_die(PB_EXIT_USAGE, "bench_blocksparse: --quick N: 1 .. 14");
    // every row has B T = 65536 and H D = 1024: one set of buffers serves them all
    bufs b = alloc_bufs(G, 1, 65536, 1024, 1024 / 64);
    printf("| D | T | B | H | density | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | "
           "dense wgmma fwd+bwd ms | sparse / (dense x density) |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    int Ds[2] = {64, 128}, Ts[2] = {16384, 65536};
    double dens[2] = {0.1, 0.25};
    for (int di = 0; di < 2; di++)
        for (int ti = 0; ti < 2; ti++) {
            int D = Ds[di], T = Ts[ti], B = 65536 / T, H = 1024 / D;
            pb_attn_desc dd = {B, T, T, H, D, 1.0f / sqrtf((float)D), 0, NULL, NULL, 0, 0};
            double dense = quick ? NAN : time_it(&attn_cuda_wgmma, &dd, &b, 1, 3);
            for (int k = 0; k < 2; k++) {
                pb_block_layout *l = flex_layout(T, dens[k]);
                pb_attn_desc ds = dd;
                ds.layout = l;
                const char *why = attn_cuda_blocksparse_bf16.supports(&ds);
                if (why) pb_die(PB_EXIT_RUNTIME, "bench_blocksparse: %s", why);
                double f = time_it(&attn_cuda_blocksparse_bf16, &ds, &b, 0, 7);
                double fb = time_it(&attn_cuda_blocksparse_bf16, &ds, &b, 1, iters);
                double s = attn_bs_density(l);
                double fl = 4.0 * B * H * D * (double)l->kept * BLOCK * BLOCK;
                printf("| %d | %d | %d | %d | %.4f | %.3f | %.0f | %.3f | %.0f | %.2f | %.2fx |\n",
                       D, T, B, H, s, f, fl / f / 1e9, fb, 3.5 * fl / fb / 1e9, dense,
                       fb / (dense * s));
                fflush(stdout);
                attn_bs_free(l);
            }
        }
    free_bufs(G, &b);
    return 0;
}
