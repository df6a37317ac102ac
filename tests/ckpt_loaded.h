// ckpt_loaded.h: a checkpoint loaded whole (model, AdamW moments and step, trainer state)
// into a CPU model built from the checkpoint's own config, for the suites that compare runs
// to the bit. Header-only, static.
#ifndef PEBBLE_TESTS_CKPT_LOADED_H
#define PEBBLE_TESTS_CKPT_LOADED_H

#include <criterion/criterion.h>

#include "train/checkpoint.h"
#include "train/config.h"
#include "train/model.h"
#include "train/optim.h"

typedef struct {
    pb_model m;
    pb_adamw o;
    pb_ckpt_trainer_state st;
} loaded_t;

static void load(loaded_t *x, const char *path) {
    char err[1024];
    pb_config cfg;
    config_defaults(&cfg);
    cr_assert_eq(ckpt_load_config(path, &cfg, err, sizeof err), 0, "%s", err);
    model_build(&x->m, &cfg, pb_ops_cpu());
    adamw_init(&x->o, x->m.p, 0.9f, 0.95f, 1e-8f, 0.1f);
    cr_assert_eq(ckpt_load(path, x->m.p, 1, &x->st, err, sizeof err), 0, "%s", err);
}

static void loaded_free(loaded_t *x) {
    adamw_free(&x->o);
    model_free(&x->m);
}

#endif
