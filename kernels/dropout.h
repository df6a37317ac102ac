// dropout.h: which elements dropout keeps, as one hash of (key, element index), so that the
// CPU and the CUDA backends, the forward and the backward, drop the same elements without
// storing a mask. Element i is kept when the top 24 bits of the hash reach thr =
// round(p 2^24); a kept element is scaled by 1 / (1 - p) (pb_ops.dropout).
#ifndef PEBBLE_DROPOUT_H
#define PEBBLE_DROPOUT_H

#include <stdint.h>

#ifdef __CUDACC__
#define PB_DROP_FN __host__ __device__ __forceinline__
#else
#define PB_DROP_FN static inline
#endif

// splitmix64's output for state key after i + 1 steps: a counter-based hash
PB_DROP_FN uint64_t pb_drop_hash(uint64_t key, uint64_t i) {
    uint64_t z = key + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

PB_DROP_FN int pb_drop_keep(uint64_t key, uint64_t i, uint32_t thr) {
    return (uint32_t)(pb_drop_hash(key, i) >> 40) >= thr;
}

// The threshold and the scale of probability p (0 <= p < 1), computed once per call on the host.
PB_DROP_FN uint32_t pb_drop_threshold(float p) { return (uint32_t)((double)p * 16777216.0 + 0.5); }
PB_DROP_FN float pb_drop_scale(float p) { return 1.0f / (1.0f - p); }

#endif
