// iomodel.c: `pebble iomodel`, attention's slow-memory traffic against the proven bounds
// (kernels/attention/iomodel.h): a table, JSON rows, and gnuplot PNGs.
#include "train/iomodel.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/attention/iomodel.h"
#include "kernels/common.h"

#define MAXL 64

static const char *USAGE =
    "usage: pebble iomodel [--algo naive,flash,blocksparse,smallcache] [--N 4096,...]\n"
    "         [--d 64,128,256,512] [--M LIST | 2^8..2^20] [--pass fwd|bwd|both] [--lru]\n"
    "         [--json] [--out DIR] [--sparsity P] [--block B] [--window W] [--global G]\n"
    "         [--random R] [--seed S]\n"
    "  Words moved between slow memory and a fast memory of M words (one head), against the\n"
    "  bound min(N^2 d^2/M, N^2 d/sqrt M) (backward: Li et al.'s). --lru adds LRU with 2M words\n"
    "  on the same trace (word by word: small N). --out DIR: PNGs (gnuplot) and their data.\n";

static int bad(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "pebble: iomodel: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return PB_EXIT_USAGE;
}

// "a,b,c" of positive integers, or "2^a..2^b" (powers of two); returns the count or -1.
static int parse_list(const char *s, long long *out) {
    int lo, hi, n = 0;
    char tail;
    if (sscanf(s, "2^%d..2^%d%c", &lo, &hi, &tail) == 2) {
        if (lo < 0 || hi > 40 || lo > hi || hi - lo >= MAXL) return -1;
        for (int e = lo; e <= hi; e++) out[n++] = 1LL << e;
        return n;
    }
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 1 || n == MAXL) return -1;
        if (*end == '^') {  // 2^k inside a list
            const char *k = end + 1;
            long e = strtol(k, &end, 10);
            if (v != 2 || end == k || e < 0 || e > 40) return -1;
            v = 1LL << e;
        }
        if (v > 1LL << 40) return -1;  // the range's limit: 2M and the counts stay in range
        out[n++] = v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

typedef struct {
    io_algo a;
    io_pass p;
    long long N, M;
    int d, ok;
    double words, bound, lru;
    io_tiles t;
    double density;
} row;

// One measurement; ok = 0 (with why printed) when M is too small.
static row measure(io_algo a, io_pass p, long long N, int d, long long M, const bs_params *bp,
                   int lru, char *why, size_t whylen) {
    row r = {a, p, N, M, d, 0, 0, io_bound(p, (double)N, d, (double)M), -1, {0}, 1.0};
    pb_block_layout *l = NULL;
    if (a == IO_BLOCKSPARSE) {
        char err[256];
        l = attn_bs_build(bp, (int)N, 1, 0, NULL, 1, err, sizeof err);
        if (!l) pb_die(PB_EXIT_USAGE, "iomodel: %s", err);
        r.density = attn_bs_density(l);
    }
    if (io_tiles_for(a, p, N, d, M, l, &r.t, why, whylen) == 0) {
        io_mem m = {.M = M};
        io_run(&m, a, p, N, d, &r.t, l);
        r.words = (double)(m.loads + m.stores);
        r.ok = 1;
        if (lru) {
            // a cache of more words than the trace has addresses (the 12 regions of
            // iomodel.c's slow memory) never evicts, as one of exactly that many: no larger
            // allocation than that
            long long cap = 2 * M, all = N * (8LL * d + 2 * N + 2);
            if (cap > all) cap = all;
            io_mem c = {.M = cap};
            io_lru_init(&c, cap);
            io_run(&c, a, p, N, d, &r.t, l);
            io_lru_finish(&c);
            r.lru = (double)(c.loads + c.stores);
        }
    }
    attn_bs_free(l);
    return r;
}

static void print_row(const row *r, int json, int lru) {
    const char *pass = r->p == IO_FWD ? "fwd" : "bwd";
    if (json) {
        printf("{\"algo\": \"%s\", \"pass\": \"%s\", \"N\": %lld, \"d\": %d, \"M\": %lld, "
               "\"words\": %.0f, \"bound\": %.6g, \"ratio\": %.6g, \"br\": %d, \"bc\": %d, "
               "\"b\": %d", io_algo_name(r->a), pass, r->N, r->d, r->M, r->words, r->bound,
               r->words / r->bound, r->t.br, r->t.bc, r->t.b);
        if (r->a == IO_BLOCKSPARSE) printf(", \"density\": %.4f", r->density);
        if (lru) printf(", \"lru_2M\": %.0f", r->lru);
        printf("}\n");
        return;
    }
    printf("%-11s %-4s %6lld %5d %9lld %14.4e %12.4e %8.3f", io_algo_name(r->a), pass, r->N,
           r->d, r->M, r->words, r->bound, r->words / r->bound);
    if (lru) printf(" %14.4e", r->lru);
    printf("\n");
}

// ----------------------------------------------------------------------------
// plots

static FILE *open_in(const char *dir, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) pb_die(PB_EXIT_RUNTIME, "iomodel: cannot write %s: %s", path, strerror(errno));
    return f;
}

// gnuplot's messages go to stderr: stdout holds the table or the JSON rows
static int gnuplot(const char *dir, const char *script) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot %s >&2", dir, script);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "pebble: iomodel: gnuplot failed on %s/%s\n", dir, script);
    return rc;
}

// Writes DIR/iomodel_*.dat and the PNGs: words vs M per d (with the bound and M = d^2),
// measured/bound vs M/d^2, an N sweep, block-sparse traffic vs density.
static int plots(const char *dir, const row *rows, int nrows, const long long *ds, int nd,
                 const bs_params *bp, io_pass pass) {
    mkdir(dir, 0777);
    const char *pn = pass == IO_FWD ? "fwd" : "bwd";
    FILE *f = open_in(dir, "iomodel_rows.dat");
    fprintf(f, "# algo pass N d M words bound M/d^2 ratio\n");
    for (int i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        if (!r->ok || r->p != pass) continue;
        fprintf(f, "%s %s %lld %d %lld %.6e %.6e %.6e %.6e\n", io_algo_name(r->a),
                r->p == IO_FWD ? "fwd" : "bwd", r->N, r->d, r->M, r->words, r->bound,
                (double)r->M / ((double)r->d * r->d), r->words / r->bound);
    }
    fclose(f);

    // the N sweep (N = 512..8192) at d = the first d, M = 2^14; block-sparse vs density
    int d0 = (int)ds[0];
    char why[256];
    f = open_in(dir, "iomodel_nsweep.dat");
    fprintf(f, "# N flash smallcache naive (words, d=%d, M=16384, %s)\n", d0, pn);
    double flash512 = NAN;  // the N^2 line goes through flash's first point
    for (long long N = 512; N <= 8192; N *= 2) {
        fprintf(f, "%lld", N);
        io_algo as[3] = {IO_FLASH, IO_SMALLCACHE, IO_NAIVE};
        for (int k = 0; k < 3; k++) {
            row r = measure(as[k], pass, N, d0, 16384, bp, 0, why, sizeof why);
            fprintf(f, " %.6e", r.ok ? r.words : NAN);
            if (N == 512 && k == 0) flash512 = r.ok ? r.words : NAN;
        }
        fprintf(f, "\n");
    }
    fclose(f);
    f = open_in(dir, "iomodel_density.dat");
    fprintf(f, "# density words (blocksparse %s, N=4096, d=%d, M=65536, block %d) flash\n", pn,
            d0, bp->block);
    row fl = measure(IO_FLASH, pass, 4096, d0, 65536, bp, 0, why, sizeof why);
    for (int rnd = 0; rnd <= 64; rnd = rnd ? 2 * rnd : 1) {
        bs_params q = *bp;
        q.pattern = BS_LOCAL_GLOBAL_RANDOM;
        q.random = rnd;
        row r = measure(IO_BLOCKSPARSE, pass, 4096, d0, 65536, &q, 0, why, sizeof why);
        if (r.ok) fprintf(f, "%.5f %.6e %.6e\n", r.density, r.words, fl.ok ? fl.words : NAN);
    }
    fclose(f);

    f = open_in(dir, "iomodel.gp");
    fprintf(f, "set terminal pngcairo size 1000,700 noenhanced\nset logscale xy 2\nset grid\n"
               "set key outside right\nset format x '2^%%L'\nset format y '2^%%L'\nset datafile missing 'nan'\n");
    fprintf(f, "set output 'iomodel_words_%s.png'\nset title 'attention %s: words moved vs "
               "fast memory M (dashed: the bound min(N^2d^2/M, N^2d/sqrt M), arrows: M = d^2)'\n"
               "set xlabel 'M (words)'\nset ylabel 'slow-memory words (one head)'\n", pn, pn);
    for (int i = 0; i < nd; i++)
        fprintf(f, "set arrow from %lld, graph 0 to %lld, graph 1 nohead dt 3 lc %d\n",
                ds[i] * ds[i], ds[i] * ds[i], i + 1);
    fprintf(f, "plot ");
    static const char *algos[4] = {"naive", "flash", "blocksparse", "smallcache"};
    static const int pts[4] = {1, 7, 9, 5};
    int first = 1;
    for (int i = 0; i < nd; i++) {
        for (int k = 0; k < 4; k++)
            fprintf(f, "%s'iomodel_rows.dat' u ($4==%lld && strcol(1) eq '%s' ? $5 : 1/0):6 w lp "
                       "lc %d pt %d t '%s d=%lld'", first ? "" : ", ", ds[i], algos[k], i + 1,
                    pts[k], algos[k], ds[i]), first = 0;
        fprintf(f, ", 'iomodel_rows.dat' u ($4==%lld && strcol(1) eq 'flash' ? $5 : 1/0):7 w l "
                   "dt 2 lc %d t 'bound d=%lld'", ds[i], i + 1, ds[i]);
    }
    fprintf(f, "\nunset arrow\nset output 'iomodel_ratio_%s.png'\nset title 'measured / bound "
               "against M/d^2: one curve per algorithm for every d; they cross near M = d^2'\n"
               "set xlabel 'M / d^2'\nset ylabel 'words / bound'\nset format x '%%g'\n"
               "set arrow from 1, graph 0 to 1, graph 1 nohead dt 3\nplot ", pn);
    first = 1;
    for (int i = 0; i < nd; i++)
        for (int k = 0; k < 4; k++)
            fprintf(f, "%s'iomodel_rows.dat' u ($4==%lld && strcol(1) eq '%s' ? $8 : 1/0):9 w lp "
                       "lc %d pt %d t '%s d=%lld'", first ? "" : ", ", ds[i], algos[k], i + 1,
                    pts[k], algos[k], ds[i]), first = 0;
    fprintf(f, "\nunset arrow\nset output 'iomodel_nsweep_%s.png'\nset title 'N sweep at d=%d, "
               "M=16384: every algorithm grows as N^2 (dashed)'\nset xlabel 'N'\nset ylabel "
               "'words'\nplot 'iomodel_nsweep.dat' u 1:2 w lp t 'flash', '' u 1:3 w lp t "
               "'smallcache', '' u 1:4 w lp t 'naive', '' u 1:(%g*($1/512.)**2) "
               "w l dt 2 t 'N^2 through flash at 512'\n", pn, d0, flash512);
    fprintf(f, "set output 'iomodel_density_%s.png'\nunset logscale\nset format x '%%g'\nset format y '%%.2e'\nset title 'block-sparse "
               "(local+global+random, block %d) at N=4096, d=%d, M=65536: words vs block "
               "density'\nset xlabel 'density s'\nset ylabel 'words'\nset xrange [0:1]\nset "
               "yrange [0:*]\nplot 'iomodel_density.dat' u 1:2 w lp t 'blocksparse', '' u 1:3 w "
               "l dt 2 t 'flash (dense)'\n", pn, bp->block, d0);
    fclose(f);
    return gnuplot(dir, "iomodel.gp");
}

int iomodel_main(int argc, char **argv) {
    long long Ns[MAXL] = {4096}, ds[MAXL] = {64, 128, 256, 512}, Ms[MAXL];
    int nN = 1, nd = 4, nM = 0, json = 0, lru = 0;
    for (int e = 8; e <= 20; e++) Ms[nM++] = 1LL << e;
    io_algo algos[4] = {IO_NAIVE, IO_FLASH, IO_SMALLCACHE};
    int na = 3;
    const char *out = NULL, *pass = "fwd";
    bs_params bp = {BS_LOCAL_GLOBAL_RANDOM, 64, 1, 1, 1, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return fputs(USAGE, stdout), 0;
        if (strcmp(a, "--json") == 0) { json = 1; continue; }
        if (strcmp(a, "--lru") == 0) { lru = 1; continue; }
        if (i + 1 >= argc) return bad("%s needs a value%s", a, "");
        const char *v = argv[++i];
        long long tmp[MAXL];
        int n;
        if (strcmp(a, "--algo") == 0) {
            na = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (na == 4 || io_algo_parse(t, &algos[na]) != 0)
                    return bad("--algo %s: unknown algorithm '%s' (naive, flash, blocksparse, "
                               "smallcache)", v, t);
                na++;
            }
            if (!na) return bad("--algo %s: no algorithm%s", v, "");
        } else if (strcmp(a, "--N") == 0 || strcmp(a, "--d") == 0 || strcmp(a, "--M") == 0) {
            if ((n = parse_list(v, tmp)) <= 0)
                return bad("%s %s: expected positive integers a,b,c or a range 2^a..2^b", a, v);
            long long *dst = a[2] == 'N' ? Ns : a[2] == 'd' ? ds : Ms;
            memcpy(dst, tmp, (size_t)n * sizeof(long long));
            *(a[2] == 'N' ? &nN : a[2] == 'd' ? &nd : &nM) = n;
        } else if (strcmp(a, "--pass") == 0) {
            if (strcmp(v, "fwd") && strcmp(v, "bwd") && strcmp(v, "both"))
                return bad("--pass %s: expected fwd, bwd or both%s", v, "");
            pass = v;
        } else if (strcmp(a, "--out") == 0) {
            out = v;
        } else if (strcmp(a, "--sparsity") == 0) {
            if (attn_bs_pattern_parse(v, &bp.pattern) != 0)
                return bad("--sparsity %s: expected dense, local+global+random or butterfly%s",
                           v, "");
        } else if (!strcmp(a, "--block") || !strcmp(a, "--window") || !strcmp(a, "--global") ||
                   !strcmp(a, "--random") || !strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            long x = strtol(v, &end, 10);
            int is_seed = !strcmp(a, "--seed");
            if (*end || end == v || errno || x < 0 || (x < 1 && !strcmp(a, "--block")) ||
                (!is_seed && x > INT_MAX))
                return bad(is_seed ? "%s %s: expected a non-negative integer"
                                   : "%s %s: expected a whole number from 0 (--block: 1) to "
                                     "2147483647", a, v);
            int *f = !strcmp(a, "--block") ? &bp.block : !strcmp(a, "--window") ? &bp.window
                   : !strcmp(a, "--global") ? &bp.global : !strcmp(a, "--random") ? &bp.random
                   : NULL;
            if (f) *f = (int)x;
            else bp.seed = (uint64_t)x;
        } else {
            return bad("unknown option %s%s (pebble iomodel --help)", a, "");
        }
    }
    for (int i = 0; i < nd; i++)
        if (ds[i] > 1 << 16) return bad("--d: head dim %s above 65536%s", "", "");
    for (int i = 0; i < nN; i++)
        if (Ns[i] > 1 << 20) return bad("--N: N above 2^20%s%s", "", "");
    if (lru)
        for (int i = 0; i < nN; i++)
            if (Ns[i] > 2048)
                return bad("--lru replays the trace word by word: use --N <= 2048%s%s", "", "");
    // before the sweep, which takes minutes at the default lists
    if (out && system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "pebble: iomodel: --out %s: the PNGs need gnuplot, which is not on PATH "
                "(make deps)\n", out);
        return PB_EXIT_RUNTIME;
    }
    io_pass passes[2] = {IO_FWD, IO_BWD};
    int p0 = strcmp(pass, "bwd") == 0, p1 = strcmp(pass, "fwd") == 0 ? 0 : 1;
    int cap = na * nN * nd * nM * 2;
    row *rows = pb_calloc((size_t)cap, sizeof(row));
    int nrows = 0;
    if (!json) {
        printf("%-11s %-4s %6s %5s %9s %14s %12s %8s%s\n", "algo", "pass", "N", "d", "M",
               "words", "bound", "ratio", lru ? "     lru(2M)" : "");
    }
    char why[256];
    for (int pi = p0; pi <= p1; pi++)
        for (int ai = 0; ai < na; ai++)
            for (int ni = 0; ni < nN; ni++)
                for (int di = 0; di < nd; di++)
                    for (int mi = 0; mi < nM; mi++) {
                        row r = measure(algos[ai], passes[pi], Ns[ni], (int)ds[di], Ms[mi], &bp,
                                        lru, why, sizeof why);
                        if (!r.ok) {
                            if (!json) printf("%s\n", why);
                            continue;
                        }
                        rows[nrows++] = r;
                        print_row(&r, json, lru);
                    }
    int rc = 0;
    if (out)
        for (int pi = p0; pi <= p1 && !rc; pi++)
            rc = plots(out, rows, nrows, ds, nd, &bp, passes[pi]) ? PB_EXIT_RUNTIME : 0;
    free(rows);
    return rc;
}
