// decode.c: attention of new queries against a KV cache, for generation on the CPU.
//
// In training every position's query, key and value come out of one (B,T,3C) buffer. When
// generating, the keys and values of earlier positions are kept in a cache laid out per head,
// (NH, maxT, D), so a new position costs one pass over the cache instead of a recomputation
// of the whole prefix. The formulas are those of naive.c (scores, row max, exp, normalise,
// P V), one query row at a time.
//
// Determinism: each (query, head) pair is computed by one thread in a fixed order, so the
// result does not depend on the number of threads.
#include "kernels/attention/attention.h"

#include <math.h>

#include "kernels/common.h"

// Below this much work (queries * keys * D multiply-adds) a parallel region costs more than
// it saves: a single generated token of a small model.
#define DECODE_PAR_MIN (1 << 16)

// out (n, C): rows i = 0..n-1 are the queries of positions pos0+i. q: row i at
// q + i*q_stride, head h at [h*D, (h+1)*D). kcache, vcache (NH, maxT, D) hold positions
// 0..pos0+n-1 (the new ones included); query i sees keys 0..pos0+i (causal).
void attn_decode_forward(float *out, const float *q, int q_stride, const float *kcache,
                         const float *vcache, int pos0, int n, int NH, int D, int maxT) {
    PB_ASSERT(n >= 1 && pos0 >= 0 && pos0 + n <= maxT && NH > 0 && D > 0);
    int C = NH * D;
    float scale = 1.0f / sqrtf((float)D);
    long long work = (long long)n * (pos0 + n) * C;

#pragma omp parallel if (work >= DECODE_PAR_MIN)
    {
        float *s = pb_malloc((size_t)(pos0 + n) * sizeof(float));  // one score row
#pragma omp for collapse(2) schedule(static)
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < NH; h++) {
                const float *qi = q + (size_t)i * q_stride + (size_t)h * D;
                const float *k = kcache + (size_t)h * maxT * D;
                const float *v = vcache + (size_t)h * maxT * D;
                int nk = pos0 + i + 1;  // keys visible to this query
                float mx = -INFINITY;
                for (int j = 0; j < nk; j++) {
                    const float *kj = k + (size_t)j * D;
                    float dot = 0.0f;
                    for (int d = 0; d < D; d++) dot += qi[d] * kj[d];
                    s[j] = scale * dot;
                    if (s[j] > mx) mx = s[j];
                }
                // subtract the row max before exp so nothing overflows
                float sum = 0.0f;
                for (int j = 0; j < nk; j++) {
                    s[j] = expf(s[j] - mx);
                    sum += s[j];
                }
                float inv = 1.0f / sum;
                float *o = out + (size_t)i * C + (size_t)h * D;
                for (int d = 0; d < D; d++) o[d] = 0.0f;
                for (int j = 0; j < nk; j++) {
                    float p = s[j] * inv;
                    const float *vj = v + (size_t)j * D;
                    for (int d = 0; d < D; d++) o[d] += p * vj[d];
                }
            }
        }
        free(s);
    }
}
