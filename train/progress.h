// progress.h: what a training run reports each step: a progress bar with ETA on a terminal,
// plain lines otherwise, and one JSON object per line in <run_dir>/metrics.jsonl.
#ifndef PEBBLE_PROGRESS_H
#define PEBBLE_PROGRESS_H

#include <stdio.h>

typedef struct pb_progress {
    int total_steps;
    int tty;          // stdout is a terminal: redraw one bar line
    FILE *metrics;    // metrics.jsonl
    double ms_avg;    // running mean of ms/step, for the ETA (skips the first, warm-up step)
    int ms_count;
} pb_progress;

typedef struct pb_step_stats {
    int step;           // 1-based
    double loss, lr, grad_norm, ms, tokens_per_s;
    long long tokens;   // tokens seen so far
} pb_step_stats;

// Opens <run_dir>/metrics.jsonl for writing; returns -1 with err set on failure.
int progress_open(pb_progress *p, const char *run_dir, int total_steps, char *err, size_t errlen);
// For a run resumed after `step`: keeps the lines of metrics.jsonl up to that step, drops
// later ones (they are computed again), and appends from there.
int progress_resume(pb_progress *p, const char *run_dir, int total_steps, int step, char *err,
                    size_t errlen);
void progress_step(pb_progress *p, const pb_step_stats *s);
// acc: the validation accuracy, or < 0 when the task has none
void progress_val(pb_progress *p, int step, double val_loss, double acc);
// The same for the test data after the run: "test_loss" (and "test_acc") in metrics.jsonl.
void progress_test(pb_progress *p, int step, double loss, double acc, int batches);
void progress_close(pb_progress *p);

#endif
