// test_configs.c: every recipe in configs/ loads, passes the run checks and describes a model
// pebble builds (model_check_config), and says the shape its comments promise: a file that a
// user copies must not fail at startup.
#include <criterion/criterion.h>
#include <glob.h>
#include <string.h>

#include "train/config.h"
#include "train/model.h"

static void load(const char *path, pb_config *c) {
    char err[1024] = "";
    config_defaults(c);
    cr_assert_eq(config_load_file(c, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_validate(c, err, sizeof err), 0, "%s: %s", path, err);
    cr_assert_eq(model_check_config(c, err, sizeof err), 0, "%s: %s", path, err);
}

Test(configs, every_recipe_loads_and_validates) {
    glob_t g;
    cr_assert_eq(glob("configs/*.ini", 0, NULL, &g), 0, "no configs/*.ini (run from the root)");
    cr_assert_geq(g.gl_pathc, 9);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        pb_config c;
        load(g.gl_pathv[i], &c);
    }
    globfree(&g);
}

// The shapes the README and the files' comments state.
Test(configs, recipes_have_their_published_shapes) {
    pb_config c;
    load("configs/bert-base.ini", &c);
    cr_expect(c.n_layer == 12 && c.n_embd == 768 && c.n_head == 12 && c.ffn == 3072 &&
              c.max_positions == 512 && c.vocab_size == 30522 && c.seq_len == 128);
    load("configs/lra-listops.ini", &c);
    // FlashAttention's (Nyströmformer's) ListOps model, pre-LN, lr 1e-4
    cr_expect(c.n_layer == 2 && c.n_embd == 64 && c.n_head == 2 && c.ffn == 128 &&
              c.seq_len == 2000 && c.vocab_size == 17 && c.num_labels == 10 &&
              strcmp(c.pool, "cls") == 0 && strcmp(c.norm, "pre") == 0 && c.lr == 1e-4);
    const char *pf[4] = {"configs/lra-pathfinder32.ini", "configs/lra-pathfinder64.ini",
                         "configs/lra-pathx.ini", "configs/lra-path256.ini"};
    int T[4] = {1024, 4096, 16384, 65536};
    for (int i = 0; i < 4; i++) {
        load(pf[i], &c);
        cr_expect(c.seq_len == T[i] && c.n_layer == 2 && c.n_embd == 64 && c.n_head == 2 &&
                  c.ffn == 128 && c.vocab_size == 256 && strcmp(c.pool, "mean") == 0 &&
                  strcmp(c.norm, "pre") == 0 && c.dropout == 0.1 &&
                  // Pathfinder-32: LRA's own rate (measured better, README); the others
                  // Nyströmformer's
                  c.lr == (i == 0 ? 1e-3 : 1e-4) &&
                  strcmp(c.init, "fan_in") == 0 && c.pad_token == 0, "%s", pf[i]);
        // Nyströmformer's batch of 256 images, whatever the micro-batch
        cr_expect_eq(c.total_batch_tokens, 256L * T[i], "%s", pf[i]);
    }
}
