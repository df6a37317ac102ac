// twins.h: two CPU models built and initialised alike, each with its AdamW, for the suites
// that step one on the whole and the other in shards and compare the two to the bit
// (test_dist.c, test_dist_nccl.c). Header-only, static.
#ifndef PEBBLE_TESTS_TWINS_H
#define PEBBLE_TESTS_TWINS_H

#include "train/config.h"
#include "train/model.h"
#include "train/optim.h"

// a tiny gpt2 (L 1, NH 2, C 16, T 8, V 40), the same init (seed 3) in a and b, and an AdamW
// of the same hyperparameters for each
static void twins_init(pb_model *a, pb_model *b, pb_adamw *oa, pb_adamw *ob) {
    pb_config cfg;
    config_defaults(&cfg);
    cfg.n_layer = 1, cfg.n_head = 2, cfg.n_embd = 16, cfg.seq_len = 8, cfg.vocab_size = 40;
    model_build(a, &cfg, pb_ops_cpu());
    model_build(b, &cfg, pb_ops_cpu());
    model_init_weights(a, 3);
    model_init_weights(b, 3);
    adamw_init(oa, a->p, 0.9f, 0.95f, 1e-8f, 0.1f);
    adamw_init(ob, b->p, 0.9f, 0.95f, 1e-8f, 0.1f);
}

static void twins_free(pb_model *a, pb_model *b, pb_adamw *oa, pb_adamw *ob) {
    adamw_free(oa);
    adamw_free(ob);
    model_free(a);
    model_free(b);
}

#endif
