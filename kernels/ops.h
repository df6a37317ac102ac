// ops.h: the op table. The model is written once, as a sequence of calls through a pb_ops
// table; each backend (cpu/, cuda/) fills one. Every pointer below points into
// the backend's memory (host memory for the CPU backend).
//
// Shapes use one vocabulary everywhere:
//   B batch, T sequence length, C channels (n_embd), NH heads, D = C/NH head dim,
//   V vocabulary, Vp vocabulary padded to a multiple of 128, N = B*T rows.
//
// Conventions every backend keeps:
//   - Every *_backward ACCUMULATES (+=) into all of its gradient outputs, parameter and
//     activation gradients alike; the caller zeroes them. (Gradient accumulation over
//     micro-batches then costs nothing, and a residual stream's two branches just add.)
//     The exceptions are crossentropy_backward, which overwrites dlogits (it starts the
//     chain and may run in place, dlogits == logits), and the optional fused
//     matmul_backward_gelu, which overwrites dpre (its only writer in the model).
//   - Deterministic: the same inputs give bit-identical outputs on every run, whatever the
//     number of threads (reductions use a fixed order, never atomics).
//   - Targets < 0 are ignored by the loss (loss 0, gradient 0).
//
// Element types (act_dtype). In an fp32 table every pointer is what its C type says. In a
// bf16 table (mixed precision: the CUDA backend's pb_ops_cuda_bf16) the activations, their
// gradients and the weights an op READS (wte, wpe, LayerNorm and matmul weights and biases,
// qkv, logits, ...) hold bf16 elements behind the same `float *` parameters; what stays fp32
// is everything a sum accumulates or the optimizer owns: parameter gradients (dwte, dweight,
// dbias, ...), LayerNorm mean/rstd, attention lse, losses, AdamW's param/grad/m/v, sumsq and
// scale. The C types are kept so that the fp32 backends and their callers read naturally;
// a caller sizes activation buffers with pb_act_bytes(ops).
#ifndef PEBBLE_OPS_H
#define PEBBLE_OPS_H

#include <stddef.h>
#include <stdint.h>

// The element type of activations and of the weights ops read (above). Grows at the end.
typedef enum { PB_DTYPE_FP32 = 0, PB_DTYPE_BF16 = 1 } pb_dtype;

// GELU: the tanh approximation (GPT-2) or the exact form x * Phi(x) with erf (BERT).
typedef enum { PB_GELU_TANH = 0, PB_GELU_ERF = 1 } pb_gelu;

// The activation between a classifier head's dense layer and its classifier: tanh (BERT's
// pooler) or ReLU (LRA's classifier head). Both backwards are functions of the output.
typedef enum { PB_ACT_TANH = 0, PB_ACT_RELU = 1 } pb_act;

// --- attention by descriptor. One struct says everything an attention kernel must know of
// a call; each implementation says which descriptors it can run (supports), and the model
// runs the one pb_attn_choose picks. qkv (B,T,3C): q, k, v side by side, head h at channels
// [h*D, (h+1)*D) of each; out (B,T,C) heads concatenated; lse (B,NH,T) the log-sum-exp of
// each score row, saved for backward. Masks combine: a key is visible to a query when
// every mask present allows it. A query row is always computed (with kv_len[b] >= 1 it has
// at least key 0 to attend to); padding queries are the model's business.
typedef struct pb_block_layout pb_block_layout;  // block-sparse layouts: the block-sparse issue

typedef struct pb_attn_desc {
    int B, T, Tk;  // batch, queries and keys per sequence (self-attention from qkv: Tk == T)
    int NH, D;     // heads and head dim: C = NH * D
    float scale;   // scores = scale * q.k; 1/sqrtf(D) for GPT-2 and BERT
    int causal;    // 1: key j is visible to query i only when j <= i
    // (B) key lengths in the backend's memory, or NULL (every key): keys j >= kv_len[b] get
    // probability 0 (padding), with 1 <= kv_len[b] <= Tk, which the caller checks.
    const int32_t *kv_len;
    const pb_block_layout *layout;  // NULL: dense (every block)
    // Dropout on the probabilities (drop_p 0: none; training only): after the softmax,
    // P_ij of head (b, h) is kept, times 1 / (1 - drop_p), when pb_drop_keep(drop_key,
    // ((b NH + h) T + i) Tk + j, pb_drop_threshold(drop_p)) (kernels/dropout.h), else 0;
    // lse stays the undropped softmax's, and the backward drops the same elements. An
    // implementation that cannot drop says so in its supports.
    float drop_p;
    uint64_t drop_key;
} pb_attn_desc;

typedef struct pb_attn_impl {
    const char *name;  // what model.attention calls it: "naive", "flash", "wgmma", ...
    // NULL when it can run d on its table's element type; else why not, as a phrase that
    // follows "cannot run this model: " (e.g. "head dim 32 (it runs 64 and 128)").
    const char *(*supports)(const pb_attn_desc *d);
    void (*forward)(float *out, float *lse, const float *qkv, const pb_attn_desc *d);
    // dqkv (B,T,3C) += the gradient, from dout (B,T,C) and the forward's out and lse.
    void (*backward)(float *dqkv, const float *dout, const float *out, const float *lse,
                     const float *qkv, const pb_attn_desc *d);
} pb_attn_impl;

typedef struct pb_ops {
    const char *name;  // "cpu", "cuda"

    // --- memory of the backend
    void *(*alloc)(size_t bytes);  // zeroed, 64-byte aligned; exits on failure
    void (*free)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);

    // --- embedding: out (B,T,C) = wte[inp[b,t]] (Vp,C) + wpe[p] (maxT,C) (+ wtt (C) when not
    //     NULL: BERT's token-type embedding of type 0, the one segment pebble feeds); inp (B,T);
    //     p = pos[b,t] when pos (B,T) is not NULL (a sequence with tokens dropped: each keeps
    //     its position), else t
    void (*encoder_forward)(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                            const float *wpe, const float *wtt, int B, int T, int C);
    // dwte, dwpe += the scatter and sums of dout; dwtt (C) += the sum of every row (if not NULL)
    void (*encoder_backward)(float *dwte, float *dwpe, float *dwtt, const float *dout,
                             const int32_t *inp, const int32_t *pos, int B, int T, int C);

    // --- LayerNorm over the last dim: inp, out (N,C); weight, bias (C); mean, rstd (N) are
    //     saved for backward; eps is added to the variance (1e-5 GPT-2, 1e-12 BERT)
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C, float eps);
    void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C);

    // --- matmul with bias: out (N,OC) = inp (N,IC) @ weight^T + bias;
    //     weight (OC,IC) row-major, bias (OC) or NULL (then dbias is ignored)
    void (*matmul_forward)(float *out, const float *inp, const float *weight, const float *bias,
                           int N, int IC, int OC);
    void (*matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int IC, int OC);

    // --- multi-head scaled dot-product attention: the implementations of this table, fastest
    //     first, NULL-terminated (pb_attn_desc above; pb_attn_choose picks one)
    const pb_attn_impl *const *attention;
    // Generation with a KV cache (kernels/attention/decode.c): the queries of n new positions
    // pos0..pos0+n-1 (row i at q + i*q_stride) attend causally to the cached keys and values
    // of positions 0..pos0+n-1; kcache, vcache (NH, maxT, D); out (n, NH*D). NULL in a table
    // without it.
    void (*attention_decode)(float *out, const float *q, int q_stride, const float *kcache,
                             const float *vcache, int pos0, int n, int NH, int D, int maxT);

    // --- GELU of the given kind (pb_gelu), elementwise over n
    void (*gelu_forward)(float *out, const float *inp, size_t n, pb_gelu kind);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n,
                          pb_gelu kind);

    // --- the head's activation of the given kind (pb_act), elementwise over n; the
    //     backward reads the OUTPUT: dinp += f'(out) * dout, f' = 1 - out^2 (tanh) or
    //     [out > 0] (ReLU)
    void (*act_forward)(float *out, const float *inp, size_t n, pb_act kind);
    void (*act_backward)(float *dinp, const float *out, const float *dout, size_t n,
                         pb_act kind);

    // --- rows by index (the masked positions of MLM, the first token of each sequence):
    //     out (M,C) = inp[idx[i]] (N,C); idx (M) in backend memory. The backward adds the
    //     rows back, dinp[idx[i]] += dout[i]: the indices must be distinct.
    void (*gather_rows)(float *out, const float *inp, const int32_t *idx, int M, int C);
    void (*scatter_add_rows)(float *dinp, const float *dout, const int32_t *idx, int M, int C);

    // --- mean over the first lengths[b] positions: out (B,C) = sum_t<len inp (B,T,C) / n,
    //     n = counts[b] when counts is not NULL (the sequence's length before tokens were
    //     dropped from it, which count as zeros), else lengths[b]; lengths and counts (B) in
    //     backend memory, 1 <= lengths[b] <= T, counts[b] >= 1. backward: dinp += dout / n on
    //     those positions.
    void (*mean_pool_forward)(float *out, const float *inp, const int32_t *lengths,
                              const int32_t *counts, int B, int T, int C);
    void (*mean_pool_backward)(float *dinp, const float *dout, const int32_t *lengths,
                               const int32_t *counts, int B, int T, int C);

    // --- dropout with probability p (0 <= p < 1) of n elements, the elements chosen by key
    //     (kernels/dropout.h): out = kept ? in / (1 - p) : 0; out may be in. The backward is
    //     the same call on the gradient with the same key.
    void (*dropout)(float *out, const float *in, size_t n, uint64_t key, float p);

    // --- residual: out = a + b, elementwise over n. (Its backward passes dout to both
    //     inputs unchanged, so the model never calls one: see model/transformer.c.)
    void (*residual_forward)(float *out, const float *a, const float *b, size_t n);

    // --- fused softmax + cross-entropy over the first V of Vp columns (the padding columns
    //     take no part): logits (N,Vp), targets (N), losses (N) = -log softmax[target].
    //     backward: dlogits = dloss * (softmax - onehot(target)), padding columns 0;
    //     recomputes the softmax from the logits instead of storing probabilities.
    void (*crossentropy_forward)(float *losses, const float *logits, const int32_t *targets,
                                 int N, int V, int Vp);
    void (*crossentropy_backward)(float *dlogits, const float *logits, const int32_t *targets,
                                  float dloss, int N, int V, int Vp);

    // out (N) = the index of the largest of the first V logits of each row (N,Vp) (the
    //     first such index on ties): MLM and classification accuracy
    void (*argmax_rows)(int32_t *out, const float *logits, int N, int V, int Vp);

    // --- optimizer. AdamW, step t >= 1 (for bias correction), on nseg consecutive segments
    // (a model's parameter tensors, updated in one call): segment k is elements
    // [ends[k-1], ends[k]) (ends[-1] = 0) with weight decay wd[k]:
    //     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    //     p -= lr * ( (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd[k] * p )
    void (*adamw_update)(float *param, const float *grad, float *m, float *v,
                         const size_t *ends, const float *wd, int nseg, float lr, float beta1,
                         float beta2, float eps, int t);
    double (*sumsq)(const float *x, size_t n);  // sum of squares, accumulated in double
    void (*scale)(float *x, float s, size_t n);  // x *= s

    // --- mixed precision (tables with act_dtype != PB_DTYPE_FP32 only; NULL otherwise)
    pb_dtype act_dtype;  // PB_DTYPE_FP32 (0) unless the table says otherwise
    // dst (n, act_dtype) = src (n, fp32 master weights), stochastically rounded: the
    // rounding noise comes from a hash of (seed, element index), so the same seed gives the
    // same bits on every run, and the rounded weights are unbiased estimates of the masters.
    void (*params_to_act)(float *dst, const float *src, size_t n, uint64_t seed);

    // --- optional fusions (NULL in a table without them: the model then calls the ops above)
    // matmul_forward then gelu_forward (tanh GELU only) in one product: pre (N,OC) = inp (N,IC) @ weight^T +
    // bias, out (N,OC) = gelu(pre); pre is kept for the backward.
    void (*matmul_gelu_forward)(float *out, float *pre, const float *inp, const float *weight,
                                const float *bias, int N, int IC, int OC);
    // matmul_backward of the product whose input was inp = gelu(pre), then gelu_backward:
    // dweight (OC,IC), dbias (OC) += as matmul_backward; dpre (N,IC) = (dout @ weight) *
    // gelu'(pre) OVERWRITES dpre (the gradient w.r.t. gelu(pre) is never stored).
    void (*matmul_backward_gelu)(float *dpre, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, const float *pre, int N,
                                 int IC, int OC);
    // residual_forward then layernorm_forward in one pass: res (N,C) = a + b (rounded to the
    // activation type), out, mean, rstd = layernorm_forward of res; the same bits as the two.
    void (*residual_layernorm_forward)(float *res, float *out, float *mean, float *rstd,
                                       const float *a, const float *b, const float *weight,
                                       const float *bias, int N, int C, float eps);
} pb_ops;

// Bytes of one activation element of the table: 4 (fp32) or 2 (bf16).
static inline size_t pb_act_bytes(const pb_ops *ops) {
    return ops->act_dtype == PB_DTYPE_BF16 ? 2 : 4;
}

// The CPU backend (fp32, OpenMP); its attention: flash, then naive (the reference).
const pb_ops *pb_ops_cpu(void);

// The attention implementation of ops to run d with: want "auto" (or "" or NULL) takes the
// first in the table that supports d; a name takes that one. Returns NULL with one line in
// err when the named one cannot run d (naming why: head dim, dtype, mask), when the table
// has no implementation of that name (listing the ones it has), or when none can run d.
const pb_attn_impl *pb_attn_choose(const pb_ops *ops, const char *want, const pb_attn_desc *d,
                                   char *err, size_t errlen);

#endif
