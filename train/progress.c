// progress.c: the progress bar, plain log lines and metrics.jsonl (see progress.h).
#include "train/progress.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int progress_open(pb_progress *p, const char *run_dir, int total_steps, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->total_steps = total_steps;
    p->tty = isatty(STDOUT_FILENO);
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    p->metrics = fopen(path, "w");
    if (!p->metrics) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int progress_resume(pb_progress *p, const char *run_dir, int total_steps, int step, char *err,
                    size_t errlen) {
    memset(p, 0, sizeof *p);
    p->total_steps = total_steps;
    p->tty = isatty(STDOUT_FILENO);
    char path[1024], tmp[1040];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    // Steps logged after the checkpoint was written are done again: drop their lines so
    // the log has each step once. Rewritten beside it and renamed, so it is never lost.
    FILE *in = fopen(path, "r");
    if (in) {
        FILE *out = fopen(tmp, "w");
        if (!out) {
            snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
            fclose(in);
            return -1;
        }
        char *line = NULL;
        size_t cap = 0;
        int bad = 0;
        while (getline(&line, &cap, in) > 0) {
            const char *s = strstr(line, "\"step\": ");
            if (s && atoi(s + 8) > step) continue;
            if (fputs(line, out) < 0) bad = 1;
        }
        free(line);
        if (ferror(in)) bad = 1;
        fclose(in);
        if (fclose(out) != 0) bad = 1;
        if (bad || rename(tmp, path) != 0) {
            snprintf(err, errlen, "%s: cannot rewrite: %s", path, strerror(errno));
            unlink(tmp);
            return -1;
        }
    }
    p->metrics = fopen(path, "a");
    if (!p->metrics) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void format_duration(char *buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

void progress_step(pb_progress *p, const pb_step_stats *s) {
    fprintf(p->metrics,
            "{\"step\": %d, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"ms\": %.3f, "
            "\"tokens_per_s\": %.1f, \"tokens\": %lld}\n",
            s->step, s->loss, s->lr, s->grad_norm, s->ms, s->tokens_per_s, s->tokens);
    fflush(p->metrics);

    if (s->step > 1) {  // the first step pays for allocation and page faults
        p->ms_count++;
        p->ms_avg += (s->ms - p->ms_avg) / p->ms_count;
    }
    double ms = p->ms_count ? p->ms_avg : s->ms;
    char eta[32];
    format_duration(eta, sizeof eta, ms * (p->total_steps - s->step) / 1000.0);
    if (p->tty) {
        int width = 24, filled = (int)((long)width * s->step / p->total_steps);
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        printf("\r\033[K[%s] %d/%d loss %.4f lr %.2e norm %.3f %.0f tok/s %.0f ms/step ETA %s",
               bar, s->step, p->total_steps, s->loss, s->lr, s->grad_norm, s->tokens_per_s,
               s->ms, eta);
        if (s->step == p->total_steps) putchar('\n');
    } else {
        printf("step %*d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | %.1f ms/step | ETA %s\n",
               (int)snprintf(NULL, 0, "%d", p->total_steps), s->step, p->total_steps, s->loss,
               s->lr, s->grad_norm, s->tokens_per_s, s->ms, eta);
    }
    fflush(stdout);
}

// One evaluation's line in metrics.jsonl and on stdout: what = "val" or "test".
static void progress_eval(pb_progress *p, const char *what, int step, double loss, double acc) {
    fprintf(p->metrics, "{\"step\": %d, \"%s_loss\": %.6f", step, what, loss);
    if (acc >= 0) fprintf(p->metrics, ", \"%s_acc\": %.6f", what, acc);
    fprintf(p->metrics, "}\n");
    fflush(p->metrics);
    // On a terminal the bar is redrawn below this permanent line.
    printf("%sstep %d: %s loss %.4f", p->tty ? "\r\033[K" : "", step, what, loss);
    if (acc >= 0) printf(" accuracy %.4f", acc);
}

void progress_val(pb_progress *p, int step, double val_loss, double acc) {
    progress_eval(p, "val", step, val_loss, acc);
    printf("\n");
    fflush(stdout);
}

void progress_test(pb_progress *p, int step, double loss, double acc, int batches) {
    progress_eval(p, "test", step, loss, acc);
    printf(" (the test data: %d batches)\n", batches);
    fflush(stdout);
}

void progress_close(pb_progress *p) {
    if (p->metrics) fclose(p->metrics);
    p->metrics = NULL;
}
