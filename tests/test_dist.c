// test_dist.c: data parallelism on the CPU. The pieces against independent references (the
// gradient tree against a recursive sum in the aligned tree, AdamW on shards against AdamW on
// the whole, the NCCL id file between two processes), then build/pebble under mpirun -np 2
// against one rank with twice the accumulation: losses, parameters and AdamW state equal to
// the bit (gpt2 and bert mlm, ZeRO 0 and 1), resumes across world sizes, a config mismatch
// refused, a killed rank ending the other in bounded time, SIGTERM to one rank, --nproc 2.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/ckpt_loaded.h"
#include "tests/cli.h"
#include "tests/twins.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/model.h"
#include "train/optim.h"

TestSuite(dist, .fini = cleanup);

// ----------------------------------------------------------------------------
// the gradient tree

// The reference: the aligned tree over leaves [lo, lo + 2^s) by its definition, recursively.
static float aligned(const float *x, int n, int lo, int size) {
    if (lo >= n) return NAN;  // empty: never reached through a non-empty node
    if (size == 1) return x[lo];
    int h = size / 2;
    if (lo + h >= n) return aligned(x, n, lo, h);
    return aligned(x, n, lo, h) + aligned(x, n, lo + h, h);
}

static float aligned_sum(const float *x, int n) {
    int size = 1;
    while (size < n) size *= 2;
    return aligned(x, n, 0, size);
}

// Leaves chosen so that every order of addition rounds differently.
static void leaves(float *x, int n, int width, unsigned seed) {
    pb_rng r;
    pb_rng_seed(&r, seed);
    for (int i = 0; i < n * width; i++)
        x[i] = (float)((pb_rng_u64(&r) % 2000001) / 1000.0 - 1000.0) * (i % 3 ? 1e-3f : 1e3f);
}

Test(dist, tree_is_the_aligned_tree_for_any_count) {
    enum { W = 5, MAXN = 13 };
    static float x[MAXN * W], out[W], col[MAXN];
    int orders_differ = 0;
    for (int n = 1; n <= MAXN; n++) {
        leaves(x, n, W, (unsigned)n);
        dist_tree t;
        dist_tree_init(&t, W);
        for (int i = 0; i < n; i++) dist_tree_add(&t, x + i * W);
        dist_tree_sum(&t, out);
        cr_assert_leq(t.nbuf, 1 + (int)ceil(log2(n)) + 1, "n %d: %d buffers", n, t.nbuf);
        for (int e = 0; e < W; e++) {
            for (int i = 0; i < n; i++) col[i] = x[i * W + e];
            float want = aligned_sum(col, n), seq = 0;
            for (int i = 0; i < n; i++) seq += col[i];
            orders_differ += seq != want;
            cr_assert(memcmp(&out[e], &want, 4) == 0, "n %d elem %d: %.9g, aligned tree %.9g", n,
                      e, out[e], want);
        }
        dist_tree_free(&t);
    }
    cr_assert_gt(orders_differ, 5, "the leaves do not tell summation orders apart");
}

// Blocks of A = 2^a leaves summed alone, then the block sums in the aligned tree (what the
// ranks do), equal the one tree over all leaves for any number of blocks.
Test(dist, blocks_of_a_power_of_two_compose) {
    enum { MAXW = 6, A = 4 };
    static float x[MAXW * A], blocks[MAXW], col[MAXW * A];
    for (int W = 1; W <= MAXW; W++) {
        leaves(x, W * A, 1, 100u + (unsigned)W);
        for (int r = 0; r < W; r++) {
            dist_tree t;
            dist_tree_init(&t, 1);
            for (int k = 0; k < A; k++) dist_tree_add(&t, x + r * A + k);
            dist_tree_sum(&t, &blocks[r]);
            dist_tree_free(&t);
        }
        memcpy(col, x, sizeof(float) * W * A);
        float want = aligned_sum(col, W * A), got = aligned_sum(blocks, W);
        cr_assert(memcmp(&got, &want, 4) == 0, "W %d: %.9g vs %.9g", W, got, want);
    }
}

// ----------------------------------------------------------------------------
// AdamW on shards

Test(dist, adamw_on_shards_is_adamw_on_the_whole) {
    pb_model a, b;
    pb_adamw oa, ob;
    twins_init(&a, &b, &oa, &ob);
    size_t n = a.p->num_floats;
    for (int step = 0; step < 3; step++) {
        leaves(a.p->grad, (int)n, 1, 7u + (unsigned)step);
        memcpy(b.p->grad, a.p->grad, n * 4);
        adamw_step(&oa, a.p, 1e-2f);
        // 3 shards with boundaries inside tensors, one of them empty
        size_t cut[] = {0, 5, 5, n / 2 + 3, n};
        for (int s = 0; s < 4; s++) {
            b.p->step = (uint64_t)step;
            adamw_step_range(&ob, b.p, 1e-2f, cut[s], cut[s + 1]);
        }
        cr_assert_eq(a.p->step, b.p->step);
    }
    cr_assert(memcmp(a.p->mem, b.p->mem, n * 4) == 0, "weights differ");
    cr_assert(memcmp(a.p->m, b.p->m, n * 4) == 0 && memcmp(a.p->v, b.p->v, n * 4) == 0,
              "moments differ");
    twins_free(&a, &b, &oa, &ob);
}

// ----------------------------------------------------------------------------
// the NCCL id through a file

// Rank 1 starts first and waits; rank 0 writes after a while; a stale file of another launch
// in the directory is never read; the file's own name refused when it exists; no rank 0 is
// an error in bounded time.
Test(dist, rendezvous_file_between_two_processes) {
    make_tmp("rdzv");
    char err[512], stale[400];
    unsigned char id[128], got[128];
    for (int i = 0; i < 128; i++) id[i] = (unsigned char)(i * 37 + 11);
    snprintf(stale, sizeof stale, "%s/.pebble-rdzv-old-launch", tmp);
    FILE *f = fopen(stale, "w");
    fputs("stale", f);
    fclose(f);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {  // rank 1
        close(pipefd[0]);
        int rc = dist_rdzv_exchange(tmp, "launch-7", 1, 2, got, sizeof got, 20, err, sizeof err);
        ssize_t w = write(pipefd[1], rc == 0 ? got : (unsigned char *)err, sizeof got);
        _exit(rc == 0 && w == (ssize_t)sizeof got ? 0 : 1);
    }
    close(pipefd[1]);
    usleep(300000);  // rank 1 is waiting by now
    cr_assert_eq(dist_rdzv_exchange(tmp, "launch-7", 0, 2, id, sizeof id, 20, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(read(pipefd[0], got, sizeof got), (ssize_t)sizeof got);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank 1 failed: %.128s", (char *)got);
    cr_assert_eq(memcmp(got, id, sizeof id), 0, "rank 1 read other bytes");
    // a second rank 0 of the same launch: the file is there, never replaced
    cr_assert_eq(dist_rdzv_exchange(tmp, "launch-7", 0, 2, id, sizeof id, 1, err, sizeof err), -1);
    cr_assert(strstr(err, "exists already"), "%s", err);
    dist_rdzv_remove(tmp, "launch-7");
    char path[400];
    snprintf(path, sizeof path, "%s/.pebble-rdzv-launch-7", tmp);
    cr_assert_neq(access(path, F_OK), 0, "the file was not removed");
    // another world size is refused; no rank 0 ends the wait
    cr_assert_eq(dist_rdzv_exchange(tmp, "launch-8", 0, 4, id, sizeof id, 1, err, sizeof err), 0);
    cr_assert_eq(dist_rdzv_exchange(tmp, "launch-8", 1, 2, got, sizeof got, 1, err, sizeof err), -1);
    cr_assert(strstr(err, "written for 4 ranks"), "%s", err);
    double t0 = pb_now();
    cr_assert_eq(dist_rdzv_exchange(tmp, "launch-9", 1, 2, got, sizeof got, 0.5, err, sizeof err),
                 -1);
    cr_assert(pb_now() - t0 < 5 && strstr(err, "no rendezvous file"), "%s", err);
}

// ----------------------------------------------------------------------------
// build/pebble on 2 ranks against 1

#define MPIRUN                                                                                \
    "OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "      \
    "-x OMP_WAIT_POLICY -x OMP_NUM_THREADS "
#define TINY                                                                                \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=4 --set train.warmup_steps=2 "         \
    "--set run.plot=false --set data.train=%s/train_*.bin --set data.val=%s/val_*.bin "      \
    "--set train.val_every=2 --set train.val_batches=5 --set train.lr=3e-3 "
// 4 micro-batches a step: 1 rank x 4, 2 ranks x 2
#define STEP4 "--set train.total_batch_tokens=512 "

#define BERT                                                                                 \
    "--set model.family=bert --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 " \
    "--set model.seq_len=32 --set model.vocab_size=160 --set train.batch_size=4 "               \
    "--set train.warmup_steps=2 --set train.lr=3e-3 --set train.val_every=2 "                  \
    "--set train.val_batches=3 --set run.plot=false --set data.train=%s/train_*.bin "        \
    "--set data.val=%s/val_*.bin "

// metrics.jsonl without the timings: step, loss, lr, grad_norm, tokens; val_loss, val_acc.
static void metrics_of(const char *dir, char *out, size_t cap) {
    char p[400], line[1024];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    cr_assert(f, "no %s", p);
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char *ms = strstr(line, ", \"ms\"");
        if (ms) {  // drop "ms" and "tokens_per_s", keep "tokens"
            char *tok = strstr(ms, "\"tokens\"");
            memmove(ms + 2, tok, strlen(tok) + 1);
        }
        strncat(out, line, cap - strlen(out) - 1);
    }
    fclose(f);
}

static int count_substr(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}


// Two checkpoints: the same weights, moments, AdamW step and loader position, to the bit.
static void same_ckpt(const char *da, const char *db, int step) {
    char pa[500], pb[500];
    snprintf(pa, sizeof pa, "%s/ckpt_%08d.h5", da, step);
    snprintf(pb, sizeof pb, "%s/ckpt_%08d.h5", db, step);
    loaded_t a, b;
    load(&a, pa);
    load(&b, pb);
    size_t n = a.m.p->num_floats;
    cr_assert_eq(n, b.m.p->num_floats);
    cr_assert(memcmp(a.m.p->mem, b.m.p->mem, n * 4) == 0, "%s, %s: parameters differ", pa, pb);
    cr_assert(memcmp(a.m.p->m, b.m.p->m, n * 4) == 0, "%s, %s: AdamW m differs", pa, pb);
    cr_assert(memcmp(a.m.p->v, b.m.p->v, n * 4) == 0, "%s, %s: AdamW v differs", pa, pb);
    cr_assert_eq(a.m.p->step, b.m.p->step);
    cr_assert_eq(a.m.p->step, (uint64_t)step);
    cr_assert(a.st.train_loader.epoch == b.st.train_loader.epoch &&
                  a.st.train_loader.cursor == b.st.train_loader.cursor, "loader states differ");
    loaded_free(&a);
    loaded_free(&b);
}

static void expect_same_run(const char *da, const char *db, int steps) {
    static char a[1 << 15], b[1 << 15];
    metrics_of(da, a, sizeof a);
    metrics_of(db, b, sizeof b);
    cr_assert(strstr(a, "val_loss"), "no validation in %s", a);
    cr_assert_str_eq(a, b, "metrics of %s and %s differ", da, db);
    same_ckpt(da, db, steps);
}

static char dir_a[400], dir_b[400], dir_c[400];
static void dirs(void) {
    snprintf(dir_a, sizeof dir_a, "%s/one", tmp);
    snprintf(dir_b, sizeof dir_b, "%s/two", tmp);
    snprintf(dir_c, sizeof dir_c, "%s/zero1", tmp);
}

// The gpt2 data and the reference: 4 steps of 4 micro-batches on one rank, into dir_a.
static void one_rank_reference(const char *name) {
    make_data(name);
    dirs();
    cr_assert_eq(run("%s train " TINY STEP4 "--set train.steps=4 --set run.dir=%s", pebble_bin(),
                     tmp, tmp, dir_a), 0, "%s", output());
}

Test(dist, gpt2_two_ranks_are_one_rank_with_twice_the_accumulation) {
    one_rank_reference("dist-gpt2");
    const char *bin = pebble_bin();
    cr_assert_eq(run(MPIRUN "%s train " TINY STEP4 "--set train.steps=4 --set run.dir=%s", bin,
                     tmp, tmp, dir_b), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "dist: 2 ranks (openmpi launch), 2 micro-steps each"), "%s",
              output());
    expect_same_run(dir_a, dir_b, 4);
    cr_assert_eq(run(MPIRUN "%s train " TINY STEP4 "--set train.steps=4 --set dist.zero=1 "
                     "--set run.dir=%s", bin, tmp, tmp, dir_c), 0, "%s", output());
    expect_same_run(dir_a, dir_c, 4);
    // and the reference is no accident: in-place accumulation on one rank rounds otherwise
    char d[400];
    snprintf(d, sizeof d, "%s/sum", tmp);
    cr_assert_eq(run("%s train " TINY STEP4 "--set train.steps=4 --set dist.reduce=sum "
                     "--set run.dir=%s", bin, tmp, tmp, d), 0, "%s", output());
    loaded_t x, y;
    char pa[500], pb[500];
    snprintf(pa, sizeof pa, "%s/ckpt_00000004.h5", dir_a);
    snprintf(pb, sizeof pb, "%s/ckpt_00000004.h5", d);
    load(&x, pa);
    load(&y, pb);
    cr_assert(memcmp(x.m.p->mem, y.m.p->mem, x.m.p->num_floats * 4) != 0,
              "the tree and in-place sums gave the same bits: the test cannot tell them apart");
    loaded_free(&x);
    loaded_free(&y);
}

// With model.dropout the masks are keyed by each micro-batch's step-global first row, so two
// ranks drop what one rank accumulating both halves drops: the same run to the bit.
Test(dist, dropout_two_ranks_are_one_rank_with_twice_the_accumulation) {
    make_data("dist-drop");
    dirs();
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " TINY STEP4 "--set model.dropout=0.2 --set train.steps=4 "
                     "--set run.dir=%s", bin, tmp, tmp, dir_a), 0, "%s", output());
    cr_assert_eq(run(MPIRUN "%s train " TINY STEP4 "--set model.dropout=0.2 --set train.steps=4 "
                     "--set run.dir=%s", bin, tmp, tmp, dir_b), 0, "%s", output());
    expect_same_run(dir_a, dir_b, 4);
}

Test(dist, bert_mlm_two_ranks_are_one_rank_with_twice_the_accumulation) {
    make_tmp("dist-bert");
    make_bert_pieces("train_000000.bin", 12000);
    make_bert_pieces("val_000000.bin", 3000);
    dirs();
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " BERT STEP4 "--set train.steps=4 --set run.dir=%s", bin, tmp, tmp,
                     dir_a), 0, "%s", output());
    cr_assert_eq(run(MPIRUN "%s train " BERT STEP4 "--set train.steps=4 --set run.dir=%s", bin,
                     tmp, tmp, dir_b), 0, "%s", output());
    expect_same_run(dir_a, dir_b, 4);
    cr_assert(strstr(slurp(strcat(strcpy(dir_c, dir_b), "/metrics.jsonl")), "val_acc"),
              "no accuracy");
    dirs();
    cr_assert_eq(run(MPIRUN "%s train " BERT STEP4 "--set train.steps=4 --set dist.zero=1 "
                     "--set run.dir=%s", bin, tmp, tmp, dir_c), 0, "%s", output());
    expect_same_run(dir_a, dir_c, 4);
}

// A run checkpointed at step 2 on 2 ranks continues on 1 (and the reverse) as the straight
// run on 1 rank.
Test(dist, checkpoints_resume_across_world_sizes) {
    one_rank_reference("dist-resume");
    const char *bin = pebble_bin();
    for (int two_first = 1; two_first >= 0; two_first--) {
        char d[400];
        snprintf(d, sizeof d, "%s/r%d", tmp, two_first);
        const char *first = two_first ? MPIRUN : "", *then = two_first ? "" : MPIRUN;
        cr_assert_eq(run("%s%s train " TINY STEP4 "--set train.steps=4 --set dist.zero=1 "
                         "--set checkpoint.every=2 --set run.dir=%s",
                         first, bin, tmp, tmp, d), 0, "%s", output());
        // back to step 2: the later checkpoint and log lines go
        char cmd[3000];
        snprintf(cmd, sizeof cmd, "rm %s/ckpt_00000004.h5 %s/latest && "
                 "head -n 3 %s/metrics.jsonl > %s/m && mv %s/m %s/metrics.jsonl", d, d, d, d, d, d);
        cr_assert_eq(system(cmd), 0);
        cr_assert_eq(run("%s%s train " TINY STEP4 "--set train.steps=4 --set run.dir=%s "
                         "--resume auto", then, bin, tmp, tmp, d), 0, "%s", output());
        cr_assert(strstr(run_stdout(), "resume: "), "%s", output());
        expect_same_run(dir_a, d, 4);
    }
}

// ----------------------------------------------------------------------------
// launches and failures

Test(dist, config_mismatch_across_ranks_is_one_line) {
    make_data("dist-mismatch");
    const char *bin = pebble_bin();
    int rc = run("OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                 "-np 1 %s train " TINY "--set train.steps=2 --set run.dir=%s/m : -np 1 %s train "
                 TINY "--set train.steps=2 --set run.dir=%s/m --set train.lr=2e-3",
                 bin, tmp, tmp, tmp, bin, tmp, tmp, tmp);
    cr_assert_neq(rc, 0, "%s", output());
    const char *want = "pebble: rank 1's run differs from rank 0's: 'train.lr = 0.002' there, "
                       "'train.lr = 0.003' on rank 0";
    cr_assert(strstr(output(), want), "expected '%s' in: %s", want, output());
    char p[400];
    snprintf(p, sizeof p, "%s/m/metrics.jsonl", tmp);
    cr_assert_neq(access(p, F_OK), 0, "a run started");
}

// A rank killed (SIGKILL) after step 3 of a long run: the other exits non-zero with a line
// naming what happened, in bounded time (mpirun stops the job; a rank that waits on a dead
// peer says so).
Test(dist, a_killed_rank_ends_the_other_in_bounded_time) {
    make_data("dist-kill");
    double t0 = pb_now();
    int rc = run(MPIRUN "-x PEBBLE_TEST_DIE_AT_STEP=3 -x PEBBLE_TEST_SIGNAL_RANK=1 %s train " TINY
                 STEP4 "--set train.steps=100000 --set dist.timeout=20 --set run.dir=%s/k", pebble_bin(),
                 tmp, tmp, tmp);
    double dt = pb_now() - t0;
    cr_assert_neq(rc, 0, "%s", output());
    cr_assert_lt(dt, 30, "took %.1f s", dt);
    cr_assert(strstr(output(), "exited on signal 9") || strstr(output(), "pebble: rank 0: "),
              "no line says a rank died: %s", output());
    cr_assert(strstr(slurp(strcat(strcpy(dir_a, tmp), "/k/metrics.jsonl")), "\"step\": 3,"),
              "the run did not get to step 3");
}

// SIGTERM to rank 1 alone after step 2: every rank stops there, one checkpoint, exit 0; the
// resumed run on 2 ranks ends as the straight one.
Test(dist, sigterm_to_one_rank_checkpoints_once_and_every_rank_exits_0) {
    one_rank_reference("dist-term");
    const char *bin = pebble_bin();
    cr_assert_eq(run(MPIRUN "-x PEBBLE_TEST_SIGNAL_AT_STEP=2 -x PEBBLE_TEST_SIGNAL_RANK=1 %s train "
                     TINY STEP4 "--set train.steps=4 --set run.dir=%s", bin, tmp, tmp, dir_b), 0,
                 "%s", output());
    cr_assert(strstr(run_stdout(), "stopped by SIGTERM after step 2 of 4"), "%s", output());
    char p[500];
    snprintf(p, sizeof p, "%s/ckpt_00000002.h5", dir_b);
    cr_assert_eq(access(p, F_OK), 0, "no checkpoint of step 2");
    cr_assert_eq(count_substr(run_stdout(), "checkpoint: "), 1, "%s", output());
    cr_assert_eq(run(MPIRUN "%s train " TINY STEP4 "--set train.steps=4 --set run.dir=%s "
                     "--resume auto", bin, tmp, tmp, dir_b), 0, "%s", output());
    expect_same_run(dir_a, dir_b, 4);
}

// A stop while rank 0's checkpoint takes longer than the 10 s the ranks give a peer after a
// stop signal: the others wait for it (the whole dist.timeout), so the stop's checkpoint is
// written whole and every rank exits 0; before, they took rank 0 for dead and aborted it.
Test(dist, a_slow_checkpoint_after_a_stop_is_waited_for, .timeout = 120) {
    one_rank_reference("dist-slow");
    const char *bin = pebble_bin();
    cr_assert_eq(run(MPIRUN "-x PEBBLE_TEST_SIGNAL_AT_STEP=2 -x PEBBLE_TEST_SIGNAL_RANK=1 "
                     "-x PEBBLE_TEST_SLOW_CHECKPOINT=12 %s train " TINY STEP4 "--set train.steps=4 "
                     "--set run.dir=%s", bin, tmp, tmp, dir_b), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "stopped by SIGTERM after step 2 of 4"), "%s", output());
    char p[500];
    snprintf(p, sizeof p, "%s/ckpt_00000002.h5", dir_b);
    cr_assert_eq(access(p, F_OK), 0, "no checkpoint of step 2: %s", output());
    cr_assert(!strstr(output(), "did not answer"), "%s", output());
}

// pebble train --nproc 2, no mpirun on the command line: the same run as mpirun -np 2 (and so
// as one rank).
Test(dist, nproc_2_without_mpirun) {
    one_rank_reference("dist-nproc");
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train --nproc 2 " TINY STEP4 "--set train.steps=4 --set run.dir=%s", bin,
                     tmp, tmp, dir_b), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "dist: 2 ranks"), "%s", output());
    expect_same_run(dir_a, dir_b, 4);
}

// One line each: a global batch the ranks cannot share, a launch with torchrun's variables on
// the CPU.
Test(dist, launch_errors) {
    make_data("dist-err");
    const char *bin = pebble_bin();
    cr_assert_eq(run(MPIRUN "%s train " TINY "--set train.total_batch_tokens=384 "
                     "--set run.dir=%s/e", bin, tmp, tmp, tmp), 2);
    cr_assert(strstr(output(), "pebble: train.total_batch_tokens = 384 is 3 micro-batches of 4 "
                     "x 32, which 2 ranks cannot share evenly"), "%s", output());
    cr_assert_eq(run("RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 %s train " TINY "--set run.dir=%s/e", bin,
                     tmp, tmp, tmp), 2);
    cr_assert(strstr(output(), "pebble: launched as rank 1 of 2 by RANK/WORLD_SIZE"), "%s",
              output());
}

// Ctrl-C to pebble train --nproc 2 (SIGINT to its whole process group, as a terminal sends
// it), then SIGTERM to the launcher alone: the ranks stop at a micro-batch, one checkpoint,
// exit 0. (mpirun, signalled itself, SIGKILLs the ranks one second after its SIGTERM, before
// a slow step can end, and exits 1.)
Test(dist, nproc_stops_on_ctrl_c_and_sigterm_with_a_checkpoint_and_exit_0) {
    make_data("dist-nproc-sig");
    const char *bin = pebble_bin();
    for (int term = 0; term <= 1; term++) {
        char d[400], p[500];
        snprintf(d, sizeof d, "%s/s%d", tmp, term);
        snprintf(p, sizeof p, "%s/metrics.jsonl", d);
        pid_t pid = spawn("OMP_NUM_THREADS=1 exec setsid %s train --nproc 2 " TINY STEP4
                          "--set train.steps=100000 --set run.dir=%s", bin, tmp, tmp, d);
        double t0 = pb_now();
        while (pb_now() - t0 < 60 && !(access(p, F_OK) == 0 && strstr(slurp(p), "\"step\": 3,")))
            usleep(20000);
        cr_assert_lt(pb_now() - t0, 60, "the run did not get to step 3: %s", output());
        cr_assert_eq(kill(term ? pid : -pid, term ? SIGTERM : SIGINT), 0);
        int st = 0;
        while (waitpid(pid, &st, WNOHANG) == 0 && pb_now() - t0 < 90) usleep(20000);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %d: %s",
                  term ? "SIGTERM" : "SIGINT", st, output());
        cr_assert(strstr(run_stdout(), term ? "stopped by SIGTERM" : "stopped by SIGINT"), "%s",
                  output());
        cr_assert_eq(count_substr(run_stdout(), "checkpoint: "), 1, "%s", output());
    }
}

// The data files the ranks compare include data.test's: each rank here runs in its own
// directory (mpirun -wdir) with the same relative paths, and only the test files differ.
Test(dist, a_test_file_that_differs_across_ranks_is_one_line) {
    make_data("dist-testdata");
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cd %s && mkdir a b && for x in a b; do cp train_000000.bin "
             "val_000000.bin $x/; done && cp val_000000.bin a/test_000000.bin && "
             "cp train_000000.bin b/test_000000.bin", tmp);
    cr_assert_eq(system(cmd), 0);
    char bin[4096];
    cr_assert(realpath(pebble_bin(), bin), "no %s", pebble_bin());  // -wdir: not relative
#define REL "--set data.train=train_*.bin --set data.val=val_*.bin --set data.test=test_*.bin "
    int rc = run("OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                 "-np 1 -wdir %s/a %s train " TINY REL "--set train.steps=2 --set run.dir=%s/m : "
                 "-np 1 -wdir %s/b %s train " TINY REL "--set train.steps=2 --set run.dir=%s/m",
                 tmp, bin, tmp, tmp, tmp, tmp, bin, tmp, tmp, tmp);
#undef REL
    cr_assert_neq(rc, 0, "%s", output());
    cr_assert(strstr(output(), "pebble: rank 1's run differs from rank 0's: "
                     "'data-files.test_000000.bin = 41024' there, 'data-files.test_000000.bin = 11024' on rank 0"), "%s", output());
}
