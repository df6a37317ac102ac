// batch.h: one micro-batch of padded sequences, what the BERT loaders (data/seqloader.h) fill
// and the MLM masking (data/mlm.h) rewrites.
//
// Row b holds lengths[b] real tokens (1 .. T) then padding: inputs [PAD] (0), targets -1.
// targets are the MLM labels (-1 = no loss at that position); labels the class of each row.
#ifndef PEBBLE_BATCH_H
#define PEBBLE_BATCH_H

#include <stdint.h>

#include "data/wordpiece.h"  // the special ids: WP_PAD, WP_CLS, WP_SEP, WP_MASK

typedef struct pb_batch {
    int B, T;
    int32_t *inputs;   // (B,T) token ids, WP_PAD past the length
    int32_t *targets;  // (B,T) MLM labels: the original id where masked, -1 elsewhere
    int32_t *lengths;  // (B,) tokens before the padding, 1 .. T
    int32_t *labels;   // (B,) class labels 0 .. num_classes-1 (-1 in MLM batches)
} pb_batch;

// All four arrays in one allocation (exits on out of memory, like pb_malloc).
void batch_alloc(pb_batch *b, int B, int T);
void batch_free(pb_batch *b);  // safe on a zeroed or already freed batch

#endif
