// test_dist_nccl.c: the parts of the GPU's NCCL path that need no GPU: loading libnccl (a
// missing library, one without NCCL's calls, the real one where installed), the backward's
// layer hook (each block's gradients final when it fires, in order L-1 .. 0, the blocks'
// ranges and the rest covering the store once), the sharded norm and AdamW pieces against
// the whole, and the config checks (dist.reduce = nccl on the CPU refused with one line).
// The path itself runs on the GPU machine: tests/gpu/nccl_run.sh.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli.h"
#include "tests/twins.h"
#include "train/config.h"
#include "train/dist_nccl.h"
#include "train/model.h"
#include "train/optim.h"

TestSuite(dist_nccl, .fini = cleanup);

// ----------------------------------------------------------------------------
// loading the library

Test(dist_nccl, a_missing_library_is_one_line_naming_it) {
    setenv("PEBBLE_NCCL_LIB", "/nonexistent/pebble-test/libnccl.so.2", 1);
    char err[1024] = "";
    cr_assert_eq(dist_nccl_load(err, sizeof err), -1);
    if (dist_nccl_built()) {
        cr_assert(strstr(err, "cannot load NCCL (/nonexistent/pebble-test/libnccl.so.2)"), "%s",
                  err);
        cr_assert(strstr(err, "PEBBLE_NCCL_LIB"), "the line should name the override: %s", err);
    } else {
        cr_assert(strstr(err, "built without NCCL"), "%s", err);
    }
    cr_assert(!strchr(err, '\n'), "one line: %s", err);
}

Test(dist_nccl, a_library_without_nccls_calls_is_refused) {
    if (!dist_nccl_built()) cr_skip_test("built without NCCL");
    setenv("PEBBLE_NCCL_LIB", "libm.so.6", 1);  // loads, but has no NCCL symbol
    char err[1024] = "";
    cr_assert_eq(dist_nccl_load(err, sizeof err), -1);
    cr_assert(strstr(err, "libm.so.6 is not a usable NCCL: it has no ncclGetVersion"), "%s", err);
}

// Where the toolkit ships libnccl (this machine; not the GPU machine, whose copy is in a
// Python package), the calls are all found. Without any copy, skipped.
Test(dist_nccl, the_real_library_has_every_call) {
    if (!dist_nccl_built()) cr_skip_test("built without NCCL");
    const char *paths[] = {"/usr/local/cuda/lib/libnccl.so.2", "/usr/local/cuda/lib64/libnccl.so.2",
                           "/usr/lib/x86_64-linux-gnu/libnccl.so.2"};
    const char *found = NULL;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !found; i++)
        if (access(paths[i], R_OK) == 0) found = paths[i];
    if (!found) cr_skip_test("no libnccl.so.2 installed here");
    setenv("PEBBLE_NCCL_LIB", found, 1);
    char err[1024] = "";
    cr_assert_eq(dist_nccl_load(err, sizeof err), 0, "%s", err);
}

// ----------------------------------------------------------------------------
// the backward's hook

static pb_model *hooked;
static float *snap;     // the gradient as it was when each block's hook fired, per block
static int calls[16], ncalls;
static size_t span_lo[16], span_hi[16];

static void record(void *ctx, int l) {
    cr_assert_eq(ctx, (void *)&calls);
    cr_assert(ncalls < 16);
    calls[ncalls++] = l;
    // the CPU ops have finished when they return: copy what the block holds now
    memcpy(snap + span_lo[l], hooked->p->grad + span_lo[l],
           (span_hi[l] - span_lo[l]) * sizeof(float));
}

static void hook_case(const char *family) {
    pb_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.model_family, sizeof cfg.model_family, "%s", family);
    cfg.n_layer = 3, cfg.n_head = 2, cfg.n_embd = 16, cfg.seq_len = 8, cfg.vocab_size = 40;
    int bert = strcmp(family, "bert") == 0;
    if (bert) {
        cfg.vocab_size = 160;
        snprintf(cfg.head, sizeof cfg.head, "mlm");
    }
    pb_model m;
    model_build(&m, &cfg, pb_ops_cpu());
    model_init_weights(&m, 11);
    hooked = &m;
    size_t n = m.p->num_floats;
    cr_assert_eq(model_layer_spans(&m, span_lo, span_hi), 3, "%s: blocks not contiguous", family);
    // The reference: each block's tensors found by name in the table.
    size_t covered = 0;
    for (int l = 0; l < 3; l++) {
        char pre[64];
        snprintf(pre, sizeof pre, bert ? "bert.encoder.layer.%d." : "transformer.h.%d.", l);
        size_t lo = (size_t)-1, hi = 0, sum = 0;
        int k = 0;
        for (int i = 0; i < m.p->num; i++) {
            const pb_param *p = &m.p->tab[i];
            if (strncmp(p->name, pre, strlen(pre)) != 0) continue;
            k++;
            lo = p->offset < lo ? p->offset : lo;
            hi = p->offset + p->numel > hi ? p->offset + p->numel : hi;
            sum += p->numel;
        }
        // (BERT's table names query, key and value apart: 16 tensors, the same elements)
        cr_assert_eq(k, bert ? 16 : 12, "%s block %d: %d tensors", family, l, k);
        cr_assert_eq(span_lo[l], lo, "%s block %d", family, l);
        cr_assert_eq(span_hi[l], hi, "%s block %d", family, l);
        cr_assert_eq(hi - lo, sum);
        covered += sum;
    }
    cr_assert_lt(covered, n, "the embeddings and heads are outside the blocks");
    snap = calloc(n, sizeof(float));
    model_set_layer_hook(&m, record, &calls);
    int B = 2, T = 8;
    int32_t in[16], tg[16], len[2] = {8, 8};
    for (int i = 0; i < B * T; i++) {
        in[i] = bert ? 104 + (i * 7) % 50 : (i * 7) % 40;
        tg[i] = bert ? (i % 3 == 0 ? 104 + (i * 5) % 50 : -1) : (i * 5 + 1) % 40;
    }
    // Two micro-batches accumulated: the hook fires in each backward; the second's snapshot
    // must be the final gradient of its block.
    for (int k = 0; k < 2; k++) {
        ncalls = 0;
        model_forward(&m, in, tg, bert ? len : NULL, NULL, B, T);
        model_backward(&m, 0.5f);
        cr_assert_eq(ncalls, 3, "%s: %d hook calls", family, ncalls);
        for (int i = 0; i < 3; i++) cr_assert_eq(calls[i], 2 - i, "%s: blocks from the top", family);
    }
    for (int l = 0; l < 3; l++)
        cr_assert(memcmp(snap + span_lo[l], m.p->grad + span_lo[l],
                         (span_hi[l] - span_lo[l]) * sizeof(float)) == 0,
                  "%s block %d: its gradient changed after its hook fired", family, l);
    int nz = 0;
    for (size_t i = span_lo[0]; i < span_hi[0]; i++) nz += m.p->grad[i] != 0.0f;
    cr_assert_gt(nz, 0, "%s: block 0 got no gradient", family);
    free(snap);
    model_free(&m);
}

Test(dist_nccl, the_layer_hook_fires_when_a_blocks_gradient_is_final_gpt2) { hook_case("gpt2"); }
Test(dist_nccl, the_layer_hook_fires_when_a_blocks_gradient_is_final_bert) { hook_case("bert"); }

// ----------------------------------------------------------------------------
// the sharded pieces against the whole

Test(dist_nccl, shard_norm_clip_and_adamw_are_the_wholes_bits) {
    pb_model a, b;
    pb_adamw oa, ob;
    twins_init(&a, &b, &oa, &ob);
    size_t n = a.p->num_floats;
    pb_dist d2 = {.world = 3};
    size_t off[4];
    dist_shards(&d2, n, off);
    // the shards' own moments, as dist_nccl keeps them
    float *m[3], *v[3];
    for (int r = 0; r < 3; r++) {
        m[r] = calloc(off[r + 1] - off[r] + 1, sizeof(float));
        v[r] = calloc(off[r + 1] - off[r] + 1, sizeof(float));
    }
    pb_rng rng;
    pb_rng_seed(&rng, 9);
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < n; i++)
            a.p->grad[i] = (float)((double)(pb_rng_u64(&rng) % 20001) / 1e4 - 1.0) * 3.0f;
        memcpy(b.p->grad, a.p->grad, n * 4);
        float na = optim_clip_grad_norm(a.p, 1.0f);
        // the whole's sum of squares at [0, n): the same norm's bits
        float nb = optim_clip_by_sumsq(b.p, 1.0f, optim_grad_sumsq(b.p, 0, n), n, n);
        cr_assert_eq(na, nb);
        double s = optim_grad_sumsq(b.p, 0, n);
        for (int r = 0; r < 3; r++) optim_clip_by_sumsq(b.p, 1.0f, s, off[r], off[r + 1]);
        cr_assert(na > 1.0f, "the case should clip (norm %g)", (double)na);
        cr_assert(memcmp(a.p->grad, b.p->grad, n * 4) == 0, "clipped shards differ");
        adamw_step(&oa, a.p, 1e-2f);
        for (int r = 0; r < 3; r++) {
            b.p->step = (uint64_t)step;
            adamw_step_shard(&ob, b.p, 1e-2f, off[r], off[r + 1], m[r], v[r]);
        }
        cr_assert_eq(a.p->step, b.p->step);
    }
    cr_assert(memcmp(a.p->mem, b.p->mem, n * 4) == 0, "weights differ");
    for (int r = 0; r < 3; r++) {
        size_t c = off[r + 1] - off[r];
        cr_assert(memcmp(a.p->m + off[r], m[r], c * 4) == 0, "shard %d's m differs", r);
        cr_assert(memcmp(a.p->v + off[r], v[r], c * 4) == 0, "shard %d's v differs", r);
        free(m[r]);
        free(v[r]);
    }
    twins_free(&a, &b, &oa, &ob);
}

// ----------------------------------------------------------------------------
// config

Test(dist_nccl, nccl_on_the_cpu_is_refused_by_the_config_check) {
    pb_config c;
    config_defaults(&c);
    char err[512] = "";
    cr_assert_eq(config_set(&c, "dist.reduce=nccl", err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_check_combinations(&c, err, sizeof err), -1);  // device = cpu
    cr_assert(strstr(err, "dist.reduce = nccl needs the GPU"), "%s", err);
    snprintf(c.device, sizeof c.device, "cuda");
    cr_assert_eq(config_check_combinations(&c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_set(&c, "dist.zero=1", err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_check_combinations(&c, err, sizeof err), 0, "nccl + ZeRO-1: %s", err);
    cr_assert_eq(config_set(&c, "dist.reduce=ring", err, sizeof err), -1, "not a choice");
}

#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set run.plot=false "               \
    "--set data.train=%s/train_*.bin --set data.val= --set sample.every=0 --set train.steps=2 "

// At run time: system.device = cpu is the config check's line; auto without a GPU is the
// trainer's, before anything is written.
Test(dist_nccl, nccl_on_the_cpu_is_one_line_at_run_time) {
    make_data("nccl-cpu");
    const char *bin = pebble_bin();
    int rc = run("%s train " TINY "--set run.dir=%s/r --set dist.reduce=nccl", bin, tmp, tmp);
    cr_assert_eq(rc, 2, "%s", output());
    cr_assert(strstr(run_stderr(), "dist.reduce = nccl needs the GPU"), "%s", output());
    if (!dist_nccl_built() || access("/dev/nvidia0", F_OK) == 0) return;  // auto would be a GPU
    rc = run("%s train " TINY "--set run.dir=%s/r2 --set dist.reduce=nccl --set system.device=auto",
             bin, tmp, tmp);
    cr_assert_eq(rc, 2, "%s", output());
    cr_assert(strstr(run_stderr(), "pebble: dist.reduce = nccl needs the GPU, and training runs "
                                   "on the CPU here (system.device = auto, no usable GPU)"),
              "%s", output());
    char p[400];
    snprintf(p, sizeof p, "%s/r2/metrics.jsonl", tmp);
    cr_assert_neq(access(p, F_OK), 0, "a run started");
}

// A torchrun-style world of two on the CPU still needs MPI (the NCCL path alone takes it).
Test(dist_nccl, torchrun_world_on_the_cpu_still_needs_mpi) {
    make_data("nccl-torchrun");
    int rc = run("RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 %s train " TINY "--set run.dir=%s/r",
                 pebble_bin(), tmp, tmp);
    cr_assert_eq(rc, 2, "%s", output());
    cr_assert(strstr(run_stderr(), "the CPU path exchanges gradients over MPI"), "%s", output());
}
