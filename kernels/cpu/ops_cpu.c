// ops_cpu.c: the CPU backend of the op table (kernels/ops.h): fp32, OpenMP, every op but the
// matmul (kernels/cpu/matmul.c) and attention (kernels/attention/).
//
// Threads split rows, elements or channel strips, so that every output element is computed
// by one thread in a fixed order: results do not depend on the number of threads. Where a
// backward reduces over rows (layernorm dweight, encoder dwte), threads take strips of
// channels and walk the rows in order, instead of summing per-thread partials.
#include <math.h>
#include <string.h>

#include "kernels/attention/attention.h"
#include "kernels/common.h"
#include "kernels/cpu/matmul.h"
#include "kernels/dropout.h"
#include "kernels/ops.h"

// Below this many elements an op runs on one thread: starting the team would cost more.
#define PAR_MIN (1 << 14)
// Channels per strip in the reductions over rows: 64 floats, four cache lines.
#define STRIP 64

static int imin(int a, int b) { return a < b ? a : b; }

// ----------------------------------------------------------------------------
// exp and tanh that vectorize (softmax and GELU spend their time in them)

// A float's bits as an int32 that orders like the float (negative floats have their
// magnitude bits flipped), and back. Lets min, max and clamps run as integer ops, which gcc
// vectorizes; its float compares stop the vectorizer (they may trap) or, for max, give a
// scalar loop. NaN orders above +inf (or below -inf when its sign bit is set).
static inline int32_t float_key(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits ^ ((bits >> 31) & 0x7FFFFFFF);
}

static inline float key_float(int32_t key) {
    int32_t bits = key ^ ((key >> 31) & 0x7FFFFFFF);
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// exp(x) in fp32 to within 1.5 ulp, written so that gcc vectorizes the loops calling it
// (glibc's expf is a scalar call: 3x slower softmax, 10x slower GELU). x = n ln2 + r with
// |r| <= ln2/2; exp(r) by Cephes' degree-6 polynomial; 2^n built in the exponent bits.
// x is first clamped to [-87, 88], so 2^n stays a normal float (below -87 the result is
// exp(-87) ~ 1.6e-38, as good as 0 wherever it is used). NaN and inf give NaN.
static inline float exp_fast(float x) {
    const int32_t lo = (int32_t)0xC2AE0000 ^ 0x7FFFFFFF, hi = 0x42B00000;  // keys of -87, 88
    int32_t key = float_key(x);
    float xc = key_float(key < lo ? lo : key > hi ? hi : key);

    // n = round(x / ln2): adding 1.5 * 2^23 rounds to an integer, and leaves n in the
    // low mantissa bits of t
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;  // ln2 in two parts; n times the first is exact
    r = r - n * -2.12194440e-4f;
    // exp(r) = 1 + r + r^2 p(r), p evaluated in pairs (Estrin) rather than Horner's one
    // long chain: the chains of neighbouring elements then overlap in the CPU
    float r2 = r * r, r4 = r2 * r2;
    float p01 = 1.9875691500e-4f * r + 1.3981999507e-3f;
    float p23 = 8.3334519073e-3f * r + 4.1665795894e-2f;
    float p45 = 1.6666665459e-1f * r + 5.0000001201e-1f;
    float p = (p45 + r2 * p23) + r4 * p01;
    float er = p * r2 + r + 1.0f;

    uint32_t tbits;
    memcpy(&tbits, &t, sizeof tbits);
    uint32_t sbits = (tbits - 0x4B400000u + 127u) << 23;  // biased exponent n + 127
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    return er * scale + (x - x);  // x - x: 0, or NaN for NaN and inf inputs
}

// tanh(u) = 1 - 2 / (exp(2u) + 1): absolute error ~1e-7, which is what GELU needs
// (it adds tanh to 1).
static inline float tanh_fast(float u) { return 1.0f - 2.0f / (exp_fast(2.0f * u) + 1.0f); }

// ----------------------------------------------------------------------------
// memory: host memory, so upload and download are plain copies

static void *cpu_alloc(size_t bytes) {
    void *p = pb_aligned_alloc(bytes);
    memset(p, 0, bytes);
    return p;
}

static void cpu_free(void *p) { free(p); }

static void cpu_upload(void *dst, const void *host_src, size_t bytes) {
    if (bytes) memcpy(dst, host_src, bytes);
}

static void cpu_download(void *host_dst, const void *src, size_t bytes) {
    if (bytes) memcpy(host_dst, src, bytes);
}

static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}

// ----------------------------------------------------------------------------
// encoder: out (B,T,C) = wte[inp[b,t]] + wpe[pos[b,t] or t] (+ wtt); wte (Vp,C), wpe (maxT,C),
// inp and pos (B,T)

static void encoder_forward(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                            const float *wpe, const float *wtt, int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= PAR_MIN)
    for (int bt = 0; bt < B * T; bt++) {
        PB_ASSERT(inp[bt] >= 0);
        const float *wte_row = wte + (size_t)inp[bt] * C;
        const float *wpe_row = wpe + (size_t)(pos ? pos[bt] : bt % T) * C;
        float *out_row = out + (size_t)bt * C;
        for (int c = 0; c < C; c++) out_row[c] = wte_row[c] + wpe_row[c];
        if (wtt)
            for (int c = 0; c < C; c++) out_row[c] += wtt[c];
    }
}

// dwte (Vp,C) += scatter of dout (B,T,C) by token; dwpe (maxT,C) += sum over b; dwtt (C) +=
// sum over every row. A token can repeat, so two rows of dout may add into the same row of
// dwte: threads take channel strips, never rows, and each strip adds the rows in order.
static void encoder_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                             const int32_t *inp, const int32_t *pos, int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= PAR_MIN)
    for (int c0 = 0; c0 < C; c0 += STRIP) {
        int len = imin(STRIP, C - c0);
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C + c0;
            float *gwte = dwte + (size_t)inp[bt] * C + c0;
            float *gwpe = dwpe + (size_t)(pos ? pos[bt] : bt % T) * C + c0;
            for (int j = 0; j < len; j++) {
                gwte[j] += d[j];
                gwpe[j] += d[j];
            }
            if (dwtt)
                for (int j = 0; j < len; j++) dwtt[c0 + j] += d[j];
        }
    }
}

// ----------------------------------------------------------------------------
// layernorm: out (N,C) = (inp - mean) * rstd * weight + bias, per row; mean, rstd (N)

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        // two passes (mean, then squared deviations): E[x^2]-E[x]^2 cancels badly in fp32
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

// dinp (N,C) += rstd * (g - mean_c(g) - norm * mean_c(g * norm)), g = weight * dout;
// dweight (C) += sum_n norm * dout;  dbias (C) += sum_n dout;  norm = (inp - mean) * rstd.
static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C) {
    int par = (size_t)N * C >= PAR_MIN;
    // dinp: rows are independent
#pragma omp parallel for schedule(static) if (par)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        float g_mean = 0.0f, gnorm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float g = weight[c] * dy[c];
            g_mean += g;
            gnorm_mean += g * (x[c] - m) * s;
        }
        g_mean /= C;
        gnorm_mean /= C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            dx[c] += (weight[c] * dy[c] - g_mean - norm * gnorm_mean) * s;
        }
    }
    // dweight, dbias: a sum over rows, so threads take channel strips and walk the rows in
    // order; each strip sums locally first, so a second call adds exactly the same amount
#pragma omp parallel for schedule(static) if (par)
    for (int c0 = 0; c0 < C; c0 += STRIP) {
        int len = imin(STRIP, C - c0);
        float dw[STRIP] = {0}, db[STRIP] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C + c0, *dy = dout + (size_t)n * C + c0;
            float m = mean[n], s = rstd[n];
            for (int j = 0; j < len; j++) {
                dw[j] += (x[j] - m) * s * dy[j];
                db[j] += dy[j];
            }
        }
        for (int j = 0; j < len; j++) {
            dweight[c0 + j] += dw[j];
            dbias[c0 + j] += db[j];
        }
    }
}

// ----------------------------------------------------------------------------
// GELU. tanh: out = 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi) (GPT-2);
// erf: out = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (BERT). Each kind its own loop, so the
// tanh one vectorizes as before.

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)
#define GELU_A 0.044715f
#define GELU_RSQRT2 0.7071067811865476f   // 1/sqrt(2)
#define GELU_RSQRT2PI 0.3989422804014327f  // 1/sqrt(2 pi)

static void gelu_forward(float *out, const float *inp, size_t n, pb_gelu kind) {
    if (kind == PB_GELU_ERF) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * GELU_RSQRT2));
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanh_fast(GELU_K * (x + GELU_A * x * x * x)));
    }
}

// tanh: d/dx = 0.5 (1 + th) + 0.5 x (1 - th^2) k (1 + 3 a x^2), th = tanh(k (x + a x^3))
// (1 - th^2 rather than 1/cosh^2: no overflow for large |x|). erf: d/dx = Phi(x) + x phi(x).
static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n,
                          pb_gelu kind) {
    if (kind == PB_GELU_ERF) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float local = 0.5f * (1.0f + erff(x * GELU_RSQRT2)) +
                          x * GELU_RSQRT2PI * expf(-0.5f * x * x);
            dinp[i] += local * dout[i];
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float th = tanh_fast(GELU_K * (x + GELU_A * x * x * x));
        float local = 0.5f * (1.0f + th) +
                      0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        dinp[i] += local * dout[i];
    }
}

// ----------------------------------------------------------------------------
// residual: out = a + b, elementwise over n

// the head's activation: tanh, out = tanh(inp), dinp += (1 - out^2) dout; ReLU,
// out = max(inp, 0), dinp += dout where out > 0
static void act_forward(float *out, const float *inp, size_t n, pb_act kind) {
    if (kind == PB_ACT_RELU)
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
    else
        for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

static void act_backward(float *dinp, const float *out, const float *dout, size_t n,
                         pb_act kind) {
    if (kind == PB_ACT_RELU)
        for (size_t i = 0; i < n; i++) dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
    else
        for (size_t i = 0; i < n; i++) dinp[i] += (1.0f - out[i] * out[i]) * dout[i];
}

// rows by index: out (M,C) = inp[idx] (N,C); dinp[idx] += dout (indices distinct)
static void gather_rows(float *out, const float *inp, const int32_t *idx, int M, int C) {
    for (int i = 0; i < M; i++)
        memcpy(out + (size_t)i * C, inp + (size_t)idx[i] * C, (size_t)C * sizeof(float));
}

static void scatter_add_rows(float *dinp, const float *dout, const int32_t *idx, int M, int C) {
    for (int i = 0; i < M; i++) {
        float *d = dinp + (size_t)idx[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

// mean pooling: out (B,C) = the sum over t < lengths[b] of inp (B,T,C), in t order, divided
// by counts[b] (or lengths[b])
static void mean_pool_forward(float *out, const float *inp, const int32_t *lengths,
                              const int32_t *counts, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int t = 0; t < lengths[b]; t++) {
            const float *x = inp + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) o[c] += x[c];
        }
        float inv = 1.0f / (float)(counts ? counts[b] : lengths[b]);
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
}

static void mean_pool_backward(float *dinp, const float *dout, const int32_t *lengths,
                               const int32_t *counts, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float inv = 1.0f / (float)(counts ? counts[b] : lengths[b]);
        const float *g = dout + (size_t)b * C;
        for (int t = 0; t < lengths[b]; t++) {
            float *d = dinp + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) d[c] += g[c] * inv;
        }
    }
}

static void residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// ----------------------------------------------------------------------------
// crossentropy: softmax over the first V of Vp columns of logits (N,Vp), targets (N)

// Max and sum of exp(x - max) over the first V columns of one row: the stable softmax's
// normaliser. Eight running sums, so the loop vectorizes (in a fixed order), in double:
// with V ~ 50k terms fp32 would lose digits.
static void softmax_stats(const float *row, int V, float *max_out, double *sum_out) {
    int32_t kmax = INT32_MIN;
    for (int i = 0; i < V; i++) {
        int32_t k = float_key(row[i]);
        kmax = k > kmax ? k : kmax;
    }
    float mx = key_float(kmax);

    double s8[8] = {0};
    int i = 0;
    for (; i + 8 <= V; i += 8)
        for (int j = 0; j < 8; j++) s8[j] += (double)exp_fast(row[i + j] - mx);
    for (; i < V; i++) s8[0] += (double)exp_fast(row[i] - mx);
    *max_out = mx;
    *sum_out = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
}

// losses (N) = log(sum_i exp(logits[i])) - logits[target], 0 where target < 0
static void crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                                 int N, int V, int Vp) {
    PB_ASSERT(V >= 1 && V <= Vp);
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        int t = targets[n];
        if (t < 0) {
            losses[n] = 0.0f;
            continue;
        }
        PB_ASSERT(t < V);
        const float *row = logits + (size_t)n * Vp;
        float mx;
        double sum;
        softmax_stats(row, V, &mx, &sum);
        losses[n] = (float)(log(sum) + (double)mx - (double)row[t]);
    }
}

// dlogits (N,Vp) = dloss * (softmax - onehot(target)), overwritten; padding columns and rows
// with target < 0 get 0. dlogits may be logits: each element is read before it is written.
static void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                  float dloss, int N, int V, int Vp) {
    PB_ASSERT(V >= 1 && V <= Vp);
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *row = logits + (size_t)n * Vp;
        float *drow = dlogits + (size_t)n * Vp;
        int t = targets[n];
        if (t < 0) {
            for (int i = 0; i < Vp; i++) drow[i] = 0.0f;
            continue;
        }
        PB_ASSERT(t < V);
        float mx;
        double sum;
        softmax_stats(row, V, &mx, &sum);
        float inv = (float)(1.0 / sum);
        float p_target = exp_fast(row[t] - mx) * inv;
        for (int i = 0; i < V; i++) drow[i] = dloss * (exp_fast(row[i] - mx) * inv);
        drow[t] = dloss * (p_target - 1.0f);
        for (int i = V; i < Vp; i++) drow[i] = 0.0f;
    }
}

// ----------------------------------------------------------------------------
// optimizer and gradient utilities

// AdamW, step t >= 1, segment by segment (the formula is in ops.h)
static void adamw_update(float *param, const float *grad, float *m, float *v, const size_t *ends,
                         const float *wd, int nseg, float lr, float beta1, float beta2, float eps,
                         int t) {
    PB_ASSERT(t >= 1 && nseg >= 0);
    // bias corrections in double: beta2^t for t in the thousands needs the digits
    float bc1 = (float)(1.0 - pow(beta1, t));
    float bc2 = (float)(1.0 - pow(beta2, t));
    for (int k = 0; k < nseg; k++) {
        size_t i0 = k ? ends[k - 1] : 0, n = ends[k];
        float weight_decay = wd[k];
        PB_ASSERT(n >= i0);
#pragma omp parallel for schedule(static) if (n - i0 >= PAR_MIN)
        for (size_t i = i0; i < n; i++) {
            float g = grad[i];
            float mi = beta1 * m[i] + (1.0f - beta1) * g;
            float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            float mhat = mi / bc1, vhat = vi / bc2;
            param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
        }
    }
}

// Sum of squares in double. Fixed chunks (not one per thread) are summed in parallel, then
// the chunk sums serially: the order of additions does not depend on the thread count.
#define SUMSQ_CHUNK ((size_t)1 << 16)  // a multiple of 8
static double sumsq(const float *x, size_t n) {
    if (n == 0) return 0.0;
    size_t nchunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    double *partial = pb_malloc(nchunks * sizeof(double));
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t k = 0; k < nchunks; k++) {
        size_t lo = k * SUMSQ_CHUNK, hi = lo + SUMSQ_CHUNK < n ? lo + SUMSQ_CHUNK : n;
        // eight running sums, so the loop vectorizes; still a fixed order
        double acc[8] = {0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
        for (; i < hi; i++) acc[0] += (double)x[i] * (double)x[i];
        partial[k] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                     ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    double total = 0.0;
    for (size_t k = 0; k < nchunks; k++) total += partial[k];
    free(partial);
    return total;
}

static void dropout(float *out, const float *in, size_t n, uint64_t key, float p) {
    uint32_t thr = pb_drop_threshold(p);
    float sc = pb_drop_scale(p);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = pb_drop_keep(key, i, thr) ? in[i] * sc : 0.0f;
}

static void scale(float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

// argmax over the first V columns of each row of logits (N,Vp); ties: the first index
static void argmax_rows(int32_t *out, const float *logits, int N, int V, int Vp) {
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vp;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (x[v] > x[best]) best = v;
        out[i] = best;
    }
}

// ----------------------------------------------------------------------------
// the table

static const pb_attn_impl cpu_attn_flash = {"flash", attn_flash_supports, attn_flash_forward,
                                            attn_flash_backward};
static const pb_attn_impl cpu_attn_naive = {"naive", attn_naive_supports, attn_naive_forward,
                                            attn_naive_backward};
static const pb_attn_impl cpu_attn_bs = {"blocksparse", attn_bs_supports, attn_bs_forward,
                                         attn_bs_backward};
static const pb_attn_impl cpu_attn_smallcache = {"smallcache", attn_smallcache_supports,
                                                 attn_smallcache_forward,
                                                 attn_smallcache_backward};
// flash and naive refuse a layout and blocksparse needs one, so `auto` picks blocksparse
// exactly for a descriptor with a layout. smallcache runs what flash runs: on the CPU
// (caches of MiBs, D <= 1024) flash is never the slower, so auto reaches it only by name.
static const pb_attn_impl *const cpu_attention[] = {&cpu_attn_flash, &cpu_attn_naive,
                                                    &cpu_attn_bs, &cpu_attn_smallcache, NULL};

static const pb_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .zero = cpu_zero,
    .encoder_forward = encoder_forward,
    .encoder_backward = encoder_backward,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .attention = cpu_attention,
    .attention_decode = attn_decode_forward,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .act_forward = act_forward,
    .act_backward = act_backward,
    .gather_rows = gather_rows,
    .scatter_add_rows = scatter_add_rows,
    .mean_pool_forward = mean_pool_forward,
    .mean_pool_backward = mean_pool_backward,
    .residual_forward = residual_forward,
    .argmax_rows = argmax_rows,
    .crossentropy_forward = crossentropy_forward,
    .crossentropy_backward = crossentropy_backward,
    .adamw_update = adamw_update,
    .sumsq = sumsq,
    .scale = scale,
    .dropout = dropout,
};

const pb_ops *pb_ops_cpu(void) { return &cpu_ops; }
