// test_lra.c: the LRA generators (data/lra/lra.h) and `pebble lra`. ListOps: every TSV
// row's value against a small evaluator of the TSV text written here, the length bounds, no
// duplicates across splits, the TSV text and the lseq tokens tokenised independently and
// compared, determinism by seed. Pathfinder: the markers against the generator's scene
// graph (not the pixels), label balance within binomial bounds, pixel range, the lseq
// headers, identical files with 1 and 2 threads. Text and Retrieval: fake aclImdb trees and
// AAN TSV files written here, every row against the test's own reading of those bytes (and a
// few rows spelled out by hand), truncation, order, determinism. The command's errors.
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
#include "tests/fixture.h"

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
    cr_assert_eq(f->info.token_bytes, vocab > 256 ? 2 : 1);
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

// Share of pixels above 0 and above 64, and mean grey level over `images` images (seed 5).
static void image_stats(int res, int fillers, int images, double *ink, double *lit,
                        double *mean) {
    lra_pf_params p;
    char err[256];
    cr_assert(lra_pf_params_for(res, "hard", &p, err, sizeof err) == 0, "%s", err);
    p.single_paddles = fillers;
    lra_pf_gen *g = lra_pf_gen_new(&p);
    uint8_t *px = malloc((size_t)res * res);
    double any = 0, on = 0, sum = 0;
    for (int i = 0; i < images; i++) {
        cr_assert(lra_pf_image(g, 5, (uint64_t)i, px, err, sizeof err) >= 0, "%s", err);
        for (int k = 0; k < res * res; k++) any += px[k] > 0, on += px[k] > 64, sum += px[k];
    }
    double all = (double)images * res * res;
    *ink = any / all, *lit = on / all, *mean = sum / all;
    free(px);
    lra_pf_gen_free(g);
}

// Image statistics per resolution, against snakes2 itself, run here with LRA's parameters
// (dev/lra/snakes2_reference.py, the old scipy's resize and save): at 32 px over 2,000 of its
// images 0.342 of the pixels above 0, 0.126 above 64, mean grey 20.2 (pebble: 0.340, 0.125,
// 20.1); at 64 px over 6 of its images 0.266, 0.090, 13.6 (pebble 0.258, 0.089, 13.4); at
// 128 px over 20 of its images 0.133, 0.040, 7.7 (pebble 0.137, 0.041, 7.9). The ranges are
// +-12% of those at 32 px, +-20% at 64 and 128. LRA's images have no single-paddle fillers
// (snakes2_wrapper.py's body sets use_single_paddles = False); with them (--fillers) the
// images lie outside the ranges.
Test(lra, pathfinder_image_statistics, .timeout = 120) {
    static const struct { int res, images; double ink, lit, mean, tol; } want[3] = {
        {32, 300, 0.342, 0.126, 20.2, 0.12},
        {64, 120, 0.266, 0.090, 13.6, 0.20},
        {128, 40, 0.133, 0.040, 7.7, 0.20},
    };
    for (int r = 0; r < 3; r++) {
        double ink, lit, mean, t = want[r].tol;
        image_stats(want[r].res, 0, want[r].images, &ink, &lit, &mean);
        cr_expect(fabs(ink / want[r].ink - 1) <= t && fabs(lit / want[r].lit - 1) <= t &&
                      fabs(mean / want[r].mean - 1) <= t,
                  "%d px: %.3f of the pixels above 0, %.3f above 64, mean grey %.1f; snakes2 "
                  "%.3f, %.3f, %.1f (+-%.0f%%)", want[r].res, ink, lit, mean, want[r].ink,
                  want[r].lit, want[r].mean, 100 * t);
        image_stats(want[r].res, 1, want[r].images / 2, &ink, &lit, &mean);
        cr_expect(lit > want[r].lit * (1 + t) && mean > want[r].mean * (1 + t),
                  "%d px with fillers: %.3f above 64, mean %.1f: inside the range without",
                  want[r].res, lit, mean);
    }
}
// The drawing against PIL itself (tests/fixtures/gen_pathfinder_fixture.py, Debian 12's
// Pillow 9.4: the paddle and marker images as snakes2 made LRA's, PIL's lines and 8-bit
// Lanczos): every pixel of ~100 paddles per resolution and margin (lines 1 pixel wide at 2x
// at 32 px, PIL's Bresenham walk; 2-4 at 64-256, PIL's quadrilateral) and of each marker
// equal. (LRA's Pillow of 2019 may have filled wide lines a little differently.)
static const fx_record *pf_rec(const char *fmt, int res, int m) {
    char name[64];
    snprintf(name, sizeof name, fmt, res, m);
    fx_load("tests/fixtures/pathfinder_draw.bin");
    return fx_get(name);
}
Test(lra, pathfinder_drawing_matches_pil) {
    static const int res[4] = {32, 64, 128, 256};
    for (int r = 0; r < 4; r++) {
        lra_pf_params p;
        char err[256];
        cr_assert(lra_pf_params_for(res[r], "hard", &p, err, sizeof err) == 0, "%s", err);
        for (int mi = 0; mi < p.num_margins; mi++) {
            int m = p.margins[mi], h = p.paddle_length + (int)ceil(p.thickness) + m;
            int s1 = 2 * h + 1, s2 = 2 * h * 2 + 1;
            const fx_record *ang = pf_rec("paddle.%d.%d.angles", res[r], m);
            const int32_t *want = pf_rec("paddle.%d.%d.images", res[r], m)->data;
            lra_pil_taps t;
            lra_pil_taps_init(&t, s2, s1);
            uint8_t *mini = malloc((size_t)s1 * s1), *scratch = malloc((size_t)s2 * (s2 + s1));
            long off = 0, worst = 0, n = 0;
            for (size_t a = 0; a < ang->numel / 2; a++) {
                double angle;
                memcpy(&angle, (const char *)ang->data + 8 * a, 8);
                lra_pf_paddle_image(&p, m, angle, &t, mini, scratch);
                for (int i = 0; i < s1 * s1; i++, n++) {
                    long d = labs((long)mini[i] - want[a * s1 * s1 + i]);
                    off += d > 1, worst = d > worst ? d : worst;
                }
            }
            cr_expect(worst == 0, "%d px margin %d: %ld of %ld paddle pixels more than 1 grey "
                      "level from PIL's, the worst %ld", res[r], m, off, n, worst);
            lra_pil_taps_free(&t);
            free(mini);
            free(scratch);
        }
        const fx_record *pos = pf_rec("marker.%d.pos", res[r], 0);
        const int32_t *at = pos->data, *want = pf_rec("marker.%d.images", res[r], 0)->data;
        int n = res[r];
        lra_pil_taps t;
        lra_pil_taps_init(&t, 2 * n, n);
        uint8_t *img = malloc((size_t)n * n), *scratch = malloc((size_t)6 * n * n);
        for (size_t k = 0; k < pos->numel / 2; k++) {
            lra_pf_marker_image(n, p.marker_radius, at[2 * k], at[2 * k + 1], &t, img, scratch);
            for (int i = 0; i < n * n; i++)
                cr_assert_eq(img[i], want[k * n * n + i], "%d px marker %zu pixel %d: %d, PIL %d",
                             n, k, i, img[i], want[k * n * n + i]);
        }
        lra_pil_taps_free(&t);
        free(img);
        free(scratch);
    }
}

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
    refused(2, "pathfinder's options", "gen listops --fillers --out %s/x", tmp);
    refused(2, "--threads is pathfinder's option (listops runs in one thread)",
            "gen listops --threads 4 --out %s/x", tmp);
    refused(2, "sheet takes only --out and --seed", "sheet --res 64 --out %s/s.png", tmp);
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

// --- Text (IMDB) and Retrieval (AAN): inputs in the published layouts, written here

static void put_file(const char *path, const void *bytes, size_t n) {
    char dir[512], err[256];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    cr_assert(pb_make_dirs(dir, err, sizeof err) == 0, "%s", err);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

// This test's own reading of a document: Python's bytes.strip() when asked (tfds strips the
// reviews), then [CLS] = 257 and byte b as b + 1 (tfds ByteTextEncoder), cut to T tokens.
static int expect_doc(const uint8_t *b, size_t n, int strip, int32_t *tok, int T) {
    const char *ws = " \t\n\r\v\f";
    if (strip) {
        while (n && b[0] && strchr(ws, b[0])) b++, n--;
        while (n && b[n - 1] && strchr(ws, b[n - 1])) n--;
    }
    int len = 0;
    tok[len++] = 257;
    for (size_t i = 0; i < n && len < T; i++) tok[len++] = b[i] + 1;
    for (int i = len; i < T; i++) tok[i] = 0;
    return len;
}

typedef struct review {
    const char *path;  // below the aclImdb directory
    uint8_t *bytes;
    size_t n;
} review;

// A review of n bytes drawn from every byte value but white space, so nothing is stripped.
static uint8_t *noise(size_t n, uint64_t seed) {
    uint8_t *b = malloc(n);
    pb_rng rng;
    pb_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)pb_rng_u64(&rng);
        if (strchr(" \t\n\r\v\f", b[i]) && b[i]) b[i] = 'x';
    }
    return b;
}

// A fake aclImdb: the reviews (in the order given, which is not the sorted one), and the
// files pebble must ignore (unsup/, the bag-of-words and URL files, a README).
static void make_imdb(const char *dir, const review *r, int n) {
    char path[600];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, r[i].path);
        put_file(path, r[i].bytes, r[i].n);
    }
    static const char *ignored[] = {"train/unsup/0_0.txt", "train/labeledBow.feat",
                                    "train/urls_pos.txt", "test/urls_neg.txt", "README",
                                    "imdb.vocab", "train/pos/.hidden.txt", "train/neg/notes.md"};
    for (size_t k = 0; k < sizeof ignored / sizeof *ignored; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, ignored[k]);
        put_file(path, "1 2 3", 5);
    }
}

static void check_row(const lseq_file *f, uint64_t r, const int32_t *want, int want_len,
                      int want_label, const char *what) {
    static int32_t tok[8000];
    int label, len = lseq_row(f, r, tok, &label);
    cr_assert_eq(len, want_len, "%s row %llu: length %d, want %d", what, (unsigned long long)r, len, want_len);
    cr_assert_eq(label, want_label, "%s row %llu: label %d", what, (unsigned long long)r, label);
    for (int i = 0; i < f->info.T; i++)
        cr_assert_eq(tok[i], want[i], "%s row %llu token %d: %d, want %d", what,
                     (unsigned long long)r, i, tok[i], want[i]);
}

Test(lra, text_rows_are_the_reviews_bytes) {
    make_tmp("lra-text");
    uint8_t *long5k = noise(5000, 1), *exact3999 = noise(3999, 2), *exact4000 = noise(4000, 3);
    // white space at both ends (stripped), empty lines inside (kept), non-ASCII and NUL bytes
    static const uint8_t spaced[] = "\n\n  ok\xff\x00!\n\nend  \r\n";
    static const uint8_t utf8[] = "Bad \xc3\xa9 movie<br /><br />really";
    review r[] = {
        {"train/pos/2_9.txt", long5k, 5000},
        {"train/pos/10_7.txt", (uint8_t *)spaced, sizeof spaced - 1},
        {"train/pos/1_8.txt", (uint8_t *)"Great!", 6},
        {"train/neg/3_1.txt", (uint8_t *)utf8, sizeof utf8 - 1},
        {"train/neg/0_2.txt", exact4000, 4000},
        {"test/neg/7_4.txt", exact3999, 3999},
        {"test/neg/12_3.txt", (uint8_t *)"x", 1},
        {"test/pos/5_10.txt", (uint8_t *)"\v\fyes\t", 6},
    };
    // rows in pebble's order: neg then pos, names by strcmp ("10_7" before "1_8" before "2_9")
    const int train_order[] = {4, 3, 1, 2, 0}, test_order[] = {6, 5, 7};
    const int train_label[] = {0, 0, 1, 1, 1}, test_label[] = {0, 0, 1};
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/aclImdb", tmp);
    make_imdb(a, r, 8);
    cr_assert_eq(run("%s lra gen text --imdb %s --out %s/o", pebble_bin(), a, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "train 5 (neg 2, pos 3), test 3 (neg 2, pos 1"), "%s", run_stdout());
    cr_assert(strstr(run_stdout(), " 2 (25.0%) cut to 3999 bytes"), "%s", run_stdout());  // 5000, 4000
    static int32_t want[4000];
    lseq_file f;
    snprintf(b, sizeof b, "%s/o/train.lseq", tmp);
    open_checked(&f, b, 4000, 2, 258, 5);
    for (int k = 0; k < 5; k++) {
        const review *v = &r[train_order[k]];
        check_row(&f, (uint64_t)k, want, expect_doc(v->bytes, v->n, 1, want, 4000), train_label[k], v->path);
    }
    // spelled out: "ok\xff\x00!\n\nend" as CLS, bytes + 1
    static const int32_t spaced_ids[] = {257, 'o' + 1, 'k' + 1, 256, 1, '!' + 1, 11, 11, 'e' + 1, 'n' + 1, 'd' + 1};
    int32_t tok[4000];
    int label;
    cr_assert_eq(lseq_row(&f, 2, tok, &label), 11);
    for (int i = 0; i < 11; i++) cr_assert_eq(tok[i], spaced_ids[i], "token %d", i);
    // the 5000-byte review: CLS and its first 3999 bytes; the 4000-byte one loses its last
    cr_assert_eq(lseq_row(&f, 4, tok, &label), 4000);
    cr_assert_eq(tok[3999], long5k[3998] + 1);
    cr_assert_eq(lseq_row(&f, 0, tok, &label), 4000);
    cr_assert_eq(tok[3999], exact4000[3998] + 1);
    lseq_close(&f);
    snprintf(b, sizeof b, "%s/o/test.lseq", tmp);
    open_checked(&f, b, 4000, 2, 258, 3);
    for (int k = 0; k < 3; k++) {
        const review *v = &r[test_order[k]];
        check_row(&f, (uint64_t)k, want, expect_doc(v->bytes, v->n, 1, want, 4000), test_label[k], v->path);
    }
    cr_assert_eq(lseq_row(&f, 1, tok, &label), 4000);  // 3999 bytes fit whole
    cr_assert_eq(tok[3999], exact3999[3998] + 1);
    lseq_close(&f);
    // val is the test set, as LRA evaluates IMDB
    snprintf(a, sizeof a, "%s/o/val.lseq", tmp);
    cr_assert(same_files(a, b), "val.lseq is not test.lseq");
    // the same input written in another order gives the same files; a run is reproducible
    review back[8];
    for (int i = 0; i < 8; i++) back[i] = r[7 - i];
    snprintf(a, sizeof a, "%s/aclImdb2", tmp);
    make_imdb(a, back, 8);
    cr_assert_eq(run("%s lra gen text --imdb %s --out %s/o2", pebble_bin(), a, tmp), 0, "%s", output());
    static const char *files[] = {"train.lseq", "val.lseq", "test.lseq"};
    for (int k = 0; k < 3; k++) {
        snprintf(a, sizeof a, "%s/o/%s", tmp, files[k]);
        snprintf(b, sizeof b, "%s/o2/%s", tmp, files[k]);
        cr_assert(same_files(a, b), "%s depends on the order the files were made", files[k]);
    }
    // a changed review changes the file
    put_file(strcat(strcpy(a, tmp), "/aclImdb2/train/pos/1_8.txt"), "Great?", 6);
    cr_assert_eq(run("%s lra gen text --imdb %s/aclImdb2 --out %s/o2 --force", pebble_bin(), tmp, tmp), 0);
    snprintf(a, sizeof a, "%s/o/train.lseq", tmp);
    snprintf(b, sizeof b, "%s/o2/train.lseq", tmp);
    cr_assert(!same_files(a, b));
    free(long5k);
    free(exact3999);
    free(exact4000);
}

typedef struct pair_in {
    const char *label;  // as written
    int value;
    const char *id1, *id2;
    const uint8_t *t1, *t2;
    size_t n1, n2;
} pair_in;

static void put_tsv(const char *path, const pair_in *p, int n, int crlf) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\t%s\t%s\t", p[i].label, p[i].id1, p[i].id2);
        fwrite(p[i].t1, 1, p[i].n1, f);
        fputc('\t', f);
        fwrite(p[i].t2, 1, p[i].n2, f);
        fputs(crlf ? "\r\n" : "\n", f);
    }
    fclose(f);
}

// The row the test expects: document 1 at [0, 4000), document 2 at [4000, 8000); the length
// runs to document 2's end.
static int expect_pair(const pair_in *p, int32_t *want) {
    expect_doc(p->t1, p->n1, 0, want, 4000);
    return 4000 + expect_doc(p->t2, p->n2, 0, want + 4000, 4000);
}

Test(lra, retrieval_rows_are_the_pairs_bytes) {
    make_tmp("lra-aan");
    uint8_t *big = noise(5000, 4);
    for (int i = 0; i < 5000; i++) if (big[i] == '\t' || big[i] == '\n' || big[i] == 0) big[i] = 'y';
    static const uint8_t u[] = "Caf\xc3\xa9 \"quoted\" text";  // quotes are text (no quoting)
    const pair_in train[] = {
        {"1", 1, "P01-1", "P02-2", (const uint8_t *)"citing paper", (const uint8_t *)"cited", 12, 5},
        {"0.0", 0, "X", "Y", u, big, sizeof u - 1, 5000},
        {"1.0", 1, "A", "B", big, (const uint8_t *)"", 5000, 0},
    };
    const pair_in eval[] = {{"0", 0, "e1", "e2", (const uint8_t *)"a b", (const uint8_t *)"c", 3, 1}};
    const pair_in test[] = {
        {"1", 1, "t1", "t2", (const uint8_t *)"q", (const uint8_t *)"r\xff", 1, 2},
        {"0", 0, "t3", "t4", (const uint8_t *)"s", (const uint8_t *)"t", 1, 1},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/tsv_data/new_aan_pairs.train.tsv", tmp);
    put_file(path, "", 0);
    put_tsv(path, train, 3, 0);
    snprintf(path, sizeof path, "%s/tsv_data/new_aan_pairs.eval.tsv", tmp);
    put_tsv(path, eval, 1, 1);  // CRLF line ends
    snprintf(path, sizeof path, "%s/tsv_data/new_aan_pairs.test.tsv", tmp);
    put_tsv(path, test, 2, 0);
    // the directory, the prefix and one of the files name the same three files
    cr_assert_eq(run("%s lra gen retrieval --aan %s/tsv_data --out %s/a", pebble_bin(), tmp, tmp), 0, "%s", output());
    cr_assert(strstr(run_stdout(), "6 pairs: train 3, val 1 (from eval), test 2"), "%s", run_stdout());
    cr_assert(strstr(run_stdout(), "2 of 12 documents cut"), "%s", run_stdout());
    cr_assert_eq(run("%s lra gen retrieval --aan %s/tsv_data/new_aan_pairs --out %s/b", pebble_bin(), tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s lra gen retrieval --aan %s/tsv_data/new_aan_pairs.eval.tsv --out %s/c", pebble_bin(), tmp, tmp), 0, "%s", output());
    static const char *split[3] = {"train", "val", "test"};
    const pair_in *in[3] = {train, eval, test};
    const int rows[3] = {3, 1, 2};
    static int32_t want[8000];
    for (int s = 0; s < 3; s++) {
        char a[512], b[512], c[512];
        snprintf(a, sizeof a, "%s/a/%s.lseq", tmp, split[s]);
        snprintf(b, sizeof b, "%s/b/%s.lseq", tmp, split[s]);
        snprintf(c, sizeof c, "%s/c/%s.lseq", tmp, split[s]);
        cr_assert(same_files(a, b) && same_files(a, c), "%s: --aan forms disagree", split[s]);
        lseq_file f;
        open_checked(&f, a, 8000, 2, 258, (uint64_t)rows[s]);
        for (int r = 0; r < rows[s]; r++)
            check_row(&f, (uint64_t)r, want, expect_pair(&in[s][r], want), in[s][r].value, split[s]);
        lseq_close(&f);
    }
    // spelled out: train row 0 = CLS "citing paper" padding | CLS "cited" padding, length 4006
    lseq_file f;
    snprintf(path, sizeof path, "%s/a/train.lseq", tmp);
    open_checked(&f, path, 8000, 2, 258, 3);
    int32_t *tok = want, label;
    cr_assert_eq(lseq_row(&f, 0, tok, &label), 4006);
    cr_assert(tok[0] == 257 && tok[1] == 'c' + 1 && tok[12] == 'r' + 1 && tok[13] == 0 && tok[3999] == 0);
    cr_assert(tok[4000] == 257 && tok[4001] == 'c' + 1 && tok[4005] == 'd' + 1 && tok[4006] == 0);
    // row 2: document 1 cut to 3999 bytes, document 2 empty (CLS alone)
    cr_assert_eq(lseq_row(&f, 2, tok, &label), 4001);
    cr_assert(tok[3999] == big[3998] + 1 && tok[4000] == 257 && tok[4001] == 0);
    lseq_close(&f);
    free(big);
}


// DIR holds no file (a refusal after the splits were opened leaves no .tmp behind).
static void assert_empty_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\" || ls -A '%s' >&2", dir, dir);
    cr_assert(system(cmd) == 0, "%s is not empty", dir);
}

Test(lra, text_and_retrieval_refusals) {
    make_tmp("lra-txerr");
    char d[512], p[700], cmd[2400];
    snprintf(d, sizeof d, "%s/imdb", tmp);
    static const char *dirs[] = {"train/pos", "train/neg", "test/pos", "test/neg"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s/1_1.txt", d, dirs[k]);
        put_file(p, "fine", 4);
    }
    cr_assert_eq(run("%s lra gen text --imdb %s --out %s/ok", pebble_bin(), d, tmp), 0, "%s", output());
    snprintf(cmd, sizeof cmd, "gen text --imdb %s --out %s/ok", d, tmp);
    refused(2, "--force", "%s", cmd);
    cr_assert_eq(run("%s lra %s --force", pebble_bin(), cmd), 0, "%s", output());
    struct { int code; const char *needle, *args; } usage[] = {
        {2, "needs --imdb", "gen text --out %s/x"},
        {2, "--imdb is text's option", "gen listops --imdb . --out %s/x"},
        {2, "--aan is retrieval's option", "gen text --aan . --out %s/x"},
        {2, "listops' options", "gen text --train 5 --out %s/x"},
        {2, "pathfinder's options", "gen retrieval --res 32 --out %s/x"},
        {3, "/nope is not a directory", "gen text --imdb %s/nope --out /tmp/x"},
    };
    for (size_t k = 0; k < sizeof usage / sizeof *usage; k++)
        refused(usage[k].code, usage[k].needle, usage[k].args, tmp);
    // the tree's faults: each refused naming the path, before or without leaving files
    struct { const char *make, *needle; } bad[] = {
        {"rm -r %s/test/neg", "test/neg: No such file"},
        {"rm %s/train/pos/1_1.txt && echo x > %s/train/pos/notes.md", "train/pos: no reviews"},
        {"mkdir %s/test/pos/2_3.txt", "test/pos/2_3.txt: not a regular file"},
        {": > %s/train/neg/5_1.txt", "train/neg/5_1.txt: an empty review (0 bytes"},
        {"printf ' \\n\\r\\t ' > %s/test/neg/5_1.txt", "test/neg/5_1.txt: an empty review (5 bytes, all white space"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s/bad %s/dst && cp -r %s %s/bad && ", tmp, tmp, d, tmp);
        char one[600];
        snprintf(one, sizeof one, bad[k].make, "$B", "$B");
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "B=%s/bad; %s", tmp, one);
        cr_assert(system(cmd) == 0, "%s", cmd);
        snprintf(cmd, sizeof cmd, "gen text --imdb %s/bad --out %s/dst", tmp, tmp);
        refused(3, bad[k].needle, "%s", cmd);
        snprintf(p, sizeof p, "%s/dst", tmp);
        if (access(p, F_OK) == 0) assert_empty_dir(p);
    }
    // AAN: a good set, then one fault at a time, each named by file and line
    snprintf(d, sizeof d, "%s/aan", tmp);
    static const char *split[3] = {"train", "eval", "test"};
    for (int s = 0; s < 3; s++) {
        snprintf(p, sizeof p, "%s/new_aan_pairs.%s.tsv", d, split[s]);
        put_file(p, "1\ta\tb\tx\ty\n0\tc\td\tz\tw\n", 20);
    }
    cr_assert_eq(run("%s lra gen retrieval --aan %s --out %s/aok", pebble_bin(), d, tmp), 0, "%s", output());
    refused(2, "needs --aan", "gen retrieval --out %s/x", tmp);
    struct { const char *file, *text, *needle; } tsv[] = {
        {"train", "1\ta\tb\tx\ty\n0\tc\td\tz\n", "new_aan_pairs.train.tsv:2: 4 columns; want 5"},
        {"eval", "1\ta\tb\tx\ty\n0\tc\td\tz\tw\n2\te\tf\tg\th\n", "new_aan_pairs.eval.tsv:3: label '2' (want 0 or 1)"},
        {"test", "label\tid1\tid2\ttext1\ttext2\n1\ta\tb\tx\ty\n", "new_aan_pairs.test.tsv:1: label 'label' (want 0 or 1; a header?"},
        {"train", "1\ta\tb\tx\ty\n\n0\tc\td\tz\tw\n", "new_aan_pairs.train.tsv:2: an empty line"},
        {"test", "1\ta\tb\tx\ty\tz\n", "new_aan_pairs.test.tsv:1: 6 columns"},
        {"eval", "yes\ta\tb\tx\ty\n", "new_aan_pairs.eval.tsv:1: label 'yes'"},
        {"eval", "", "new_aan_pairs.eval.tsv: no pairs in it"},
    };
    for (size_t k = 0; k < sizeof tsv / sizeof *tsv; k++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s/badaan %s/dst && cp -r %s %s/badaan", tmp, tmp, d, tmp);
        cr_assert(system(cmd) == 0);
        snprintf(p, sizeof p, "%s/badaan/new_aan_pairs.%s.tsv", tmp, tsv[k].file);
        put_file(p, tsv[k].text, strlen(tsv[k].text));
        snprintf(cmd, sizeof cmd, "gen retrieval --aan %s/badaan --out %s/dst", tmp, tmp);
        refused(3, tsv[k].needle, "%s", cmd);
        snprintf(p, sizeof p, "%s/dst", tmp);
        assert_empty_dir(p);
    }
    snprintf(p, sizeof p, "rm %s/new_aan_pairs.eval.tsv", d);
    cr_assert(system(p) == 0);
    refused(3, "new_aan_pairs.eval.tsv: No such file", "gen retrieval --aan %s/aan --out /tmp/x", tmp);
    cr_assert_eq(run("%s lra --help", pebble_bin()), 0);
    cr_assert(strstr(run_stdout(), "pebble lra gen text --imdb DIR") &&
              strstr(run_stdout(), "pebble lra gen retrieval --aan"));
}
