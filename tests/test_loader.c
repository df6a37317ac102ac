// test_loader.c: Criterion tests of the token shard format (data/shard.h) and data/loader.h.
//
// The shards hold token(s, i) = 1000*s + i, so the first token of a window names its shard
// and offset; the expected windows are enumerated here independently of the loader.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/loader.h"
#include "data/shard.h"

#define VOCAB 50257
#define T_ 8

// The standard data set: five shards, one too short for a window and one empty.
static const size_t kSizes[] = {401, 7, 0, 250, 9};
#define NSHARDS (sizeof kSizes / sizeof kSizes[0])

static char g_dir[64];
static char g_pattern[128];

// Expected windows (shard, offset) in sorted-shard order, for T_.
static struct { int s; int off; } g_win[1024];
static int g_nwin;

static uint16_t token(int s, int i) { return (uint16_t)(1000 * s + i); }

static void path_in_dir(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", g_dir, name);
}

static void write_or_fail(const char *path, const uint16_t *tok, size_t n) {
    char err[512] = "";
    cr_assert_eq(shard_write(path, tok, n, err, sizeof err), 0, "shard_write: %s", err);
}

static void setup(void) {
    strcpy(g_dir, "/tmp/pebble_test_loader_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_pattern, sizeof g_pattern, "%s/shard_*.bin", g_dir);
}

static void teardown(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

TestSuite(loader, .init = setup, .fini = teardown);

// Writes the standard shards (last first, so that sorting is what puts them in order) and
// lists the expected windows: offsets 0, T, 2T, ... while off + T + 1 <= n.
static void make_standard_data(void) {
    for (int s = (int)NSHARDS - 1; s >= 0; s--) {
        uint16_t tok[1000];
        for (size_t i = 0; i < kSizes[s]; i++) tok[i] = token(s, (int)i);
        char name[64], path[256];
        snprintf(name, sizeof name, "shard_%02d.bin", s);
        path_in_dir(path, sizeof path, name);
        write_or_fail(path, tok, kSizes[s]);
    }
    g_nwin = 0;
    for (int s = 0; s < (int)NSHARDS; s++)
        for (int off = 0; off + T_ + 1 <= (int)kSizes[s]; off += T_) {
            g_win[g_nwin].s = s;
            g_win[g_nwin].off = off;
            g_nwin++;
        }
    cr_assert_eq(g_nwin, 50 + 0 + 0 + 31 + 1);  // (n-1)/T per shard, by hand
}

static pb_loader *open_or_fail(int B, int rank, int nranks, uint64_t seed, int shuffle) {
    char err[512] = "";
    pb_loader *l =
        loader_open(g_pattern, B, T_, rank, nranks, seed, shuffle, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "loader_open: %s", err);
    return l;
}

// Checks that row (in, tg) is exactly some expected window and returns its index.
static int window_id(const int32_t *in, const int32_t *tg) {
    int s = in[0] / 1000, off = in[0] % 1000;
    int id = -1;
    for (int k = 0; k < g_nwin; k++)
        if (g_win[k].s == s && g_win[k].off == off) id = k;
    cr_assert_neq(id, -1, "row starting with token %d is no expected window", in[0]);
    for (int t = 0; t < T_; t++) {
        cr_assert_eq(in[t], token(s, off + t), "input t=%d of window (%d,%d)", t, s, off);
        cr_assert_eq(tg[t], token(s, off + t + 1), "target t=%d of window (%d,%d)", t, s, off);
    }
    return id;
}

// The window ids of the next `nb` batches of B.
static void next_ids(pb_loader *l, int B, int nb, int *ids) {
    int32_t in[64 * T_], tg[64 * T_];
    cr_assert(B <= 64);
    for (int i = 0; i < nb; i++) {
        loader_next(l, in, tg);
        for (int b = 0; b < B; b++) ids[i * B + b] = window_id(in + b * T_, tg + b * T_);
    }
}

// ---------------------------------------------------------------------------------------
// shard format

Test(loader, shard_write_round_trip) {
    uint16_t tok[300];
    for (int i = 0; i < 300; i++) tok[i] = (uint16_t)(i * 217 % 65536);
    char path[256], tmp[300];
    path_in_dir(path, sizeof path, "rt.bin");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    write_or_fail(path, tok, 300);
    cr_assert_neq(access(tmp, F_OK), 0, ".tmp left behind");

    // The bytes on disk, read back by hand: header then tokens, nothing more.
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    int32_t h[256];
    cr_assert_eq(fread(h, 4, 256, f), 256);
    cr_assert_eq(h[0], 20240520);
    cr_assert_eq(h[1], 1);
    cr_assert_eq(h[2], 300);
    for (int i = 3; i < 256; i++) cr_assert_eq(h[i], 0);
    uint16_t back[301];
    cr_assert_eq(fread(back, 2, 301, f), 300);
    fclose(f);
    cr_assert_eq(memcmp(back, tok, sizeof tok), 0);

    pb_shard s;
    char err[512] = "";
    cr_assert_eq(shard_open(&s, path, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 300);
    cr_assert_eq(memcmp(s.tokens, tok, sizeof tok), 0);
    shard_close(&s);

    // Overwriting replaces the shard whole.
    write_or_fail(path, tok + 100, 5);
    cr_assert_eq(shard_open(&s, path, VOCAB, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 5);
    cr_assert_eq(s.tokens[0], tok[100]);
    cr_assert_eq(s.tokens[4], tok[104]);
    shard_close(&s);
    cr_assert_neq(access(tmp, F_OK), 0, ".tmp left behind");
}

Test(loader, shard_write_failure_reports) {
    uint16_t tok[4] = {1, 2, 3, 4};
    char path[256], err[512] = "";
    path_in_dir(path, sizeof path, "no_such_dir/x.bin");
    cr_assert_eq(shard_write(path, tok, 4, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "cannot create"), "got: %s", err);
}

// A failure after the .tmp exists (rename onto a non-empty directory) must remove the .tmp.
Test(loader, shard_write_failed_rename_leaves_no_tmp) {
    uint16_t tok[4] = {1, 2, 3, 4};
    char path[256], tmp[300], inner[300], err[512] = "";
    path_in_dir(path, sizeof path, "dir.bin");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(inner, sizeof inner, "%s/x", path);
    cr_assert_eq(mkdir(path, 0755), 0);
    FILE *f = fopen(inner, "wb");
    cr_assert_not_null(f);
    fclose(f);
    int rc = shard_write(path, tok, 4, err, sizeof err);
    int tmp_exists = access(tmp, F_OK) == 0;
    unlink(inner);
    rmdir(path);
    cr_assert_eq(rc, -1);
    cr_assert_not_null(strstr(err, "rename failed"), "got: %s", err);
    cr_assert(!tmp_exists, ".tmp left behind after a failed write");
}

Test(loader, empty_shard_is_valid) {
    char path[256], err[512] = "";
    path_in_dir(path, sizeof path, "empty.bin");
    write_or_fail(path, NULL, 0);
    pb_shard s;
    cr_assert_eq(shard_open(&s, path, VOCAB, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 0);
    shard_close(&s);
}

// ---------------------------------------------------------------------------------------
// windows

Test(loader, windows_and_targets_exact_in_order) {
    make_standard_data();
    const int B = 3;
    pb_loader *l = open_or_fail(B, 0, 1, 7, 0);
    cr_assert_eq(loader_num_tokens(l), 401 + 7 + 0 + 250 + 9);
    cr_assert_eq(loader_num_batches(l), (uint64_t)(g_nwin / B));
    int32_t in[B * T_], tg[B * T_];
    int k = 0;
    for (int i = 0; i < g_nwin / B; i++) {
        loader_next(l, in, tg);
        for (int b = 0; b < B; b++, k++) {
            int s = g_win[k].s, off = g_win[k].off;
            for (int t = 0; t < T_; t++) {
                cr_assert_eq(in[b * T_ + t], token(s, off + t), "batch %d row %d t %d", i, b, t);
                cr_assert_eq(tg[b * T_ + t], token(s, off + t + 1), "batch %d row %d t %d", i, b,
                             t);
            }
        }
    }
    // 82 windows, 27 batches of 3: the last window is dropped, then epoch 1 starts over.
    pb_loader_state st;
    loader_get_state(l, &st);
    cr_assert_eq(st.epoch, 0);
    cr_assert_eq(st.cursor, 81);
    loader_next(l, in, tg);
    cr_assert_eq(in[0], token(0, 0));
    cr_assert_eq(in[T_], token(0, T_));
    loader_get_state(l, &st);
    cr_assert_eq(st.epoch, 1);
    cr_assert_eq(st.cursor, 3);
    loader_close(l);
}

Test(loader, stride_is_T_with_one_shared_token) {
    uint16_t tok[14];
    for (int i = 0; i < 14; i++) tok[i] = (uint16_t)(100 + i);
    char path[256];
    path_in_dir(path, sizeof path, "shard_a.bin");
    write_or_fail(path, tok, 14);
    char err[512] = "";
    // T = 4: windows at 0, 4, 8 (8 + 5 = 13 <= 14); 12 + 5 > 14.
    pb_loader *l = loader_open(g_pattern, 3, 4, 0, 1, 1, 0, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_assert_eq(loader_num_batches(l), 1);
    int32_t in[12], tg[12];
    loader_next(l, in, tg);
    const int32_t want_in[12] = {100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111};
    const int32_t want_tg[12] = {101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112};
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(in[i], want_in[i], "inputs[%d]", i);
        cr_assert_eq(tg[i], want_tg[i], "targets[%d]", i);
    }
    loader_close(l);
}

// ---------------------------------------------------------------------------------------
// shuffling

static int is_permutation(const int *ids, int n) {
    char seen[1024] = {0};
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n || seen[ids[i]]) return 0;
        seen[ids[i]] = 1;
    }
    return 1;
}

Test(loader, shuffle_is_a_permutation_per_epoch_and_epochs_differ) {
    make_standard_data();
    pb_loader *l = open_or_fail(1, 0, 1, 1234, 1);
    cr_assert_eq(loader_num_batches(l), (uint64_t)g_nwin);
    int e[3][1024];
    for (int ep = 0; ep < 3; ep++) {
        next_ids(l, 1, g_nwin, e[ep]);
        cr_assert(is_permutation(e[ep], g_nwin), "epoch %d is not a permutation", ep);
    }
    int identity = 1;
    for (int i = 0; i < g_nwin; i++) identity &= e[0][i] == i;
    cr_assert(!identity, "shuffled order is the identity");
    cr_assert_neq(memcmp(e[0], e[1], g_nwin * sizeof(int)), 0, "epochs 0 and 1 give one order");
    cr_assert_neq(memcmp(e[1], e[2], g_nwin * sizeof(int)), 0, "epochs 1 and 2 give one order");
    loader_close(l);
}

Test(loader, same_seed_same_order_other_seed_other_order) {
    make_standard_data();
    pb_loader *a = open_or_fail(2, 0, 1, 99, 1);
    pb_loader *b = open_or_fail(2, 0, 1, 99, 1);
    pb_loader *c = open_or_fail(2, 0, 1, 100, 1);
    int nb = (int)loader_num_batches(a) * 2 + 5;  // into a third epoch
    int ia[1024], ib[1024], ic[1024];
    next_ids(a, 2, nb, ia);
    next_ids(b, 2, nb, ib);
    next_ids(c, 2, nb, ic);
    cr_assert_eq(memcmp(ia, ib, nb * 2 * sizeof(int)), 0);
    cr_assert_neq(memcmp(ia, ic, nb * 2 * sizeof(int)), 0);
    loader_close(a);
    loader_close(b);
    loader_close(c);
}

// ---------------------------------------------------------------------------------------
// ranks

Test(loader, ranks_disjoint_and_cover_shuffled) {
    make_standard_data();
    const int R = 3, S = g_nwin / R;  // 27 each, one window dropped
    int all[1024], share[3][1024];
    pb_loader *one = open_or_fail(1, 0, 1, 5, 1);
    next_ids(one, 1, g_nwin, all);
    loader_close(one);
    char seen[1024] = {0};
    for (int r = 0; r < R; r++) {
        pb_loader *l = open_or_fail(1, r, R, 5, 1);
        cr_assert_eq(loader_num_batches(l), (uint64_t)S);
        next_ids(l, 1, S, share[r]);
        loader_close(l);
        for (int j = 0; j < S; j++) {
            cr_assert(!seen[share[r][j]], "window %d seen by two ranks", share[r][j]);
            seen[share[r][j]] = 1;
            // rank r takes positions r, r+R, ... of the one-rank order
            cr_assert_eq(share[r][j], all[j * R + r], "rank %d, j %d", r, j);
        }
    }
    int covered = 0;
    for (int k = 0; k < g_nwin; k++) covered += seen[k];
    cr_assert_eq(covered, R * S);
}

// Rank r's batch c is the one-rank batch c R + r (slots of B windows, not windows, are
// interleaved): batch c holds windows (c R + r) B .. (c R + r) B + B-1.
Test(loader, ranks_interleave_sorted_batches_without_shuffle) {
    make_standard_data();
    const int R = 2, B = 4, NB = (g_nwin / B) / R;  // 82 windows: 20 batches, 10 each
    for (int r = 0; r < R; r++) {
        pb_loader *l = open_or_fail(B, r, R, 5, 0);
        cr_assert_eq(loader_num_batches(l), (uint64_t)NB);
        int ids[64];
        next_ids(l, B, NB, ids);
        for (int c = 0; c < NB; c++)
            for (int b = 0; b < B; b++)
                cr_assert_eq(ids[c * B + b], (c * R + r) * B + b, "rank %d batch %d", r, c);
        loader_close(l);
    }
}

// With a block of A slots a round (the micro-batches per rank of a step), rank r's batch
// i = (round, k) is the one-rank batch round R A + r A + k, over several shuffled epochs, and
// every rank and the one rank agree on the position at each round's end.
Test(loader, ranks_take_contiguous_blocks) {
    make_standard_data();
    const int B = 4, A = 2, ROUNDS = 13;  // 20 batches an epoch: 13 rounds of 2 x 2 cross two
    for (int R = 1; R <= 3; R++) {
        static int one[3 * 2 * 13 * 4], mine[2 * 13 * 4];
        pb_loader *l1 = open_or_fail(B, 0, 1, 5, 1);
        next_ids(l1, B, R * A * ROUNDS, one);
        for (int r = 0; r < R; r++) {
            pb_loader *l = open_or_fail(B, r, R, 5, 1);
            loader_set_block(l, A);
            next_ids(l, B, A * ROUNDS, mine);
            for (int i = 0; i < A * ROUNDS; i++) {
                int slot = i / A * R * A + r * A + i % A;
                cr_assert_eq(memcmp(mine + i * B, one + slot * B, B * sizeof(int)), 0,
                             "R %d rank %d batch %d is not slot %d", R, r, i, slot);
            }
            pb_loader_state s1, sr;
            loader_get_state(l, &sr);
            loader_get_state(l1, &s1);
            cr_assert(sr.epoch == s1.epoch && sr.cursor == s1.cursor, "R %d rank %d state", R, r);
            loader_close(l);
        }
        loader_close(l1);
    }
}

// ---------------------------------------------------------------------------------------
// state

static void batches(pb_loader *l, int n, int32_t *in, int32_t *tg, int B) {
    for (int i = 0; i < n; i++) loader_next(l, in + (size_t)i * B * T_, tg + (size_t)i * B * T_);
}

Test(loader, state_restore_reproduces_following_batches) {
    make_standard_data();
    enum { B = 4, R = 2, M = 25 };  // 10 batches per epoch: M crosses two boundaries
    const int r = 1;
    static int32_t want_in[M * B * T_], want_tg[M * B * T_], got_in[M * B * T_], got_tg[M * B * T_];
    const int skips[] = {0, 5, 9, 10, 12, 19};
    for (size_t si = 0; si < sizeof skips / sizeof skips[0]; si++) {
        pb_loader *a = open_or_fail(B, r, R, 42, 1);
        cr_assert_eq(loader_num_batches(a), 10);
        batches(a, skips[si], want_in, want_tg, B);
        pb_loader_state st;
        loader_get_state(a, &st);
        batches(a, M, want_in, want_tg, B);

        // A fresh loader put at the saved state.
        pb_loader *b = open_or_fail(B, r, R, 42, 1);
        char err[512] = "";
        cr_assert_eq(loader_set_state(b, &st, err, sizeof err), 0, "%s", err);
        batches(b, M, got_in, got_tg, B);
        cr_assert_eq(memcmp(want_in, got_in, sizeof want_in), 0, "inputs after skip %d", skips[si]);
        cr_assert_eq(memcmp(want_tg, got_tg, sizeof want_tg), 0, "targets after skip %d",
                     skips[si]);

        // The same loader rewound to the saved state.
        cr_assert_eq(loader_set_state(a, &st, err, sizeof err), 0, "%s", err);
        batches(a, M, got_in, got_tg, B);
        cr_assert_eq(memcmp(want_in, got_in, sizeof want_in), 0, "rewind after skip %d", skips[si]);
        loader_close(a);
        loader_close(b);
    }
}

Test(loader, reset_goes_back_to_epoch_zero) {
    make_standard_data();
    pb_loader *a = open_or_fail(3, 0, 1, 8, 1);
    int32_t first_in[3 * T_], first_tg[3 * T_], in[3 * T_], tg[3 * T_];
    loader_next(a, first_in, first_tg);
    for (int i = 0; i < 40; i++) loader_next(a, in, tg);  // into epoch 1
    pb_loader_state st;
    loader_get_state(a, &st);
    cr_assert_eq(st.epoch, 1);
    loader_reset(a);
    loader_get_state(a, &st);
    cr_assert_eq(st.epoch, 0);
    cr_assert_eq(st.cursor, 0);
    loader_next(a, in, tg);
    cr_assert_eq(memcmp(in, first_in, sizeof in), 0);
    cr_assert_eq(memcmp(tg, first_tg, sizeof tg), 0);
    loader_close(a);
}

Test(loader, set_state_rejects_other_seed_and_far_cursor) {
    make_standard_data();
    pb_loader *l = open_or_fail(4, 0, 2, 42, 1);
    char err[512] = "";
    pb_loader_state st = {.seed = 43, .epoch = 0, .cursor = 0};
    cr_assert_eq(loader_set_state(l, &st, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "seed 43 but this loader was opened with seed 42"), "got: %s",
                       err);
    st.seed = 42;
    st.cursor = 84;  // 82 windows: 20 batches of 4 cover 80
    cr_assert_eq(loader_set_state(l, &st, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "cursor 84 is not a batch start within the 80 windows"),
                       "got: %s", err);
    st.cursor = 42;  // not a batch start
    cr_assert_eq(loader_set_state(l, &st, err, sizeof err), -1);
    st.cursor = 80;  // the end of the epoch is a valid position
    cr_assert_eq(loader_set_state(l, &st, err, sizeof err), 0, "%s", err);
    loader_close(l);
}

// ---------------------------------------------------------------------------------------
// errors: each one line, naming the file

static void expect_open_error(int T, int nranks, int B, const char *want) {
    char err[512] = "";
    pb_loader *l = loader_open(g_pattern, B, T, 0, nranks, 1, 1, VOCAB, err, sizeof err);
    cr_assert_null(l, "loader_open accepted bad data (wanted '%s')", want);
    cr_assert_not_null(strstr(err, want), "wanted '%s', got: %s", want, err);
    cr_assert_null(strchr(err, '\n'), "error is not one line: %s", err);
}

// Writes a good 20-token shard and returns its path in `path`.
static void good_shard(char *path, size_t len) {
    uint16_t tok[20];
    for (int i = 0; i < 20; i++) tok[i] = (uint16_t)i;
    path_in_dir(path, len, "shard_00.bin");
    write_or_fail(path, tok, 20);
}

static void patch_int32(const char *path, long at, int32_t v) {
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, at, SEEK_SET);
    cr_assert_eq(fwrite(&v, 4, 1, f), 1);
    fclose(f);
}

Test(loader, error_no_files_match) {
    expect_open_error(8, 1, 1, "no files match data pattern '");
    char err[512] = "";
    cr_assert_null(loader_open(g_pattern, 1, 8, 0, 1, 1, 1, VOCAB, err, sizeof err));
    cr_assert_not_null(strstr(err, g_pattern), "got: %s", err);
}

Test(loader, error_bad_magic) {
    char path[256], want[400];
    good_shard(path, sizeof path);
    patch_int32(path, 0, 12345);
    snprintf(want, sizeof want, "%s: bad magic 12345 (expected 20240520", path);
    expect_open_error(8, 1, 1, want);
}

Test(loader, error_bad_version) {
    char path[256], want[400];
    good_shard(path, sizeof path);
    patch_int32(path, 4, 7);
    snprintf(want, sizeof want, "%s: unsupported version 7", path);
    expect_open_error(8, 1, 1, want);
}

Test(loader, error_truncated_header) {
    char path[256], want[400];
    path_in_dir(path, sizeof path, "shard_00.bin");
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    char junk[100] = {0};
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    snprintf(want, sizeof want, "%s: truncated header (100 bytes, need 1024)", path);
    expect_open_error(8, 1, 1, want);
}

Test(loader, error_size_mismatch) {
    char path[256], want[400];
    good_shard(path, sizeof path);
    cr_assert_eq(truncate(path, 1024 + 2 * 19), 0);
    snprintf(want, sizeof want, "%s: header says 20 tokens but the file holds 19", path);
    expect_open_error(8, 1, 1, want);
    // and a file longer than the header says
    patch_int32(path, 8, 18);
    snprintf(want, sizeof want, "%s: header says 18 tokens but the file holds 19", path);
    expect_open_error(8, 1, 1, want);
}

Test(loader, error_out_of_vocabulary_token) {
    char path[256], want[400];
    uint16_t tok[40];
    for (int i = 0; i < 40; i++) tok[i] = (uint16_t)(i * 1000);  // up to 39000 < 50257
    tok[17] = 50300;
    path_in_dir(path, sizeof path, "shard_01.bin");
    write_or_fail(path, tok, 40);
    good_shard(path, sizeof path);  // shard_00 is fine; the error is in shard_01
    path_in_dir(path, sizeof path, "shard_01.bin");
    snprintf(want, sizeof want, "%s: token 50300 at position 17 is out of the vocabulary (50257)",
             path);
    expect_open_error(8, 1, 1, want);
}

Test(loader, error_too_few_tokens) {
    char path[256];
    good_shard(path, sizeof path);  // 20 tokens
    expect_open_error(128, 1, 1, "no shard holds a full window of T+1 = 129 tokens");
    // exactly T+1 tokens is enough for one window
    char err[512] = "";
    pb_loader *l = loader_open(g_pattern, 1, 19, 0, 1, 1, 1, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_assert_eq(loader_num_batches(l), 1);
    loader_close(l);
}

Test(loader, error_rank_share_smaller_than_a_batch) {
    char path[256];
    good_shard(path, sizeof path);  // 20 tokens, T = 4: 4 windows, 1 batch of 3
    expect_open_error(4, 2, 3,
                      "4 windows of T+1 = 5 tokens make 1 batches of B = 3, fewer than one for "
                      "each of 2 ranks");
}

Test(loader, shard_open_errors_leave_shard_empty) {
    char path[256], err[512] = "";
    good_shard(path, sizeof path);
    pb_shard s;
    cr_assert_eq(shard_open(&s, path, 10, err, sizeof err), -1);  // token 10 at position 10
    cr_assert_not_null(strstr(err, "token 10 at position 10 is out of the vocabulary (10)"),
                       "got: %s", err);
    cr_assert_null(s.map);
    cr_assert_eq(s.n, 0);
    shard_close(&s);
    path_in_dir(path, sizeof path, "missing.bin");
    cr_assert_eq(shard_open(&s, path, 10, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "missing.bin: cannot open"), "got: %s", err);
}
