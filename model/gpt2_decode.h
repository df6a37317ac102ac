// gpt2_decode.h: GPT-2 inference with a KV cache, for generating text (pebble sample, and
// the samples printed during training).
//
// gpt2_forward recomputes every position of a sequence. Generating N tokens that way costs
// O(N^2) layer passes; with a cache of each layer's keys and values, a new token is one pass
// over one row: its query attends to the cached keys (kernels/attention/decode.c), and its
// own key and value are appended. The logits equal gpt2_forward's for the same tokens, up to
// fp32 rounding (tests/test_sample.c).
//
// The blocks are transformer.c's forward; only their attention differs (the new rows attend to
// the cache, through the op table's attention_decode). A table without attention_decode (the
// CUDA ones) cannot decode: a model trained there is first copied into a CPU model
// (gpt2_decode_copy_weights).
#ifndef PEBBLE_GPT2_DECODE_H
#define PEBBLE_GPT2_DECODE_H

#include <stdint.h>

#include "model/gpt2.h"

typedef struct gpt2_kv_cache {
    int L, NH, D, C, maxT, Vp;
    int len;       // positions held: 0..len-1
    float *k, *v;  // (L, NH, maxT, D) each
    // working rows for up to `rows` positions at once (a prefill), grown on demand: one
    // block's activations (transformer.h), which every block reuses (nothing is kept for a
    // backward), so acts.h[l] all point at the same buffers
    int rows;
    void *rows_mem;
    int32_t *tokens;  // (rows)
    float *x;         // (rows, C) the embeddings
    tf_acts acts;
    float *logits;    // (Vp)
} gpt2_kv_cache;

// A cache for m (whose table has attention_decode): maxT = m->cfg.seq_len positions.
void gpt2_decode_init(gpt2_kv_cache *kv, const gpt2 *m);
void gpt2_decode_free(gpt2_kv_cache *kv);

// Empties the cache and runs tokens[0..n) at positions 0..n-1 in one pass (matmuls over n
// rows), 1 <= n <= seq_len. logits (Vp, may be NULL) gets the logits of position n-1:
// the distribution of the token at position n.
void gpt2_decode_prefill(const gpt2 *m, gpt2_kv_cache *kv, const int32_t *tokens, int n,
                         float *logits);

// Runs one token at position pos (0 <= pos <= kv->len, pos < seq_len): computes only that
// row, attending to the cached positions 0..pos-1, and leaves the cache holding 0..pos
// (anything cached from pos on is replaced). logits (Vp, may be NULL): those of position pos.
void gpt2_decode_step(const gpt2 *m, gpt2_kv_cache *kv, int32_t token, int pos,
                      float *logits);

// Copies src's weights (any backend) into dst, a model built with the same config on the
// CPU backend: how a model trained on the GPU gets sampled.
void gpt2_decode_copy_weights(gpt2 *dst, const gpt2 *src);

#endif
