// test_lra.c: the LRA generators (data/lra/lra.h) and `pebble lra`. ListOps: every TSV
// row's value against a small evaluator of the TSV text written here, the length bounds, no
// duplicates across splits, the TSV text and the lseq tokens tokenised independently and
// compared, determinism by seed. Pathfinder: the markers against the generator's scene
// graph (not the pixels), label balance within binomial bounds, pixel range, the lseq
// headers, identical files with 1 and 2 threads. The command's errors.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/lra/lra.h"
#include "data/lseq.h"
#include "tests/cli.h"

TestSuite(lra, .fini = cleanup);

// --- ListOps: an independent reading of the TSV text

// Evaluates the tree at words[*i] (words of the source split on spaces, parentheses
// included): "(" and ")" only group, an operator takes values up to its "]".
static int eval_words(char **w, int n, int *i) {
    while (*i < n && (!strcmp(w[*i], "(") || !strcmp(w[*i], ")"))) (*i)++;
    cr_assert(*i < n, "the source ends inside a tree");
    const char *t = w[(*i)++];
    if (t[0] >= '0' && t[0] <= '9' && !t[1]) return t[0] - '0';
    int v[16], k = 0;
    for (;;) {
        while (*i < n && !strcmp(w[*i], ")")) (*i)++;
        cr_assert(*i < n, "operator %s not closed", t);
        if (!strcmp(w[*i], "]")) {
            (*i)++;
            break;
        }
        cr_assert(k < 16);
        v[k++] = eval_words(w, n, i);
    }
    cr_assert(k >= 2 && k <= 10, "%s has %d arguments", t, k);
    int r = v[0], s = 0;
    if (!strcmp(t, "[MIN"))
        for (int j = 1; j < k; j++) r = v[j] < r ? v[j] : r;
    else if (!strcmp(t, "[MAX"))
        for (int j = 1; j < k; j++) r = v[j] > r ? v[j] : r;
    else if (!strcmp(t, "[SM")) {
        for (int j = 0; j < k; j++) s += v[j];
        r = s % 10;
    } else {
        cr_assert(!strcmp(t, "[MED"), "unknown operator '%s'", t);
        double sorted[16];
        for (int j = 0; j < k; j++) sorted[j] = v[j];
        for (int a = 0; a < k; a++)
            for (int b = a + 1; b < k; b++)
                if (sorted[b] < sorted[a]) {
                    double x = sorted[a];
                    sorted[a] = sorted[b];
                    sorted[b] = x;
                }
        double med = k % 2 ? sorted[k / 2] : (sorted[k / 2 - 1] + sorted[k / 2]) / 2;
        r = (int)med;  // int(np.median(...))
    }
    return r;
}

// LRA's input pipeline: "]" -> "X", parentheses dropped, split on white space; then this
// file's own table of the documented ids.
static int word_id(const char *w) {
    static const char *names[] = {"[MIN", "[MAX", "[MED", "[SM", "X"};
    if (w[0] >= '0' && w[0] <= '9' && !w[1]) return 2 + (w[0] - '0');
    for (int k = 0; k < 5; k++)
        if (!strcmp(w, names[k])) return 12 + k;
    cr_assert_fail("unexpected word '%s'", w);
    return -1;
}

// Opens an lseq file and checks its header.
static void open_checked(lseq_file *f, const char *path, int T, int classes, int vocab,
                         uint64_t rows) {
    char err[256];
    cr_assert(lseq_open(f, path, 0, err, sizeof err) == 0, "%s", err);
    cr_assert_eq(f->info.T, T, "%s: T = %d", path, f->info.T);
    cr_assert_eq(f->info.num_classes, classes);
    cr_assert_eq(f->info.vocab_size, vocab);
    cr_assert_eq(f->info.token_bytes, 1);
    cr_assert_eq(f->info.rows, rows, "%s: %llu rows", path, (unsigned long long)f->info.rows);
}

typedef struct tsv_row {
    char *src;
    int target;
} tsv_row;

// Reads a basic_*.tsv: the header, then rows "source<TAB>target\r\n".
static int read_tsv(const char *path, tsv_row *rows, int cap) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len = getline(&line, &lcap, f);
    cr_assert(len > 0 && !strcmp(line, "Source\tTarget\r\n"), "%s: header '%s'", path, line);
    int n = 0;
    while ((len = getline(&line, &lcap, f)) > 0) {
        cr_assert(n < cap);
        cr_assert(len > 2 && line[len - 2] == '\r' && line[len - 1] == '\n', "%s row %d", path, n);
        line[len - 2] = 0;
        char *tab = strchr(line, '\t');
        cr_assert(tab && !strchr(tab + 1, '\t'), "%s row %d: not two columns", path, n);
        *tab = 0;
        rows[n].src = strdup(line);
        rows[n].target = atoi(tab + 1);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static int split_words(char *s, char **w, int cap) {
    int n = 0;
    for (char *t = strtok(s, " "); t; t = strtok(NULL, " ")) {
        cr_assert(n < cap);
        w[n++] = t;
    }
    return n;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(((const tsv_row *)a)->src, ((const tsv_row *)b)->src);
}

Test(lra, listops_rows_check_against_their_own_text) {
    make_tmp("lra-lo");
    cr_assert_eq(run("%s lra gen listops --out %s/d --train 240 --val 30 --test 30 --seed 7",
                     pebble_bin(), tmp), 0, "%s", output());
    static const char *split[3] = {"train", "val", "test"};
    const int want[3] = {240, 30, 30};
    static tsv_row all[300];
    static char *words[8000];
    int total = 0, labels[10] = {0};
    for (int s = 0; s < 3; s++) {
        char path[512];
        snprintf(path, sizeof path, "%s/d/basic_%s.tsv", tmp, split[s]);
        tsv_row *rows = all + total;
        int n = read_tsv(path, rows, 300 - total);
        cr_assert_eq(n, want[s], "%s: %d rows", path, n);
        snprintf(path, sizeof path, "%s/d/%s.lseq", tmp, split[s]);
        lseq_file f;
        open_checked(&f, path, 2000, 10, 17, (uint64_t)n);
        int32_t tok[2000];
        for (int r = 0; r < n; r++) {
            char *copy = strdup(rows[r].src);
            int nw = split_words(copy, words, 8000), i = 0;
            cr_assert_eq(eval_words(words, nw, &i), rows[r].target, "%s row %d", split[s], r);
            while (i < nw) cr_assert(!strcmp(words[i++], ")"), "%s row %d: text after the tree", split[s], r);
            // the lseq row: the same words, as LRA's pipeline tokenises them
            int label, len = lseq_row(&f, (uint64_t)r, tok, &label), k = 1;
            cr_assert_eq(label, rows[r].target);
            cr_assert_eq(tok[0], 1, "%s row %d: no [CLS] first", split[s], r);
            for (int j = 0; j < nw; j++) {
                if (!strcmp(words[j], "(") || !strcmp(words[j], ")")) continue;
                int id = word_id(!strcmp(words[j], "]") ? "X" : words[j]);
                cr_assert(k < len && tok[k] == id, "%s row %d word %d: id %d, file %d", split[s], r, k, id, tok[k]);
                k++;
            }
            cr_assert_eq(k, len, "%s row %d: %d words and [CLS], %d tokens", split[s], r, k, len);
            cr_assert(len - 1 > 500 && len - 1 < 2000, "%s row %d: length %d", split[s], r, len - 1);
            for (int j = len; j < 2000; j++) cr_assert_eq(tok[j], 0);
            labels[rows[r].target]++;
            free(copy);
        }
        lseq_close(&f);
        total += n;
    }
    // no tree twice, across the splits
    qsort(all, (size_t)total, sizeof *all, cmp_str);
    for (int r = 1; r < total; r++) cr_assert(strcmp(all[r - 1].src, all[r].src) != 0, "a duplicate");
    // every value occurs (300 trees: MIN and MAX alone make 0 and 9 common)
    for (int v = 0; v < 10; v++) cr_assert(labels[v] > 0, "no tree of value %d", v);
    for (int r = 0; r < total; r++) free(all[r].src);
}

Test(lra, listops_median_format_and_values) {
    // [MED 2 5 ] = int(3.5) = 3; [MED 1 2 3 4 ] = 2; [SM 9 9 9 ] = 7
    uint8_t med2[] = {LRA_LO_MED, 2 + 2, 2 + 5, LRA_LO_END};
    uint8_t med4[] = {LRA_LO_MED, 3, 4, 5, 6, LRA_LO_END};
    uint8_t sm[] = {LRA_LO_SM, 11, 11, 11, LRA_LO_END};
    cr_assert_eq(lra_listops_value(med2, 4), 3);
    cr_assert_eq(lra_listops_value(med4, 6), 2);
    cr_assert_eq(lra_listops_value(sm, 5), 7);
    uint8_t bad[] = {LRA_LO_MAX, 3, 4};  // no END
    cr_assert_eq(lra_listops_value(bad, 3), -1);
    // the original's to_string of ((('[MAX', 2), 9), ']') and a nested tree
    uint8_t mx[] = {LRA_LO_MAX, 4, 11, LRA_LO_END};
    char s[256];
    lra_listops_format(mx, 4, s);
    cr_assert_str_eq(s, "( ( ( [MAX 2 ) 9 ) ] )");
    uint8_t nest[] = {LRA_LO_MIN, 3, LRA_LO_SM, 4, 5, LRA_LO_END, LRA_LO_END};
    cr_assert_eq(lra_listops_strlen(nest, 7), lra_listops_format(nest, 7, s));
    cr_assert_str_eq(s, "( ( ( [MIN 1 ) ( ( ( [SM 2 ) 3 ) ] ) ) ] )");
    cr_assert_eq(lra_listops_value(nest, 7), 1);
    // drawn trees: the value the generator returns is the value of its tokens
    pb_rng rng;
    pb_rng_seed(&rng, 3);
    uint8_t tok[1999];
    int checked = 0;
    for (int t = 0; t < 2000; t++) {
        int v, n = lra_listops_tree(&rng, tok, 1999, &v);
        if (n < 0) continue;
        cr_assert_eq(lra_listops_value(tok, n), v);
        checked++;
    }
    cr_assert(checked > 1000);
}

static int same_files(const char *a, const char *b) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

Test(lra, listops_is_determined_by_its_seed) {
    make_tmp("lra-lo-seed");
    for (int k = 0; k < 3; k++)
        cr_assert_eq(run("%s lra gen listops --out %s/%d --train 20 --val 5 --test 5 --seed %d",
                         pebble_bin(), tmp, k, k == 2 ? 9 : 4), 0, "%s", output());
    char a[512], b[512], c[512];
    static const char *files[] = {"train.lseq", "val.lseq", "test.lseq", "basic_train.tsv"};
    for (int f = 0; f < 4; f++) {
        snprintf(a, sizeof a, "%s/0/%s", tmp, files[f]);
        snprintf(b, sizeof b, "%s/1/%s", tmp, files[f]);
        snprintf(c, sizeof c, "%s/2/%s", tmp, files[f]);
        cr_assert(same_files(a, b), "%s differs between two runs of one seed", files[f]);
        cr_assert(!same_files(a, c), "%s is the same for seeds 4 and 9", files[f]);
    }
}

// --- Pathfinder

static double hyp(double ay, double ax, double by, double bx) {
    return sqrt((ay - by) * (ay - by) + (ax - bx) * (ax - bx));
}

// The markers of every image against its scene: each on a tip of a target contour, both
// on one contour exactly when the label is 1, and the contour unbroken between them.
static void check_scenes(int res, int images) {
    lra_pf_params p;
    char err[256];
    cr_assert(lra_pf_params_for(res, "hard", &p, err, sizeof err) == 0, "%s", err);
    lra_pf_gen *g = lra_pf_gen_new(&p);
    uint8_t *px = malloc((size_t)res * res);
    int ones = 0;
    for (int i = 0; i < images; i++) {
        int label = lra_pf_image(g, 11, (uint64_t)i, px, err, sizeof err);
        cr_assert(label == 0 || label == 1, "%s", err);
        const lra_pf_scene *sc = lra_pf_last_scene(g);
        cr_assert_eq(sc->label, label);
        ones += label;
        cr_assert(sc->num_contours >= 2 && sc->contours[0].kind == LRA_PF_TARGET &&
                  sc->contours[1].kind == LRA_PF_TARGET);
        int on[2] = {-1, -1};  // the target contour each marker ends
        for (int c = 0; c < 2; c++) {
            const lra_pf_contour *co = &sc->contours[c];
            cr_assert_eq(co->count, p.contour_length);
            const lra_pf_paddle *a = &sc->paddles[co->first], *z = &sc->paddles[co->first + co->count - 1];
            if (sc->marker_y[0] == (int)a->y && sc->marker_x[0] == (int)a->x) on[0] = c;
            if (sc->marker_y[1] == (int)z->y && sc->marker_x[1] == (int)z->x) on[1] = c;
            // unbroken: each paddle begins within 2 margins (+ rounding) of the last one's end
            for (int k = 1; k < co->count; k++) {
                const lra_pf_paddle *q = &sc->paddles[co->first + k - 1], *r = &sc->paddles[co->first + k];
                double qy = q->y, qx = q->x;  // the far end of the previous paddle
                if (k == 1) qy += p.paddle_length * sin(q->angle), qx += p.paddle_length * cos(q->angle);
                double ry = r->y + p.paddle_length * sin(r->angle), rx = r->x + p.paddle_length * cos(r->angle);
                double gap = hyp(qy, qx, ry, rx);
                cr_assert(gap <= 2 * sc->margin + 3, "res %d image %d contour %d paddle %d: gap %.2f", res, i, c, k, gap);
            }
        }
        cr_assert(on[0] >= 0 && on[1] >= 0, "res %d image %d: a marker on no target contour's tip", res, i);
        if (label) cr_assert_eq(on[0], on[1], "res %d image %d: label 1, markers on two contours", res, i);
        else cr_assert_neq(on[0], on[1], "res %d image %d: label 0, markers on one contour", res, i);
        // the pixels: min 0, max 255 (imsave's scaling), and each marker drawn
        int lo = 255, hi = 0;
        for (int k = 0; k < res * res; k++) lo = px[k] < lo ? px[k] : lo, hi = px[k] > hi ? px[k] : hi;
        cr_assert(lo == 0 && hi == 255, "res %d image %d: pixels %d..%d", res, i, lo, hi);
        for (int m = 0; m < 2; m++)
            cr_assert(px[sc->marker_y[m] * res + sc->marker_x[m]] >= 128, "res %d image %d: marker %d dark", res, i, m);
        // distractors and fillers keep off the target contours' paddles
        for (int k = 2 * p.contour_length; k < sc->num_paddles; k++)
            cr_assert(sc->contours[sc->paddles[k].contour].kind != LRA_PF_TARGET);
    }
    cr_assert(ones > 0 && ones < images);
    free(px);
    lra_pf_gen_free(g);
}

Test(lra, pathfinder_markers_follow_the_scene_graph_32) { check_scenes(32, 200); }
Test(lra, pathfinder_markers_follow_the_scene_graph_64_128) {
    check_scenes(64, 20);
    check_scenes(128, 20);
}

Test(lra, pathfinder_files_labels_and_threads) {
    make_tmp("lra-pf");
    cr_assert_eq(run("%s lra gen pathfinder --res 32 --n 400 --out %s/a --threads 1 --png 3",
                     pebble_bin(), tmp), 0, "%s", output());
    cr_assert_eq(run("%s lra gen pathfinder --res 32 --n 400 --out %s/b --threads 2",
                     pebble_bin(), tmp), 0, "%s", output());
    static const char *split[3] = {"train", "val", "test"};
    const uint64_t rows[3] = {320, 40, 40};
    int ones = 0;
    for (int s = 0; s < 3; s++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/a/%s.lseq", tmp, split[s]);
        snprintf(b, sizeof b, "%s/b/%s.lseq", tmp, split[s]);
        cr_assert(same_files(a, b), "%s: 1 and 2 threads wrote different files", split[s]);
        lseq_file f;
        open_checked(&f, a, 1024, 2, 256, rows[s]);
        int32_t tok[1024];
        for (uint64_t r = 0; r < f.info.rows; r++) {
            int label;
            cr_assert_eq(lseq_row(&f, r, tok, &label), 1024);
            ones += label;
        }
        lseq_close(&f);
    }
    // 400 fair coins: 200 +- 10; 4.5 sigma either way
    cr_assert(ones >= 155 && ones <= 245, "%d of 400 images have label 1", ones);
    for (int k = 0; k < 3; k++) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "ls %s/a/png/%06d_label*.png >/dev/null 2>&1", tmp, k);
        cr_assert(system(cmd) == 0, "PNG %d missing", k);
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test $(ls %s/a/png | wc -l) -eq 3 && head -c 8 %s/a/png/000000_* | od -An -c | grep -q 'P   N   G'", tmp, tmp);
    cr_assert(system(cmd) == 0, "not 3 PNG files");
    // a different seed, different images
    cr_assert_eq(run("%s lra gen pathfinder --res 32 --n 10 --out %s/c --seed 2", pebble_bin(), tmp), 0);
    cr_assert_eq(run("%s lra gen pathfinder --res 32 --n 10 --out %s/d --seed 1", pebble_bin(), tmp), 0);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/c/train.lseq", tmp);
    snprintf(b, sizeof b, "%s/d/train.lseq", tmp);
    cr_assert(!same_files(a, b));
}

// --- the command's errors: one line, a non-zero exit

static void refused(int code, const char *needle, const char *fmt, const char *arg) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, arg);
    int rc = run("%s lra %s", pebble_bin(), cmd);
    cr_assert_eq(rc, code, "'%s' exited %d: %s", cmd, rc, output());
    const char *e = run_stderr();
    cr_assert(strstr(e, needle), "'%s': '%s' not in: %s", cmd, needle, e);
    cr_assert(strchr(e, '\n') == e + strlen(e) - 1, "'%s': not one line: %s", cmd, e);
}

Test(lra, command_errors) {
    make_tmp("lra-err");
    refused(2, "resolution 48", "gen pathfinder --res 48 --out %s/x", tmp);
    refused(2, "--res", "gen pathfinder --out %s/x", tmp);
    refused(2, "difficulty 'medium'", "gen pathfinder --res 32 --difficulty medium --out %s/x", tmp);
    refused(2, "not '0'", "gen pathfinder --res 32 --n 0 --out %s/x", tmp);
    refused(2, "not 'ten'", "gen pathfinder --res 32 --n ten --out %s/x", tmp);
    refused(2, "at least 10", "gen pathfinder --res 32 --n 5 --out %s/x", tmp);
    refused(2, "not '-3'", "gen listops --train -3 --out %s/x", tmp);
    refused(2, "pathfinder's options", "gen listops --res 32 --out %s/x", tmp);
    refused(2, "unknown task", "gen cifar --out %s/x", tmp);
    refused(2, "needs --out", "gen listops%s", "");
    refused(2, "unknown option", "gen listops --out %s/x --bogus", tmp);
    // an out dir that cannot be made: below a regular file
    char path[512];
    snprintf(path, sizeof path, "%s/file", tmp);
    FILE *f = fopen(path, "w");
    fclose(f);
    refused(1, "file", "gen pathfinder --res 32 --n 10 --out %s/file/sub", tmp);
    // a DIR holding files: refused, then written over with --force
    cr_assert_eq(run("%s lra gen pathfinder --res 32 --n 10 --out %s/y", pebble_bin(), tmp), 0, "%s", output());
    refused(2, "--force", "gen pathfinder --res 32 --n 10 --out %s/y", tmp);
    cr_assert_eq(run("%s lra gen pathfinder --res 32 --n 10 --out %s/y --force", pebble_bin(), tmp), 0, "%s", output());
    cr_assert_eq(run("%s lra --help", pebble_bin()), 0);
    cr_assert(strstr(run_stdout(), "pebble lra gen pathfinder"));
    cr_assert_eq(run("%s lra gen listops --help", pebble_bin()), 0);
}
