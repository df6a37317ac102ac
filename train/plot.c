// plot.c: train and validation loss curves, drawn by gnuplot from metrics.jsonl.
#include "train/plot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

// Finds "key": <number> in one JSON line written by progress.c.
static int json_number(const char *line, const char *key, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    char *end;
    *out = strtod(p + strlen(pat), &end);
    return end != p + strlen(pat);
}

int plot_run(const char *run_dir, char *err, size_t errlen) {
    char path[1024], train_dat[1100], val_dat[1100], png[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    snprintf(train_dat, sizeof train_dat, "%s/.plot_train.dat", run_dir);
    snprintf(val_dat, sizeof val_dat, "%s/.plot_val.dat", run_dir);
    snprintf(png, sizeof png, "%s/loss.png", run_dir);
    FILE *in = fopen(path, "r");
    if (!in) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    FILE *ft = fopen(train_dat, "w"), *fv = fopen(val_dat, "w");
    if (!ft || !fv) {
        snprintf(err, errlen, "%s: cannot write plot data: %s", run_dir, strerror(errno));
        fclose(in);
        if (ft) fclose(ft);
        if (fv) fclose(fv);
        return -1;
    }
    char line[1024];
    int ntrain = 0, nval = 0;
    while (fgets(line, sizeof line, in)) {
        double step, v;
        if (!json_number(line, "step", &step)) continue;
        if (json_number(line, "val_loss", &v)) fprintf(fv, "%g %g\n", step, v), nval++;
        else if (json_number(line, "loss", &v)) fprintf(ft, "%g %g\n", step, v), ntrain++;
    }
    fclose(in);
    fclose(ft);
    fclose(fv);
    if (ntrain == 0) {
        snprintf(err, errlen, "%s: no training steps to plot", path);
        return -1;
    }
    FILE *gp = popen("gnuplot 2>&1", "w");
    if (!gp) {
        snprintf(err, errlen, "cannot run gnuplot: %s", strerror(errno));
        return -1;
    }
    fprintf(gp,
            "set terminal pngcairo size 900,540\n"
            "set output '%s'\n"
            "set title 'pebble: %s'\n"
            "set xlabel 'step'\nset ylabel 'loss'\nset grid\nset key top right\n"
            "plot '%s' using 1:2 with lines lw 1 lc rgb '#3060c0' title 'train'%s",
            png, run_dir, train_dat, nval ? "" : "\n");
    if (nval)
        fprintf(gp, ", '%s' using 1:2 with linespoints lw 2 pt 7 lc rgb '#d04020' title 'val'\n",
                val_dat);
    int status = pclose(gp);
    remove(train_dat);
    remove(val_dat);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "gnuplot failed drawing %s (is gnuplot installed? make deps)", png);
        return -1;
    }
    return 0;
}
