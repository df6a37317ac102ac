// cmd.c: `pebble lra`: generate the ListOps and Pathfinder data sets (lra.h), and tokenise the
// user's copy of Text (IMDB) and Retrieval (AAN), into a directory of labelled-sequence files
// (and, for ListOps, LRA's own TSV files).
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/lra/lra.h"
#include "data/lseq.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: pebble lra gen listops --out DIR [--train N] [--val N] [--test N] [--seed S]\n"
            "       pebble lra gen pathfinder --res 32|64|128|256 --out DIR [--n N]\n"
            "                  [--difficulty easy|intermediate|hard] [--png K] [--threads N] [--seed S]\n"
            "                  [--fillers]\n"
            "       pebble lra gen text --imdb DIR --out DIR\n"
            "       pebble lra gen retrieval --aan DIR|PREFIX --out DIR\n"
            "       pebble lra sheet --out FILE.png [--seed S]\n"
            "       pebble lra upsample-pos --from CKPT --to T --out CKPT2.h5   (its --help)\n"
            "\n"
            "Long Range Arena data sets, generated as the original scripts do (README: LRA).\n"
            "  listops     trees of MIN/MAX/MED/SM over 0-9, 500 < length < 2000, no duplicates;\n"
            "              DIR/basic_{train,val,test}.tsv (LRA's format) and {train,val,test}.lseq\n"
            "              (17-token vocabulary, T = 2000, 10 classes); default 96000/2000/2000\n"
            "  pathfinder  snakes2 images (two target contours, distractors, two markers);\n"
            "              DIR/{train,val,test}.lseq split 80/10/10 (pixels 0-255, T = res^2,\n"
            "              2 classes); --n images in all (default 200000), --difficulty default\n"
            "              hard (contour length 14), --png K: the first K as DIR/png/*.png,\n"
            "              --fillers: also snakes2's single-paddle fillers (LRA's data have none)\n"
            "  text        IMDB reviews from the aclImdb layout (--imdb DIR: DIR/{train,test}/\n"
            "              {neg,pos}/*.txt; label 0 neg, 1 pos); DIR/{train,val,test}.lseq, val =\n"
            "              test as LRA evaluates; bytes as tokens (1..256, CLS 257, 2-byte\n"
            "              tokens), T = 4000: CLS and the first 3999 bytes; 25000/25000/25000\n"
            "  retrieval   AAN citation pairs from LRA's new_aan_pairs.{train,eval,test}.tsv\n"
            "              (--aan DIR holding them, or their PREFIX; columns label, id1, id2,\n"
            "              text1, text2, no header); DIR/{train,val,test}.lseq, a row of T =\n"
            "              8000: document 1 in [0, 4000) padded, document 2 from 4000 (README)\n"
            "  sheet       a contact sheet: 16 images each of res 32, 64 and 128, labelled\n"
            "  --seed S    the data set's seed (default 1); the same seed gives the same files\n"
            "  --threads N pathfinder's worker threads (default: every core); the files do not\n"
            "              depend on it (ListOps is drawn in one thread: de-duplication is in order)\n"
            "  --force     write into a DIR that already holds files (replacing ours)\n");
}

// A count: digits only, 1 .. max.
static uint64_t parse_count(const char *flag, const char *s, uint64_t max) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v < 1 || v > max)
        pb_die(PB_EXIT_USAGE, "lra: %s wants a whole number from 1 to %llu, not '%s'", flag,
               (unsigned long long)max, s);
    return v;
}

typedef struct opts {
    const char *out, *difficulty, *imdb, *aan;
    uint64_t seed, train, val, test, n, png;
    int res, threads, force, seen_counts, seen_pf, fillers;
} opts;

static void parse(int argc, char **argv, int first, opts *o) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        char name[64];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        static const char *takes[] = {"--out", "--seed", "--train", "--val", "--test",
                                      "--n", "--res", "--difficulty", "--png", "--threads",
                                      "--imdb", "--aan"};
        const char *val = NULL;
        for (size_t k = 0; k < sizeof takes / sizeof *takes && !val; k++)
            if (!strcmp(name, takes[k])) {
                if (eq) val = eq + 1;
                else if (i + 1 < argc) val = argv[++i];
                else pb_die(PB_EXIT_USAGE, "lra: %s needs a value (see pebble lra --help)", name);
            }
        if (!val && eq) pb_die(PB_EXIT_USAGE, "lra: unknown option '%s' (see pebble lra --help)", a);
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(name, "--out")) {
            o->out = val;
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            o->seed = strtoull(val, &end, 10);
            if (val[0] < '0' || val[0] > '9' || *end || errno)
                pb_die(PB_EXIT_USAGE, "lra: --seed wants a whole number >= 0, not '%s'", val);
        } else if (!strcmp(name, "--train") || !strcmp(name, "--val") || !strcmp(name, "--test")) {
            uint64_t *slot = name[3] == 'r' ? &o->train : name[3] == 'a' ? &o->val : &o->test;
            *slot = parse_count(name, val, 10000000);
            o->seen_counts = 1;
        } else if (!strcmp(name, "--n")) {
            o->n = parse_count(name, val, 100000000);
            o->seen_pf = 1;
        } else if (!strcmp(name, "--png")) {
            o->png = strcmp(val, "0") == 0 ? 0 : parse_count(name, val, 100000000);
            o->seen_pf = 1;
        } else if (!strcmp(name, "--res")) {
            o->res = (int)parse_count(name, val, 1 << 20);
            o->seen_pf = 1;
        } else if (!strcmp(name, "--difficulty")) {
            o->difficulty = val;
            o->seen_pf = 1;
        } else if (!strcmp(name, "--imdb")) {
            o->imdb = val;
        } else if (!strcmp(name, "--aan")) {
            o->aan = val;
        } else if (!strcmp(name, "--threads")) {
            o->threads = (int)parse_count(name, val, 1024);
        } else if (!strcmp(name, "--force")) {
            o->force = 1;
        } else if (!strcmp(name, "--fillers")) {
            o->fillers = 1;
            o->seen_pf = 1;
        } else {
            pb_die(PB_EXIT_USAGE, "lra: unknown option '%s' (see pebble lra --help)", a);
        }
    }
}

// DIR is created if missing; one that holds anything is refused unless --force.
static void prepare_dir(const char *dir, int force) {
    char err[1024];
    if (pb_make_dirs(dir, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
    DIR *d = opendir(dir);
    if (!d) pb_die(PB_EXIT_RUNTIME, "lra: cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    const char *first = NULL;
    while ((e = readdir(d)) && !first)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) first = e->d_name;
    if (first && !force)
        pb_die(PB_EXIT_USAGE, "lra: %s already holds files (%s); pass --force to write over them",
               dir, first);
    closedir(d);
    if (access(dir, W_OK) != 0) pb_die(PB_EXIT_RUNTIME, "lra: %s is not writable", dir);
}

// --- progress: a line every few seconds on stderr

typedef struct progress {
    const char *what;
    double t0, last;
} progress;

static void progress_show(progress *p, uint64_t done, uint64_t total, int final) {
    double now = pb_now(), dt = now - p->t0;
    if (!final && (now - p->last < 3.0 || done == total)) return;
    p->last = now;
    double rate = dt > 0 ? (double)done / dt : 0, eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "lra: %s: %llu/%llu (%.1f%%), %.0f/s, %s %dm%02ds\n", p->what,
            (unsigned long long)done, (unsigned long long)total, 100.0 * (double)done / (double)total,
            rate, final ? "took" : "ETA", (int)((final ? dt : eta) / 60), (int)(final ? dt : eta) % 60);
}

static lseq_writer *open_split(const char *dir, const char *name, const lseq_info *info) {
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s.lseq", dir, name);
    lseq_writer *w = lseq_create(path, info, err, sizeof err);
    if (!w) pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
    return w;
}

static void finish_split(lseq_writer *w) {
    char err[1024];
    if (lseq_finish(w, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
}

static void append_row(lseq_writer *w, const int32_t *tok, int len, int label) {
    char err[1024];
    if (lseq_append(w, tok, len, label, err, sizeof err) != 0) {
        lseq_abort(w);
        pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
    }
}

// --- ListOps

// Accepted trees, for the duplicate check: their tokens in one arena, a hash table of them.
typedef struct tree_set {
    uint8_t *arena;
    size_t used, cap;
    uint64_t *off;   // [count] start of each tree in the arena
    uint32_t *len;
    uint32_t *slot;  // [mask + 1] tree index + 1, 0 = empty
    uint64_t mask, count;
} tree_set;

static uint64_t fnv1a(const uint8_t *p, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

// Adds the tree unless it is there; returns 1 if it was new.
static int tree_set_add(tree_set *s, const uint8_t *tok, int n) {
    uint64_t h = fnv1a(tok, n) & s->mask;
    for (; s->slot[h]; h = (h + 1) & s->mask) {
        uint32_t k = s->slot[h] - 1;
        if (s->len[k] == (uint32_t)n && memcmp(s->arena + s->off[k], tok, (size_t)n) == 0)
            return 0;
    }
    if (s->used + (size_t)n > s->cap) {
        s->cap = 2 * s->cap + (size_t)n + (1u << 20);
        s->arena = realloc(s->arena, s->cap);
        if (!s->arena) pb_die(PB_EXIT_RUNTIME, "lra: out of memory for the ListOps trees");
    }
    memcpy(s->arena + s->used, tok, (size_t)n);
    s->off[s->count] = s->used;
    s->len[s->count] = (uint32_t)n;
    s->used += (size_t)n;
    s->slot[h] = (uint32_t)++s->count;
    return 1;
}

static FILE *open_tsv(const char *dir, const char *split, char *path, size_t cap) {
    snprintf(path, cap, "%s/basic_%s.tsv.tmp", dir, split);
    FILE *f = fopen(path, "wb");
    if (!f) pb_die(PB_EXIT_RUNTIME, "lra: cannot create %s: %s", path, strerror(errno));
    fputs("Source\tTarget\r\n", f);  // Python's csv writer ends its rows with \r\n
    return f;
}

static void close_tsv(FILE *f, const char *tmp) {
    char path[4096];
    snprintf(path, sizeof path, "%.*s", (int)(strlen(tmp) - 4), tmp);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        pb_die(PB_EXIT_RUNTIME, "lra: cannot write %s: %s", path, strerror(errno));
}

static int listops_cmd(const opts *o) {
    uint64_t want[3] = {o->train ? o->train : 96000, o->val ? o->val : 2000,
                        o->test ? o->test : 2000};
    static const char *split[3] = {"train", "val", "test"};
    uint64_t total = want[0] + want[1] + want[2];
    prepare_dir(o->out, o->force);
    lseq_info info = {0, LRA_LISTOPS_T, 1, 10, LRA_LO_VOCAB};
    lseq_writer *w[3];
    FILE *tsv[3];
    char tmp[3][4096];
    for (int s = 0; s < 3; s++) {
        w[s] = open_split(o->out, split[s], &info);
        tsv[s] = open_tsv(o->out, split[s], tmp[s], sizeof tmp[s]);
    }
    tree_set set = {0};
    set.mask = 1;
    while (set.mask + 1 < 2 * total) set.mask = 2 * set.mask + 1;
    set.slot = pb_calloc(set.mask + 1, sizeof *set.slot);
    set.off = pb_calloc(total, sizeof *set.off);
    set.len = pb_calloc(total, sizeof *set.len);
    pb_rng rng;
    pb_rng_seed(&rng, lra_mix_seed(o->seed, 0));
    uint8_t tok[LRA_LISTOPS_MAX_LEN];
    int32_t row[LRA_LISTOPS_T];
    char *str = pb_malloc(64 * LRA_LISTOPS_MAX_LEN);  // the source string: < 10 bytes a token
    uint64_t drawn = 0, dups = 0, labels[10] = {0};
    progress pg = {"listops trees", pb_now(), pb_now()};
    // Trees are drawn one after another and kept in that order: the first `train` distinct
    // ones are train, then val, then test (the original split its set's iteration order).
    while (set.count < total) {
        int value, n = lra_listops_tree(&rng, tok, LRA_LISTOPS_MAX_LEN - 1, &value);
        drawn++;
        if (n <= LRA_LISTOPS_MIN_LEN) continue;  // n < 0: grew past the longest kept
        if (!tree_set_add(&set, tok, n)) {
            dups++;
            continue;
        }
        uint64_t k = set.count - 1;
        int s = k < want[0] ? 0 : k < want[0] + want[1] ? 1 : 2;
        size_t len = lra_listops_format(tok, n, str);
        fwrite(str, 1, len, tsv[s]);
        fprintf(tsv[s], "\t%d\r\n", value);
        // [CLS] first, for a classifier that pools the first token (LRA's ListOps model does)
        row[0] = LRA_LO_CLS;
        for (int i = 0; i < n; i++) row[1 + i] = tok[i];
        append_row(w[s], row, n + 1, value);
        labels[value]++;
        progress_show(&pg, set.count, total, 0);
    }
    for (int s = 0; s < 3; s++) {
        if (ferror(tsv[s])) pb_die(PB_EXIT_RUNTIME, "lra: cannot write %s", tmp[s]);
        close_tsv(tsv[s], tmp[s]);
        finish_split(w[s]);
    }
    progress_show(&pg, set.count, total, 1);
    printf("lra: listops: %llu trees (train %llu, val %llu, test %llu) from %llu drawn (%.1f%% "
           "kept, %llu duplicates), %.0f tokens on average, into %s\n",
           (unsigned long long)total, (unsigned long long)want[0], (unsigned long long)want[1],
           (unsigned long long)want[2], (unsigned long long)drawn, 100.0 * total / drawn,
           (unsigned long long)dups, (double)set.used / total, o->out);
    printf("lra: listops: labels 0-9:");
    for (int v = 0; v < 10; v++) printf(" %llu", (unsigned long long)labels[v]);
    printf("\n");
    free(str);
    free(set.arena);
    free(set.off);
    free(set.len);
    free(set.slot);
    return 0;
}

// --- Pathfinder

static int pathfinder_cmd(const opts *o) {
    char err[1024];
    lra_pf_params p;
    if (!o->res) pb_die(PB_EXIT_USAGE, "lra: pathfinder needs --res 32|64|128|256");
    if (lra_pf_params_for(o->res, o->difficulty ? o->difficulty : "hard", &p, err, sizeof err))
        pb_die(PB_EXIT_USAGE, "lra: pathfinder: %s", err);
    p.single_paddles = o->fillers;
    uint64_t n = o->n ? o->n : 200000;
    if (n < 10) pb_die(PB_EXIT_USAGE, "lra: pathfinder: --n %llu: at least 10 images (val and "
                       "test get a tenth each)", (unsigned long long)n);
    uint64_t nval = n / 10, ntrain = n - 2 * nval;
    uint64_t bound[3] = {ntrain, ntrain + nval, n};
    int threads = o->threads ? o->threads : omp_get_num_procs();
    prepare_dir(o->out, o->force);
    char path[4096];
    if (o->png) {
        snprintf(path, sizeof path, "%s/png", o->out);
        if (pb_make_dirs(path, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
    }
    int T = p.res * p.res;
    lseq_info info = {0, T, 1, 2, 256};
    lseq_writer *w[3] = {open_split(o->out, "train", &info), open_split(o->out, "val", &info),
                         open_split(o->out, "test", &info)};
    lra_pf_gen **gens = pb_calloc((size_t)threads, sizeof *gens);
    for (int t = 0; t < threads; t++) gens[t] = lra_pf_gen_new(&p);
    // Images are drawn in batches, in parallel, then written in index order. An image's time
    // varies tenfold (its target contours may take thousands of attempts), so a batch is
    // large, about 64 MB of pixels, lest the threads wait on its slowest image.
    size_t batch = ((size_t)64 << 20) / (size_t)T;
    if (batch < (size_t)threads * 32) batch = (size_t)threads * 32;
    if (batch > 16384) batch = 16384;
    uint8_t *px = pb_malloc(batch * (size_t)T);
    int *labels = pb_calloc(batch, sizeof *labels);
    char (*errs)[256] = pb_calloc(batch, sizeof *errs);
    int32_t *row = pb_malloc((size_t)T * sizeof *row);
    char what[96];
    snprintf(what, sizeof what, "pathfinder-%d %s images", p.res, o->difficulty ? o->difficulty : "hard");
    progress pg = {what, pb_now(), pb_now()};
    uint64_t ones = 0;
    for (uint64_t start = 0; start < n; start += batch) {
        int cnt = (int)(n - start < batch ? n - start : batch);
        uint64_t drawn = 0;  // in this batch; thread 0 reports progress as it goes
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int i = 0; i < cnt; i++) {
            int t = omp_get_thread_num();
            labels[i] = lra_pf_image(gens[t], o->seed, start + (uint64_t)i, px + (size_t)i * T,
                                     errs[i], sizeof errs[i]);
            uint64_t now;
#pragma omp atomic capture
            now = ++drawn;
            if (t == 0) progress_show(&pg, start + now, n, 0);
        }
        for (int i = 0; i < cnt; i++) {
            uint64_t idx = start + (uint64_t)i;
            if (labels[i] < 0) pb_die(PB_EXIT_RUNTIME, "lra: pathfinder: %s", errs[i]);
            const uint8_t *img = px + (size_t)i * T;
            for (int k = 0; k < T; k++) row[k] = img[k];
            append_row(w[idx < bound[0] ? 0 : idx < bound[1] ? 1 : 2], row, T, labels[i]);
            ones += (uint64_t)labels[i];
            if (idx < o->png) {
                snprintf(path, sizeof path, "%s/png/%06llu_label%d.png", o->out,
                         (unsigned long long)idx, labels[i]);
                if (lra_png_write(path, img, p.res, p.res, err, sizeof err) != 0)
                    pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
            }
        }
    }
    for (int s = 0; s < 3; s++) finish_split(w[s]);
    progress_show(&pg, n, n, 1);
    double dt = pb_now() - pg.t0;
    printf("lra: pathfinder-%d (%s, contour length %d, %d distractors of %d): %llu images (train "
           "%llu, val %llu, test %llu; label 1: %.1f%%) into %s in %.1f s (%.1f images/s, %d "
           "threads)\n",
           p.res, o->difficulty ? o->difficulty : "hard", p.contour_length, p.num_distractors,
           p.distractor_length, (unsigned long long)n, (unsigned long long)ntrain,
           (unsigned long long)nval, (unsigned long long)nval, 100.0 * ones / n, o->out, dt,
           n / dt, threads);
    for (int t = 0; t < threads; t++) lra_pf_gen_free(gens[t]);
    free(gens);
    free(px);
    free(labels);
    free(errs);
    free(row);
    return 0;
}

// --- Text (IMDB) and Retrieval (AAN): the user's copy, tokenised

// A bad input after the splits were opened: their .tmp files go, then the one line.
static void abort_splits(lseq_writer **w, int n) {
    for (int s = 0; s < n; s++) lseq_abort(w[s]);
}

static int text_cmd(const opts *o) {
    static const char *split[2] = {"train", "test"}, *cls[2] = {"neg", "pos"};
    char dir[4096], path[8192], err[1024];
    struct stat st;
    if (stat(o->imdb, &st) != 0 || !S_ISDIR(st.st_mode))
        pb_die(PB_EXIT_DATA, "lra: text: --imdb %s is not a directory (want aclImdb: "
               "train/{pos,neg}/*.txt, test/{pos,neg}/*.txt)", o->imdb);
    // All four listings first: a missing or empty one is refused before anything is written.
    char **names[2][2];
    size_t count[2][2];
    uint64_t total = 0;
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 2; c++) {
            snprintf(dir, sizeof dir, "%s/%s/%s", o->imdb, split[s], cls[c]);
            if (lra_imdb_list(dir, &names[s][c], &count[s][c], err, sizeof err) != 0)
                pb_die(PB_EXIT_DATA, "lra: text: %s", err);
            total += count[s][c];
        }
    prepare_dir(o->out, o->force);
    lseq_info info = {0, LRA_TEXT_T, 2, 2, LRA_TX_VOCAB};
    // LRA has no validation set for IMDB and evaluates on the test set: val.lseq is test's copy.
    lseq_writer *w[3] = {open_split(o->out, "train", &info), open_split(o->out, "test", &info),
                         open_split(o->out, "val", &info)};
    int32_t row[LRA_TEXT_T];
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t done = 0, cut = 0, bytes = 0;
    progress pg = {"text reviews", pb_now(), pb_now()};
    // Each split: neg (label 0) then pos (label 1), each in strcmp order of the file names.
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 2; c++)
            for (size_t i = 0; i < count[s][c]; i++) {
                size_t off, len;
                snprintf(path, sizeof path, "%s/%s/%s/%s", o->imdb, split[s], cls[c],
                         names[s][c][i]);
                if (lra_imdb_review(path, &buf, &cap, &off, &len, err, sizeof err) != 0) {
                    abort_splits(w, 3);
                    pb_die(PB_EXIT_DATA, "lra: text: %s", err);
                }
                int n = lra_bytes_row(buf + off, len, row, LRA_TEXT_T);
                cut += len > LRA_TEXT_T - 1;
                bytes += len;
                for (int k = s; k < (s ? 3 : 1); k++) append_row(w[k], row, n, c);
                progress_show(&pg, ++done, total, 0);
            }
    for (int s = 0; s < 3; s++) finish_split(w[s]);
    progress_show(&pg, done, total, 1);
    printf("lra: text: %llu reviews: train %zu (neg %zu, pos %zu), test %zu (neg %zu, pos %zu; "
           "val.lseq = test), %.0f bytes on average, %llu (%.1f%%) cut to %d bytes; into %s\n",
           (unsigned long long)total, count[0][0] + count[0][1], count[0][0], count[0][1],
           count[1][0] + count[1][1], count[1][0], count[1][1], (double)bytes / total,
           (unsigned long long)cut, 100.0 * cut / total, LRA_TEXT_T - 1, o->out);
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 2; c++) {
            for (size_t i = 0; i < count[s][c]; i++) free(names[s][c][i]);
            free(names[s][c]);
        }
    free(buf);
    return 0;
}

// --aan: a directory holding new_aan_pairs.{train,eval,test}.tsv, or the prefix before
// .{train,eval,test}.tsv (LRA's DATASET_PATHS), or one of the three files.
static void aan_paths(const char *arg, char path[3][4096]) {
    static const char *split[3] = {"train", "eval", "test"};
    char prefix[4096];
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(prefix, sizeof prefix, "%s/new_aan_pairs", arg);
    } else {
        snprintf(prefix, sizeof prefix, "%s", arg);
        size_t n = strlen(prefix);
        for (int s = 0; s < 3; s++) {
            char tail[16];
            size_t k = (size_t)snprintf(tail, sizeof tail, ".%s.tsv", split[s]);
            if (n > k && strcmp(prefix + n - k, tail) == 0) prefix[n - k] = 0;
        }
    }
    for (int s = 0; s < 3; s++) {
        snprintf(path[s], sizeof path[s], "%s.%s.tsv", prefix, split[s]);
        int missing = stat(path[s], &st) != 0;
        if (missing || !S_ISREG(st.st_mode))
            pb_die(PB_EXIT_DATA, "lra: retrieval: %s: %s (--aan wants the directory holding "
                   "new_aan_pairs.{train,eval,test}.tsv, or their prefix)", path[s],
                   missing ? strerror(errno) : "not a regular file");
    }
}

static int retrieval_cmd(const opts *o) {
    static const char *split[3] = {"train", "val", "test"};
    char path[3][4096], err[1024];
    aan_paths(o->aan, path);
    prepare_dir(o->out, o->force);
    lseq_info info = {0, 2 * LRA_TEXT_T, 2, 2, LRA_TX_VOCAB};
    lseq_writer *w[3];
    for (int s = 0; s < 3; s++) w[s] = open_split(o->out, split[s], &info);
    int32_t *row = pb_malloc(2 * LRA_TEXT_T * sizeof *row);
    uint64_t total_bytes = 0, done_bytes = 0, rows[3] = {0}, ones[3] = {0}, cut = 0;
    struct stat st;
    for (int s = 0; s < 3; s++)
        if (stat(path[s], &st) == 0) total_bytes += (uint64_t)st.st_size;
    progress pg = {"retrieval, bytes of the TSV files", pb_now(), pb_now()};
    char *line = NULL;
    size_t lcap = 0;
    for (int s = 0; s < 3; s++) {
        FILE *f = fopen(path[s], "rb");
        if (!f) {
            abort_splits(w, 3);
            pb_die(PB_EXIT_DATA, "lra: retrieval: %s: %s", path[s], strerror(errno));
        }
        ssize_t len;
        uint64_t lineno = 0;
        while ((len = getline(&line, &lcap, f)) > 0) {
            lra_aan_pair p;
            lineno++;
            done_bytes += (uint64_t)len;
            if (lra_aan_parse(line, (size_t)len, &p, err, sizeof err) != 0) {
                abort_splits(w, 3);
                pb_die(PB_EXIT_DATA, "lra: retrieval: %s:%llu: %s", path[s],
                       (unsigned long long)lineno, err);
            }
            append_row(w[s], row, lra_aan_row(&p, row), p.label);
            cut += (p.len[0] > LRA_TEXT_T - 1) + (p.len[1] > LRA_TEXT_T - 1);
            rows[s]++;
            ones[s] += (uint64_t)p.label;
            progress_show(&pg, done_bytes, total_bytes, 0);
        }
        int bad = ferror(f);
        fclose(f);
        if (bad || rows[s] == 0) {
            abort_splits(w, 3);
            pb_die(PB_EXIT_DATA, "lra: retrieval: %s: %s", path[s],
                   bad ? "read error" : "no pairs in it");
        }
    }
    for (int s = 0; s < 3; s++) finish_split(w[s]);
    progress_show(&pg, done_bytes, total_bytes, 1);
    uint64_t n = rows[0] + rows[1] + rows[2];
    printf("lra: retrieval: %llu pairs: train %llu, val %llu (from eval), test %llu; label 1 "
           "(citing): %.1f%% / %.1f%% / %.1f%%; %llu of %llu documents cut to %d bytes; into %s\n",
           (unsigned long long)n, (unsigned long long)rows[0], (unsigned long long)rows[1],
           (unsigned long long)rows[2], 100.0 * ones[0] / rows[0], 100.0 * ones[1] / rows[1],
           100.0 * ones[2] / rows[2], (unsigned long long)cut, (unsigned long long)(2 * n),
           LRA_TEXT_T - 1, o->out);
    free(line);
    free(row);
    return 0;
}

int lra_main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? PB_EXIT_USAGE : 0;
    }
    opts o = {0};
    o.seed = 1;
    if (!strcmp(argv[1], "sheet")) {
        parse(argc, argv, 2, &o);
        if (!o.out) pb_die(PB_EXIT_USAGE, "lra: sheet needs --out FILE.png");
        // the sheet draws its own 16 images of each resolution: a gen option would be ignored
        if (o.seen_pf || o.seen_counts || o.threads || o.force || o.imdb || o.aan)
            pb_die(PB_EXIT_USAGE, "lra: sheet takes only --out and --seed");
        char err[1024];
        if (lra_pf_sheet(o.out, o.seed, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "lra: %s", err);
        printf("lra: contact sheet %s\n", o.out);
        return 0;
    }
    if (strcmp(argv[1], "gen") != 0)
        pb_die(PB_EXIT_USAGE, "lra: unknown command '%s' (see pebble lra --help)", argv[1]);
    if (argc < 3 || argv[2][0] == '-')
        pb_die(PB_EXIT_USAGE, "lra: gen needs a task: listops, pathfinder, text or retrieval "
               "(see pebble lra --help)");
    const char *task = argv[2];
    parse(argc, argv, 3, &o);
    int listops = !strcmp(task, "listops"), pf = !strcmp(task, "pathfinder");
    int text = !strcmp(task, "text"), retrieval = !strcmp(task, "retrieval");
    if (!listops && !pf && !text && !retrieval)
        pb_die(PB_EXIT_USAGE, "lra: unknown task '%s' (listops, pathfinder, text or retrieval)",
               task);
    if (!o.out) pb_die(PB_EXIT_USAGE, "lra: gen %s needs --out DIR", task);
    if (!pf && o.seen_pf)
        pb_die(PB_EXIT_USAGE, "lra: --res, --n, --difficulty, --png and --fillers are pathfinder's "
               "options");
    if (!listops && o.seen_counts)
        pb_die(PB_EXIT_USAGE, "lra: --train, --val and --test are listops' options%s",
               pf ? " (pathfinder: --n)" : "");
    if (!pf && o.threads)  // the others are drawn or read in one thread, in order
        pb_die(PB_EXIT_USAGE, "lra: --threads is pathfinder's option (%s runs in one thread)",
               task);
    if (!text && o.imdb) pb_die(PB_EXIT_USAGE, "lra: --imdb is text's option");
    if (!retrieval && o.aan) pb_die(PB_EXIT_USAGE, "lra: --aan is retrieval's option");
    if (text && !o.imdb)
        pb_die(PB_EXIT_USAGE, "lra: gen text needs --imdb DIR (the aclImdb directory)");
    if (retrieval && !o.aan)
        pb_die(PB_EXIT_USAGE, "lra: gen retrieval needs --aan DIR (holding "
               "new_aan_pairs.*.tsv) or PREFIX");
    return listops ? listops_cmd(&o)
           : pf    ? pathfinder_cmd(&o)
           : text  ? text_cmd(&o)
                   : retrieval_cmd(&o);
}
