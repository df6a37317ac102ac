// test_seqloader.c: Criterion tests of data/seqloader.h (MLM pieces, classification rows) and
// of the data-parallel contract it shares with data/mlm.h.
//
// Piece g (numbered over the shards in sorted order) is [CLS], 1000 + g, words, [SEP]: its
// second token names it, and the expected pieces (shard, start, length) are listed here while
// the shards are written, independently of the loader's scan.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/lseq.h"
#include "data/mlm.h"
#include "data/seqloader.h"
#include "data/shard.h"

#define VOCAB 30522
#define T_ 16

static const int kPieces[] = {40, 0, 25, 13};  // per shard; shard 1 is empty
#define NSHARDS (int)(sizeof kPieces / sizeof kPieces[0])
#define NPIECES 78

static char g_dir[64], g_pattern[128], g_lseq[128];
static struct { int shard, start, len; } g_piece[NPIECES];

static void setup(void) {
    strcpy(g_dir, "/tmp/pebble_test_seqloader_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_pattern, sizeof g_pattern, "%s/bert_*.bin", g_dir);
    snprintf(g_lseq, sizeof g_lseq, "%s/*.lseq", g_dir);
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(seqloader, .init = setup, .fini = teardown);

static int piece_len(int g) { return 3 + g * 5 % (T_ - 2); }  // 3 .. T_
static int piece_tok(int g, int t) {
    int len = piece_len(g);
    return t == 0 ? 101 : t == len - 1 ? 102 : t == 1 ? 1000 + g : 200 + (g + t) % 700;
}

static void write_shard(const char *name, const uint16_t *tok, size_t n) {
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    cr_assert_eq(shard_write(path, tok, n, err, sizeof err), 0, "%s", err);
}

// The standard pieces, last shard first (sorting puts them in order).
static void make_pieces(void) {
    int first[NSHARDS + 1] = {0};
    for (int s = 0; s < NSHARDS; s++) first[s + 1] = first[s] + kPieces[s];
    cr_assert_eq(first[NSHARDS], NPIECES);
    for (int s = NSHARDS - 1; s >= 0; s--) {
        uint16_t tok[1024];
        size_t n = 0;
        for (int g = first[s]; g < first[s + 1]; g++) {
            g_piece[g].shard = s;
            g_piece[g].start = (int)n;
            g_piece[g].len = piece_len(g);
            for (int t = 0; t < piece_len(g); t++) tok[n++] = (uint16_t)piece_tok(g, t);
        }
        char name[32];
        snprintf(name, sizeof name, "bert_%02d.bin", s);
        write_shard(name, tok, n);
    }
}

static pb_seqloader *open_pieces(int B, int rank, int nranks, uint64_t seed, int shuffle) {
    char err[512] = "";
    pb_seqloader *l =
        seqloader_open_pieces(g_pattern, B, T_, rank, nranks, seed, shuffle, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "seqloader_open_pieces: %s", err);
    return l;
}

// Row b must be exactly some piece, padded; returns its id.
static int piece_of_row(const pb_batch *bt, int b) {
    const int32_t *in = bt->inputs + b * T_, *tg = bt->targets + b * T_;
    int g = in[1] - 1000;
    cr_assert(g >= 0 && g < NPIECES, "row %d: second token %d names no piece", b, in[1]);
    cr_assert_eq(bt->lengths[b], g_piece[g].len, "row %d (piece %d): length", b, g);
    cr_assert_eq(bt->labels[b], -1, "row %d: an MLM row has no label", b);
    for (int t = 0; t < T_; t++) {
        int want = t < g_piece[g].len ? piece_tok(g, t) : 0;
        cr_assert_eq(in[t], want, "row %d (piece %d) t %d", b, g, t);
        cr_assert_eq(tg[t], -1, "row %d t %d: target before masking", b, t);
    }
    return g;
}

// The piece ids of the next nb batches.
static void next_ids(pb_seqloader *l, int B, int nb, int *ids) {
    pb_batch bt;
    batch_alloc(&bt, B, T_);
    for (int i = 0; i < nb; i++) {
        seqloader_next(l, &bt);
        for (int b = 0; b < B; b++) ids[i * B + b] = piece_of_row(&bt, b);
    }
    batch_free(&bt);
}

static int is_permutation(const int *ids, int n) {
    char seen[NPIECES] = {0};
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n || seen[ids[i]]) return 0;
        seen[ids[i]] = 1;
    }
    return 1;
}

// ---------------------------------------------------------------------------------------
// pieces

// The loader's index, read back through the shard files by hand.
Test(seqloader, pieces_match_the_shards_bytes) {
    make_pieces();
    for (int g = 0; g < NPIECES; g += 7) {
        char path[256];
        snprintf(path, sizeof path, "%s/bert_%02d.bin", g_dir, g_piece[g].shard);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f);
        uint16_t tok[T_];
        cr_assert_eq(fseek(f, 1024 + 2 * g_piece[g].start, SEEK_SET), 0);
        cr_assert_eq(fread(tok, 2, (size_t)g_piece[g].len, f), (size_t)g_piece[g].len);
        fclose(f);
        cr_assert_eq(tok[0], 101);
        cr_assert_eq(tok[1], 1000 + g);
        cr_assert_eq(tok[g_piece[g].len - 1], 102);
    }
}

Test(seqloader, pieces_in_order_padded_and_wrapping_into_the_next_epoch) {
    make_pieces();
    const int B = 4;
    pb_seqloader *l = open_pieces(B, 0, 1, 7, 0);
    long long tokens = 0;
    for (int g = 0; g < NPIECES; g++) tokens += piece_len(g);
    cr_assert_eq(seqloader_num_seqs(l), NPIECES);
    cr_assert_eq(seqloader_num_tokens(l), (uint64_t)tokens);
    cr_assert_eq(seqloader_num_batches(l), NPIECES / B);  // 19
    cr_assert_eq(seqloader_num_classes(l), 0);
    int ids[80];
    next_ids(l, B, NPIECES / B, ids);
    for (int i = 0; i < NPIECES / B * B; i++) cr_assert_eq(ids[i], i, "position %d", i);
    // 78 = 19 * 4 + 2: batch 19 holds the last two pieces, then the first two of epoch 1.
    next_ids(l, B, 1, ids);
    cr_assert(ids[0] == 76 && ids[1] == 77 && ids[2] == 0 && ids[3] == 1, "%d %d %d %d", ids[0],
              ids[1], ids[2], ids[3]);
    pb_loader_state st;
    seqloader_get_state(l, &st);
    cr_assert(st.seed == 7 && st.epoch == 1 && st.cursor == 2, "state %llu %llu",
              (unsigned long long)st.epoch, (unsigned long long)st.cursor);
    seqloader_close(l);
}

// A piece of exactly T and one of two tokens ([CLS][SEP]) are both whole pieces.
Test(seqloader, pieces_of_length_T_and_two) {
    uint16_t tok[T_ + 2];
    tok[0] = 101;
    for (int t = 1; t < T_ - 1; t++) tok[t] = (uint16_t)(500 + t);
    tok[T_ - 1] = 102;
    tok[T_] = 101;
    tok[T_ + 1] = 102;
    write_shard("bert_00.bin", tok, T_ + 2);
    pb_seqloader *l = open_pieces(2, 0, 1, 1, 0);
    cr_assert_eq(seqloader_num_seqs(l), 2);
    pb_batch b;
    batch_alloc(&b, 2, T_);
    seqloader_next(l, &b);
    cr_assert_eq(b.lengths[0], T_);
    cr_assert_eq(b.lengths[1], 2);
    for (int t = 0; t < T_; t++) {
        cr_assert_eq(b.inputs[t], tok[t]);
        cr_assert_eq(b.inputs[T_ + t], t == 0 ? 101 : t == 1 ? 102 : 0);
    }
    batch_free(&b);
    seqloader_close(l);
}

Test(seqloader, shuffle_covers_every_piece_once_per_epoch) {
    make_pieces();
    const int B = 5, NB = 48;  // 240 rows: three epochs of 78 and six more, batches straddling
    int a[NB * 5], b[NB * 5], c[NB * 5];
    pb_seqloader *la = open_pieces(B, 0, 1, 1234, 1), *lb = open_pieces(B, 0, 1, 1234, 1),
                 *lc = open_pieces(B, 0, 1, 1235, 1);
    next_ids(la, B, NB, a);
    next_ids(lb, B, NB, b);
    next_ids(lc, B, NB, c);
    for (int e = 0; e < 3; e++)
        cr_assert(is_permutation(a + e * NPIECES, NPIECES), "epoch %d is not a permutation", e);
    int identity = 1;
    for (int i = 0; i < NPIECES; i++) identity &= a[i] == i;
    cr_assert(!identity, "the shuffled order is the identity");
    cr_assert_neq(memcmp(a, a + NPIECES, NPIECES * sizeof(int)), 0, "epochs 0 and 1 agree");
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "one seed, two orders");
    cr_assert_neq(memcmp(a, c, sizeof a), 0, "two seeds, one order");
    seqloader_close(la);
    seqloader_close(lb);
    seqloader_close(lc);
}

// ---------------------------------------------------------------------------------------
// ranks

// Rank r's batch c is slot c R + r of the one-rank stream, and one rank with B' = B R reads
// the concatenation of the ranks' batches: over several epochs, shuffled.
Test(seqloader, ranks_take_interleaved_slots) {
    make_pieces();
    const int B = 2, NB = 40;
    for (int R = 2; R <= 3; R++) {
        static int one[200 * 2], wide[40 * 6], mine[40 * 2];
        pb_seqloader *l1 = open_pieces(B, 0, 1, 5, 1), *lw = open_pieces(B * R, 0, 1, 5, 1);
        next_ids(l1, B, NB * R, one);
        next_ids(lw, B * R, NB, wide);
        cr_assert_eq(memcmp(one, wide, (size_t)NB * R * B * sizeof(int)), 0, "B' = B R, R = %d", R);
        for (int r = 0; r < R; r++) {
            pb_seqloader *l = open_pieces(B, r, R, 5, 1);
            cr_assert_eq(seqloader_num_batches(l), (uint64_t)(NPIECES / (B * R)));
            next_ids(l, B, NB, mine);
            for (int c = 0; c < NB; c++)
                for (int b = 0; b < B; b++)
                    cr_assert_eq(mine[c * B + b], one[(c * R + r) * B + b], "R %d rank %d batch %d", R, r, c);
            pb_loader_state s1, sr;  // every rank and the one wide rank agree on the position
            seqloader_get_state(l, &sr);
            seqloader_get_state(lw, &s1);
            cr_assert(sr.epoch == s1.epoch && sr.cursor == s1.cursor, "R %d rank %d state", R, r);
            seqloader_close(l);
        }
        seqloader_close(l1);
        seqloader_close(lw);
    }
}

// One optimizer step, masked: world W x A micro-batches of B rows (rank r's micro-batch k the
// step's slot r A + k: seqloader_set_block), assembled by global row (mlm_first_row), must be
// the same for (W, A, B) = (2, 2, 3), (1, 4, 3), (4, 1, 3), (1, 1, 12).
static void step_rows(int W, int A, int B, int steps, int32_t *in, int32_t *tg) {
    pb_seqloader *l[4];
    for (int r = 0; r < W; r++) {
        l[r] = open_pieces(B, r, W, 99, 1);
        seqloader_set_block(l[r], A);
    }
    pb_batch b;
    batch_alloc(&b, B, T_);
    const int rows = W * A * B;
    for (int s = 0; s < steps; s++)
        for (int k = 0; k < A; k++)
            for (int r = 0; r < W; r++) {
                seqloader_next(l[r], &b);
                uint64_t row0 = mlm_first_row(k, r, A, B);
                cr_assert_eq(row0, ((uint64_t)r * A + k) * B);
                mlm_mask(&b, VOCAB, MLM_PROB, 99, (uint64_t)s, row0);
                size_t at = ((size_t)s * rows + row0) * T_;
                memcpy(in + at, b.inputs, (size_t)B * T_ * sizeof(int32_t));
                memcpy(tg + at, b.targets, (size_t)B * T_ * sizeof(int32_t));
            }
    batch_free(&b);
    for (int r = 0; r < W; r++) seqloader_close(l[r]);
}

Test(seqloader, a_step_is_the_same_for_any_world_size) {
    make_pieces();
    enum { STEPS = 15, ROWS = 12, N = STEPS * ROWS * T_ };  // 180 rows: past two epochs
    static int32_t in0[N], tg0[N], in1[N], tg1[N];
    step_rows(1, 1, 12, STEPS, in0, tg0);
    const int cfg[3][3] = {{2, 2, 3}, {1, 4, 3}, {4, 1, 3}};
    long long targets = 0;
    for (int i = 0; i < N; i++) targets += tg0[i] != -1;
    cr_assert_gt(targets, 100, "the masks set targets");
    for (int c = 0; c < 3; c++) {
        step_rows(cfg[c][0], cfg[c][1], cfg[c][2], STEPS, in1, tg1);
        cr_assert_eq(memcmp(in0, in1, sizeof in0), 0, "inputs, W %d A %d B %d", cfg[c][0], cfg[c][1], cfg[c][2]);
        cr_assert_eq(memcmp(tg0, tg1, sizeof tg0), 0, "targets, W %d A %d B %d", cfg[c][0], cfg[c][1], cfg[c][2]);
    }
}

// ---------------------------------------------------------------------------------------
// state

Test(seqloader, state_restore_resumes_exactly) {
    make_pieces();
    const int B = 4, R = 2, M = 30;  // 9 batches a rank an epoch: M crosses three epochs
    static int want[30 * 4], got[30 * 4], skip[30 * 4];
    const int skips[] = {0, 1, 9, 10, 17, 25};
    for (size_t si = 0; si < sizeof skips / sizeof skips[0]; si++) {
        pb_seqloader *a = open_pieces(B, 1, R, 42, 1);
        next_ids(a, B, skips[si], skip);
        pb_loader_state st;
        seqloader_get_state(a, &st);
        next_ids(a, B, M, want);
        pb_seqloader *b = open_pieces(B, 1, R, 42, 1);
        char err[512] = "";
        cr_assert_eq(seqloader_set_state(b, &st, err, sizeof err), 0, "%s", err);
        next_ids(b, B, M, got);
        cr_assert_eq(memcmp(want, got, sizeof want), 0, "fresh loader after skip %d", skips[si]);
        cr_assert_eq(seqloader_set_state(a, &st, err, sizeof err), 0, "%s", err);
        next_ids(a, B, M, got);
        cr_assert_eq(memcmp(want, got, sizeof want), 0, "rewound loader after skip %d", skips[si]);
        seqloader_close(a);
        seqloader_close(b);
    }
}

// A state saved by 2 ranks of B resumes on 1 rank of 2B where the 2 ranks would have gone on.
Test(seqloader, state_resumes_under_another_world_size) {
    make_pieces();
    pb_seqloader *r0 = open_pieces(3, 0, 2, 8, 1), *r1 = open_pieces(3, 1, 2, 8, 1);
    int ids[64], a[64], b[64], w[64];
    next_ids(r0, 3, 17, ids);
    next_ids(r1, 3, 17, ids);
    pb_loader_state st;
    seqloader_get_state(r0, &st);
    next_ids(r0, 3, 5, a);
    next_ids(r1, 3, 5, b);
    pb_seqloader *one = open_pieces(6, 0, 1, 8, 1);
    char err[512] = "";
    cr_assert_eq(seqloader_set_state(one, &st, err, sizeof err), 0, "%s", err);
    next_ids(one, 6, 5, w);
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(w[c * 6 + k], a[c * 3 + k], "batch %d row %d", c, k);
            cr_assert_eq(w[c * 6 + 3 + k], b[c * 3 + k], "batch %d row %d", c, 3 + k);
        }
    seqloader_close(r0);
    seqloader_close(r1);
    seqloader_close(one);
}

Test(seqloader, reset_and_set_state_errors) {
    make_pieces();
    pb_seqloader *l = open_pieces(4, 0, 1, 42, 1);
    int first[4], ids[200];
    next_ids(l, 4, 1, first);
    next_ids(l, 4, 30, ids);
    seqloader_reset(l);
    next_ids(l, 4, 1, ids);
    cr_assert_eq(memcmp(first, ids, sizeof first), 0, "reset does not go back to the start");
    char err[512] = "";
    pb_loader_state st = {.seed = 43, .epoch = 0, .cursor = 0};
    cr_assert_eq(seqloader_set_state(l, &st, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "seed 43 but this loader was opened with seed 42"), "got: %s", err);
    st.seed = 42;
    st.cursor = NPIECES;
    cr_assert_eq(seqloader_set_state(l, &st, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "cursor 78 is past the 78 sequences of an epoch"), "got: %s", err);
    st.cursor = NPIECES - 1;
    cr_assert_eq(seqloader_set_state(l, &st, err, sizeof err), 0, "%s", err);
    seqloader_close(l);
}

// ---------------------------------------------------------------------------------------
// refusals: one line, naming the shard and the problem

static void expect_pieces_error(int B, int nranks, int vocab, const char *want) {
    char err[512] = "";
    pb_seqloader *l =
        seqloader_open_pieces(g_pattern, B, T_, 0, nranks, 1, 1, vocab, err, sizeof err);
    cr_assert_null(l, "bad data accepted (wanted '%s')", want);
    cr_assert_not_null(strstr(err, want), "wanted '%s', got: %s", want, err);
    cr_assert_null(strchr(err, '\n'), "not one line: %s", err);
}

// Shard bert_00 good (one piece), bert_01 = tok.
static void bad_shard(const uint16_t *tok, size_t n, char *path, size_t len) {
    const uint16_t good[4] = {101, 500, 501, 102};
    write_shard("bert_00.bin", good, 4);
    write_shard("bert_01.bin", tok, n);
    snprintf(path, len, "%s/bert_01.bin", g_dir);
}

Test(seqloader, error_token_outside_any_piece) {
    const uint16_t tok[] = {101, 7, 102, 555, 101, 8, 102};
    char path[256], want[400];
    bad_shard(tok, 7, path, sizeof path);
    snprintf(want, sizeof want, "%s: token 555 at position 3 is outside any piece", path);
    expect_pieces_error(1, 1, VOCAB, want);
}

Test(seqloader, error_piece_without_sep) {
    const uint16_t tok[] = {101, 7, 102, 101, 8, 9};
    char path[256], want[400];
    bad_shard(tok, 6, path, sizeof path);
    snprintf(want, sizeof want, "%s: the piece at position 3 has no [SEP] before the end of the shard", path);
    expect_pieces_error(1, 1, VOCAB, want);
}

Test(seqloader, error_cls_inside_a_piece) {
    const uint16_t tok[] = {101, 7, 101, 8, 102};
    char path[256], want[400];
    bad_shard(tok, 5, path, sizeof path);
    snprintf(want, sizeof want, "%s: [CLS] at position 2 inside the piece that starts at 0", path);
    expect_pieces_error(1, 1, VOCAB, want);
}

Test(seqloader, error_piece_longer_than_T) {
    uint16_t tok[3 + T_ + 1];
    tok[0] = 101, tok[1] = 5, tok[2] = 102;
    tok[3] = 101;
    for (int t = 4; t < 3 + T_; t++) tok[t] = 300;
    tok[3 + T_] = 102;  // piece 1: positions 3 .. 3+T, T+1 tokens
    char path[256], want[400];
    bad_shard(tok, 3 + T_ + 1, path, sizeof path);
    snprintf(want, sizeof want,
             "%s: piece 1 (positions 3 .. %d) has %d tokens, more than T = %d: prep --seq-len "
             "must be <= train.seq_len",
             path, 3 + T_, T_ + 1, T_);
    expect_pieces_error(1, 1, VOCAB, want);
}

Test(seqloader, error_token_out_of_vocabulary) {
    const uint16_t tok[] = {101, 7, 30522, 102};
    char path[256], want[400];
    bad_shard(tok, 4, path, sizeof path);
    snprintf(want, sizeof want, "%s: token 30522 at position 2 is out of the vocabulary (30522)", path);
    expect_pieces_error(1, 1, VOCAB, want);
}

Test(seqloader, error_no_pieces_small_vocab_too_few_no_files) {
    expect_pieces_error(1, 1, VOCAB, "no files match data pattern '");
    write_shard("bert_00.bin", NULL, 0);
    write_shard("bert_01.bin", NULL, 0);
    expect_pieces_error(1, 1, VOCAB, "no pieces ([CLS] ... [SEP]) in its 2 shard(s)");
    const uint16_t tok[] = {101, 7, 102, 101, 102, 101, 9, 9, 102};  // 3 pieces
    write_shard("bert_01.bin", tok, 9);
    expect_pieces_error(1, 1, 103, "vocab_size 103 has no room for BERT's special ids");
    expect_pieces_error(2, 2, VOCAB, "3 pieces give fewer than one batch of B = 2 to each of 2 ranks");
    char err[512] = "";
    pb_seqloader *l = seqloader_open_pieces(g_pattern, 1, T_, 2, 3, 1, 1, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "3 pieces are one batch of 1 for each of 3 ranks: %s", err);
    seqloader_close(l);
}

// ---------------------------------------------------------------------------------------
// classification rows (.lseq)

// Row g of all files: length 1 + g % 6, label g % 3, tokens 10 + g, then 20 + (g + t) % 400.
static int row_tok(int g, int t) { return t == 0 ? 10 + g : 20 + (g + t) % 400; }

static void write_lseq(const char *name, int first, int rows, int T, int classes) {
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    lseq_info in = {0, T, 2, classes, 500};
    lseq_writer *w = lseq_create(path, &in, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    int32_t tok[64];
    for (int g = first; g < first + rows; g++) {
        int len = 1 + g % T;
        for (int t = 0; t < len; t++) tok[t] = row_tok(g, t);
        cr_assert_eq(lseq_append(w, tok, len, g % classes, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(lseq_finish(w, err, sizeof err), 0, "%s", err);
}

static pb_seqloader *open_lseq(int B, int T, int rank, int nranks, int shuffle) {
    char err[512] = "";
    pb_seqloader *l = seqloader_open_lseq(g_lseq, B, T, rank, nranks, 3, shuffle, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "seqloader_open_lseq: %s", err);
    return l;
}

// Row b must be row g of the files, padded to T; returns g.
static int row_of(const pb_batch *bt, int b, int fileT) {
    const int T = bt->T;
    int g = bt->inputs[b * T] - 10;
    cr_assert(g >= 0 && g < 17, "row %d names no row", b);
    cr_assert_eq(bt->lengths[b], 1 + g % fileT, "row %d: length", b);
    cr_assert_eq(bt->labels[b], g % 3, "row %d: label", b);
    for (int t = 0; t < T; t++) {
        cr_assert_eq(bt->inputs[b * T + t], t < 1 + g % fileT ? row_tok(g, t) : 0, "row %d t %d", b, t);
        cr_assert_eq(bt->targets[b * T + t], -1);
    }
    return g;
}

Test(seqloader, lseq_rows_in_order_padded_to_the_model_T) {
    write_lseq("b.lseq", 10, 7, 6, 3);  // written first, sorted second
    write_lseq("a.lseq", 0, 10, 6, 3);
    const int B = 3, T = 9;
    pb_seqloader *l = open_lseq(B, T, 0, 1, 0);
    cr_assert_eq(seqloader_num_seqs(l), 17);
    cr_assert_eq(seqloader_num_classes(l), 3);
    cr_assert_eq(seqloader_num_batches(l), 5);
    long long tokens = 0;
    for (int g = 0; g < 17; g++) tokens += 1 + g % 6;
    cr_assert_eq(seqloader_num_tokens(l), (uint64_t)tokens);
    pb_batch bt;
    batch_alloc(&bt, B, T);
    for (int i = 0; i < 6; i++) {  // the sixth batch wraps: rows 15, 16, 0
        seqloader_next(l, &bt);
        for (int b = 0; b < B; b++) cr_assert_eq(row_of(&bt, b, 6), (i * B + b) % 17);
    }
    batch_free(&bt);
    seqloader_close(l);
}

Test(seqloader, lseq_shuffled_ranks) {
    write_lseq("a.lseq", 0, 10, 6, 3);
    write_lseq("b.lseq", 10, 7, 6, 3);
    pb_batch one, mine;
    batch_alloc(&one, 2, 6);
    batch_alloc(&mine, 2, 6);
    int all[60], seen[17] = {0};
    pb_seqloader *l1 = open_lseq(2, 6, 0, 1, 1);
    for (int c = 0; c < 30; c++) {
        seqloader_next(l1, &one);
        for (int b = 0; b < 2; b++) all[c * 2 + b] = row_of(&one, b, 6);
    }
    for (int i = 0; i < 17; i++) seen[all[i]]++;
    for (int g = 0; g < 17; g++) cr_assert_eq(seen[g], 1, "row %d in epoch 0", g);
    for (int r = 0; r < 3; r++) {
        pb_seqloader *l = open_lseq(2, 6, r, 3, 1);
        for (int c = 0; c < 10; c++) {
            seqloader_next(l, &mine);
            for (int b = 0; b < 2; b++) cr_assert_eq(row_of(&mine, b, 6), all[(c * 3 + r) * 2 + b]);
        }
        seqloader_close(l);
    }
    seqloader_close(l1);
    batch_free(&one);
    batch_free(&mine);
}

static void expect_lseq_error(int T, const char *want) {
    char err[512] = "";
    pb_seqloader *l = seqloader_open_lseq(g_lseq, 1, T, 0, 1, 1, 1, VOCAB, err, sizeof err);
    cr_assert_null(l, "bad data accepted (wanted '%s')", want);
    cr_assert_not_null(strstr(err, want), "wanted '%s', got: %s", want, err);
    cr_assert_null(strchr(err, '\n'), "not one line: %s", err);
}

Test(seqloader, lseq_errors) {
    char want[400];
    expect_lseq_error(8, "no files match data pattern '");
    write_lseq("a.lseq", 0, 4, 6, 3);
    snprintf(want, sizeof want, "%s/a.lseq: rows of T = 6 tokens do not fit the model's seq_len 5", g_dir);
    expect_lseq_error(5, want);
    write_lseq("b.lseq", 4, 4, 7, 3);
    snprintf(want, sizeof want, "%s/b.lseq: rows of T = 7 tokens, but %s/a.lseq has T = 6", g_dir, g_dir);
    expect_lseq_error(8, want);
    write_lseq("b.lseq", 4, 4, 6, 2);
    snprintf(want, sizeof want, "%s/b.lseq: num_classes = 2, but %s/a.lseq has 3", g_dir, g_dir);
    expect_lseq_error(8, want);
    write_lseq("b.lseq", 4, 4, 6, 3);
    char err[512] = "";  // lseq_open's own refusal comes through: a token over the model's V
    cr_assert_null(seqloader_open_lseq(g_lseq, 1, 8, 0, 1, 1, 1, 12, err, sizeof err));
    cr_assert_not_null(strstr(err, "a.lseq: row 1: token 22 at position 1 is outside the vocabulary (12)"), "got: %s", err);
    cr_assert_null(seqloader_open_lseq(g_lseq, 3, 8, 0, 3, 1, 1, VOCAB, err, sizeof err));
    cr_assert_not_null(strstr(err, "8 rows give fewer than one batch of B = 3 to each of 3 ranks"), "got: %s", err);
    pb_seqloader *l = seqloader_open_lseq(g_lseq, 2, 8, 0, 4, 1, 1, VOCAB, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    seqloader_close(l);
}
