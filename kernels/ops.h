// ops.h: the op table. The model is written once, as a sequence of calls through a pb_ops
// table; each backend (cpu/ now, cuda/ later) fills one. Every pointer below points into
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

typedef enum { PB_ATTN_FLASH = 0, PB_ATTN_NAIVE = 1 } pb_attn_kind;

// The element type of activations and of the weights ops read (above). Grows at the end.
typedef enum { PB_DTYPE_FP32 = 0, PB_DTYPE_BF16 = 1 } pb_dtype;

typedef struct pb_ops {
    const char *name;  // "cpu", "cuda"

    // --- memory of the backend
    void *(*alloc)(size_t bytes);  // zeroed, 64-byte aligned; exits on failure
    void (*free)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);

    // --- embedding: out (B,T,C) = wte[inp[b,t]] (Vp,C) + wpe[t] (maxT,C); inp (B,T)
    void (*encoder_forward)(float *out, const int32_t *inp, const float *wte, const float *wpe,
                            int B, int T, int C);
    void (*encoder_backward)(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                             int B, int T, int C);

    // --- LayerNorm over the last dim, eps 1e-5: inp, out (N,C); weight, bias (C);
    //     mean, rstd (N) are saved for backward
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C);
    void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C);

    // --- matmul with bias: out (N,OC) = inp (N,IC) @ weight^T + bias;
    //     weight (OC,IC) row-major, bias (OC) or NULL (then dbias is ignored)
    void (*matmul_forward)(float *out, const float *inp, const float *weight, const float *bias,
                           int N, int IC, int OC);
    void (*matmul_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int IC, int OC);

    // --- multi-head scaled dot-product attention, scale 1/sqrt(D)
    //     qkv (B,T,3C): q, k, v side by side, head h at channels [h*D, (h+1)*D) of each;
    //     out (B,T,C) heads concatenated; lse (B,NH,T) log-sum-exp of each score row, saved
    //     for backward; causal != 0 masks keys after the query.
    void (*attention_forward)(float *out, float *lse, const float *qkv, int B, int T, int C,
                              int NH, int causal);
    void (*attention_backward)(float *dqkv, const float *dout, const float *out,
                               const float *lse, const float *qkv, int B, int T, int C, int NH,
                               int causal);

    // --- GELU, tanh approximation, elementwise over n
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);

    // --- residual: out = a + b, elementwise over n
    void (*residual_forward)(float *out, const float *a, const float *b, size_t n);
    void (*residual_backward)(float *da, float *db, const float *dout, size_t n);

    // --- fused softmax + cross-entropy over the first V of Vp columns (the padding columns
    //     take no part): logits (N,Vp), targets (N), losses (N) = -log softmax[target].
    //     backward: dlogits = dloss * (softmax - onehot(target)), padding columns 0;
    //     recomputes the softmax from the logits instead of storing probabilities.
    void (*crossentropy_forward)(float *losses, const float *logits, const int32_t *targets,
                                 int N, int V, int Vp);
    void (*crossentropy_backward)(float *dlogits, const float *logits, const int32_t *targets,
                                  float dloss, int N, int V, int Vp);

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
    // matmul_forward then gelu_forward in one product: pre (N,OC) = inp (N,IC) @ weight^T +
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
                                       const float *bias, int N, int C);
} pb_ops;

// Bytes of one activation element of the table: 4 (fp32) or 2 (bf16).
static inline size_t pb_act_bytes(const pb_ops *ops) {
    return ops->act_dtype == PB_DTYPE_BF16 ? 2 : 4;
}

// The CPU backend (fp32, OpenMP). attn picks the attention algorithm the table points to.
const pb_ops *pb_ops_cpu(pb_attn_kind attn);

#endif
