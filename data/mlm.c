// mlm.c: masked-LM corruption (see mlm.h).
#include "data/mlm.h"

#include "kernels/common.h"

// splitmix64's finalizer: a bijection of 64 bits whose every output bit depends on every
// input bit, so one call per key component makes a counter-based hash.
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The hash of one position. The constant keeps it apart from other users of the same seed
// (the loader's shuffle, weight init).
static uint64_t mlm_key(uint64_t seed, uint64_t step, uint64_t row, uint64_t pos) {
    uint64_t h = mix64(seed ^ 0x6D6C6D5F6D61736Bull);  // "mlm_mask"
    h = mix64(h ^ step);
    h = mix64(h ^ row);
    return mix64(h ^ pos);
}

static int maskable(int32_t id) { return id != WP_CLS && id != WP_SEP && id != WP_PAD; }

int64_t mlm_mask(pb_batch *b, int vocab_size, double prob, uint64_t seed, uint64_t step,
                 uint64_t first_row) {
    PB_ASSERT(vocab_size > WP_MASK && prob >= 0.0 && prob <= 1.0);
    const int B = b->B, T = b->T;
    // Decisions compare 32-bit fields of the hash with thresholds in units of 2^-32: the high
    // half chooses (P = prob, to 2^-32), the low half picks mask / random / keep.
    const uint64_t two32 = 1ull << 32;
    const uint64_t choose = prob >= 1.0 ? two32 : (uint64_t)(prob * 4294967296.0);
    const uint64_t to_mask = (uint64_t)(0.8 * 4294967296.0), to_random = (uint64_t)(0.9 * 4294967296.0);
    int64_t n = 0;
    for (int r = 0; r < B; r++) {
        int32_t *in = b->inputs + (size_t)r * T, *tg = b->targets + (size_t)r * T;
        int len = b->lengths[r];
        PB_ASSERT(len >= 1 && len <= T);
        for (int t = 0; t < T; t++) {
            tg[t] = -1;
            if (t >= len || !maskable(in[t])) continue;
            uint64_t h = mlm_key(seed, step, first_row + (uint64_t)r, (uint64_t)t);
            if ((h >> 32) >= choose) continue;
            tg[t] = in[t];
            n++;
            uint64_t act = h & 0xFFFFFFFFull;
            if (act < to_mask) {
                in[t] = WP_MASK;
            } else if (act < to_random) {
                // A fresh hash for the id; multiply-shift maps 32 bits onto [0, V) with a bias
                // below V / 2^32 (< 1e-5 for BERT's 30522).
                uint64_t u = mix64(h) >> 32;
                in[t] = (int32_t)((u * (uint64_t)vocab_size) >> 32);
            }
        }
    }
    return n;
}

uint64_t mlm_first_row(int micro, int rank, int per_rank, int B) {
    PB_ASSERT(micro >= 0 && per_rank >= 1 && rank >= 0 && B > 0);
    return ((uint64_t)rank * (uint64_t)per_rank + (uint64_t)micro) * (uint64_t)B;
}
