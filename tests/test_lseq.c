// test_lseq.c: labelled-sequence files (data/lseq.h): rows written are the rows read, the
// byte layout is the documented one (checked by reading the file with stdio, not the
// module), and every damaged or out-of-range input is refused with a line naming it.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/lseq.h"

static char g_dir[64];
static char g_path[128];

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/pebble-lseq-XXXXXX");
    cr_assert(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/a.lseq", g_dir);
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_assert(system(cmd) == 0);
}
TestSuite(lseq, .init = setup, .fini = teardown);

// Row r: length 1 + r % T, label r % classes, token t = (7 r + 3 t) % vocab.
static int tok_of(int r, int t, int vocab) { return (7 * r + 3 * t) % vocab; }

static void write_rows(const lseq_info *in, int n) {
    char err[256] = "";
    lseq_writer *w = lseq_create(g_path, in, err, sizeof err);
    cr_assert(w, "%s", err);
    int32_t *tok = calloc((size_t)in->T, sizeof *tok);
    for (int r = 0; r < n; r++) {
        int len = 1 + r % in->T;
        for (int t = 0; t < len; t++) tok[t] = tok_of(r, t, in->vocab_size);
        cr_assert(lseq_append(w, tok, len, r % in->num_classes, err, sizeof err) == 0, "%s", err);
    }
    free(tok);
    cr_assert(lseq_finish(w, err, sizeof err) == 0, "%s", err);
}

static void round_trip(int token_bytes, int vocab) {
    lseq_info in = {0, 9, token_bytes, 3, vocab};
    write_rows(&in, 25);
    lseq_file f;
    char err[256] = "";
    cr_assert(lseq_open(&f, g_path, 0, err, sizeof err) == 0, "%s", err);
    cr_assert_eq(f.info.rows, 25);
    cr_assert_eq(f.info.T, 9);
    cr_assert_eq(f.info.vocab_size, vocab);
    int32_t tok[9];
    for (int r = 0; r < 25; r++) {
        int label, len = lseq_row(&f, (uint64_t)r, tok, &label);
        cr_assert_eq(len, 1 + r % 9);
        cr_assert_eq(label, r % 3);
        for (int t = 0; t < 9; t++) cr_assert_eq(tok[t], t < len ? tok_of(r, t, vocab) : 0);
    }
    lseq_close(&f);
    // The documented layout, read without the module: header ints, then row 4 at
    // 1024 + 4 * (8 + 9 b): length 5, label 1, tokens little-endian.
    FILE *fp = fopen(g_path, "rb");
    cr_assert(fp);
    int32_t h[8];
    cr_assert(fread(h, 4, 8, fp) == 8);
    cr_assert(h[0] == 20261202 && h[1] == 1 && h[2] == 25 && h[3] == 0 && h[4] == 9 &&
              h[5] == token_bytes && h[6] == 3 && h[7] == vocab);
    cr_assert(fseek(fp, 1024 + 4 * (8 + 9 * token_bytes), SEEK_SET) == 0);
    int32_t head[2];
    unsigned char b[18];
    cr_assert(fread(head, 4, 2, fp) == 2 && fread(b, 1, 9 * (size_t)token_bytes, fp) == 9u * token_bytes);
    cr_assert(head[0] == 5 && head[1] == 1);
    int t2 = token_bytes == 1 ? b[2] : b[4] | b[5] << 8;
    cr_assert_eq(t2, tok_of(4, 2, vocab));
    fclose(fp);
}

Test(lseq, round_trip_one_byte_tokens) { round_trip(1, 256); }
Test(lseq, round_trip_two_byte_tokens) { round_trip(2, 30522); }

Test(lseq, append_refuses_out_of_range_rows) {
    lseq_info in = {0, 4, 1, 2, 10};
    char err[256] = "";
    lseq_writer *w = lseq_create(g_path, &in, err, sizeof err);
    cr_assert(w);
    int32_t tok[5] = {1, 2, 3, 4, 5};
    cr_assert(lseq_append(w, tok, 5, 0, err, sizeof err) == -1);
    cr_assert(strstr(err, "row 0 has 5 tokens (must be 1 .. 4)"), "%s", err);
    cr_assert(lseq_append(w, tok, 0, 0, err, sizeof err) == -1);
    cr_assert(lseq_append(w, tok, 2, 2, err, sizeof err) == -1);
    cr_assert(strstr(err, "label 2 (must be 0 .. 1)"), "%s", err);
    tok[1] = 10;
    cr_assert(lseq_append(w, tok, 2, 0, err, sizeof err) == -1);
    cr_assert(strstr(err, "token 10 at position 1 is outside the vocabulary (10)"), "%s", err);
    lseq_abort(w);
    cr_assert(access(g_path, F_OK) != 0);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", g_path);
    cr_assert(access(tmp, F_OK) != 0, "lseq_abort left the .tmp behind");
    lseq_info bad = {0, 4, 1, 2, 300};
    cr_assert_null(lseq_create(g_path, &bad, err, sizeof err));
    cr_assert(strstr(err, "vocab_size = 300 (must be 1 .. 256 with 1-byte tokens)"), "%s", err);
}

// Damages one thing in a good file (at byte offset `at`, 4 bytes) and expects `want`.
static void expect_refused(long at, int32_t value, int model_vocab, const char *want) {
    lseq_info in = {0, 6, 2, 4, 100};
    write_rows(&in, 10);
    if (at >= 0) {
        FILE *fp = fopen(g_path, "r+b");
        cr_assert(fp);
        cr_assert(fseek(fp, at, SEEK_SET) == 0 && fwrite(&value, 4, 1, fp) == 1);
        fclose(fp);
    }
    lseq_file f;
    char err[256] = "";
    cr_assert(lseq_open(&f, g_path, model_vocab, err, sizeof err) == -1, "accepted: %s", want);
    cr_assert(strstr(err, want), "got '%s', want '%s'", err, want);
    cr_assert(strstr(err, g_path), "the message names no file: %s", err);
    cr_assert_null(f.map);
}

#define ROW(i) (1024L + (i) * (8 + 6 * 2))
Test(lseq, open_refuses_bad_magic) { expect_refused(0, 20240520, 0, "bad magic"); }
Test(lseq, open_refuses_a_size_that_disagrees) { expect_refused(8, 11, 0, "header says 11 rows"); }
Test(lseq, open_refuses_a_bad_length) { expect_refused(ROW(3), 7, 0, "row 3 has length 7 (must be 1 .. 6)"); }
Test(lseq, open_refuses_a_bad_label) { expect_refused(ROW(2) + 4, 4, 0, "row 2 has label 4 (the header says 4 classes)"); }
// row 1 has 2 tokens: bytes 12..15 are its tokens 2 and 3, padding
Test(lseq, open_refuses_nonzero_padding) { expect_refused(ROW(1) + 12, 1, 0, "row 1: padding at position 2 is not 0"); }
Test(lseq, open_refuses_a_token_past_the_header_vocab) {
    expect_refused(ROW(5) + 8, 100, 0, "row 5: token 100 at position 0 is outside the vocabulary (100)");
}
Test(lseq, open_refuses_a_token_past_the_model_vocab) {
    // row 5 (6 tokens, 35 + 3 t) ends in 50: a model with 50 tokens cannot read it
    expect_refused(-1, 0, 50, "row 5: token 50 at position 5 is outside the vocabulary (50)");
}
Test(lseq, open_refuses_a_truncated_file) {
    lseq_info in = {0, 6, 2, 4, 100};
    write_rows(&in, 10);
    cr_assert(truncate(g_path, ROW(9) + 3) == 0);
    lseq_file f;
    char err[256] = "";
    cr_assert(lseq_open(&f, g_path, 0, err, sizeof err) == -1);
    cr_assert(strstr(err, "header says 10 rows of 20 bytes"), "%s", err);
}
