// stop.c: a run's stop (see stop.h): the signal handlers, the ranks' agreement on the reason,
// train.time_limit, the closing line, and the test hooks that send the signals.
#include "train/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "train/dist.h"

static volatile sig_atomic_t stop_signal;

// ----------------------------------------------------------------------------
// signals

// SIGINT/SIGTERM ask the loop to stop at the next micro-batch or validation batch, write the
// checkpoint of the last finished step and exit 0. A second signal ends the process at once.
static void on_stop_signal(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

void stop_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // IO in progress completes; the loop polls the flag
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

const volatile sig_atomic_t *stop_flag(void) { return &stop_signal; }

int stop_requested(void) { return stop_signal != 0; }

// ----------------------------------------------------------------------------
// the reason, as the ranks agree on it

// Each rank asks at the same points of the loop, so they stop at the same micro-batch.
int stop_agreed(pb_dist *d, int time_up) {
    int why = stop_signal ? stop_signal : time_up ? STOP_TIME_LIMIT : 0;
    return d ? dist_max(d, why, "the stop check") : why;
}

int stop_time_up(double limit_s, double run_t0, double slowest_s) {
    return limit_s > 0 && pb_now() - run_t0 + slowest_s > limit_s;
}

void stop_report(const pb_config *cfg, int why, int stopped_at, int mid_step, int accum) {
    const char *sig = why == SIGINT ? "SIGINT" : "SIGTERM";
    if (why == STOP_TIME_LIMIT)
        printf("stopped at the time limit (train.time_limit = %g s) after step %d of %d; "
               "continue with --resume auto\n", cfg->time_limit, stopped_at, cfg->steps);
    else if (stopped_at == 0)
        printf("stopped by %s before the first step finished: no checkpoint written\n", sig);
    else if (mid_step)
        printf("stopped by %s during step %d of %d (after micro-batch %d of %d: that step "
               "is dropped); continue from step %d with --resume auto\n", sig,
               stopped_at + 1, cfg->steps, mid_step, accum, stopped_at);
    else
        printf("stopped by %s after step %d of %d; continue with --resume auto\n", sig,
               stopped_at, cfg->steps);
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// test hooks: the real signal at an exact point, so that tests stop a run where they choose

// PEBBLE_TEST_SIGNAL_RANK=R limits the hooks to rank R (a signal to one rank of several).
static int test_signal_rank_ok(void) {
    const char *r = getenv("PEBBLE_TEST_SIGNAL_RANK");
    const char *me = getenv("OMPI_COMM_WORLD_RANK");
    return !r || atoi(r) == (me ? atoi(me) : 0);
}

void stop_test_after_step(int step) {
    const char *s = getenv("PEBBLE_TEST_SIGNAL_AT_STEP");
    if (s && test_signal_rank_ok() && atoi(s) == step) raise(SIGTERM);
    // for the tests of what the other ranks do when one dies
    const char *die = getenv("PEBBLE_TEST_DIE_AT_STEP");
    if (die && atoi(die) == step && test_signal_rank_ok()) raise(SIGKILL);
}

void stop_test_signal_at(const char *name, int step, int k) {
    const char *s = getenv(name);
    int a, b;
    if (s && sscanf(s, "%d:%d", &a, &b) == 2 && a == step && b == k && test_signal_rank_ok())
        raise(SIGTERM);
}
