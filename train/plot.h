// plot.h: a PNG of train and validation loss from a run's metrics.jsonl (gnuplot).
#ifndef PEBBLE_PLOT_H
#define PEBBLE_PLOT_H

#include <stddef.h>

// Reads <run_dir>/metrics.jsonl, writes <run_dir>/loss.png. Returns 0, or -1 with err set.
int plot_run(const char *run_dir, char *err, size_t errlen);

#endif
