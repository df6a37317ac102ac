// stop.h: why a training run stops before its last step: SIGINT or SIGTERM (Ctrl-C, or a
// scheduler preempting the job) or train.time_limit, as every rank agrees; and the test hooks
// that stop a run at an exact point through the real signal path.
#ifndef PEBBLE_STOP_H
#define PEBBLE_STOP_H

#include <signal.h>

#include "train/config.h"

struct pb_dist;

// Why a run stops: 0 (it goes on), a signal's number, or STOP_TIME_LIMIT (train.time_limit),
// below every signal that stops a run, so that a signal received meanwhile is the one reported.
#define STOP_TIME_LIMIT 1

// SIGINT/SIGTERM set the stop flag, which the loop polls; a second signal ends the process at
// once.
void stop_install(void);
// The flag the handlers set (the signal's number; 0 until one comes), for pb_dist.stop.
const volatile sig_atomic_t *stop_flag(void);
// Whether this rank has received a stop signal (its own flag, no exchange).
int stop_requested(void);
// The stop as every rank sees it: the largest reason any rank has (a collective with d; NULL:
// one rank). time_up: this rank's clock says the time limit is reached.
int stop_agreed(struct pb_dist *d, int time_up);
// train.time_limit = limit_s (0: none): whether one more step as slow as slowest_s would end
// past the limit, counted from run_t0 (pb_now's clock).
int stop_time_up(double limit_s, double run_t0, double slowest_s);
// The line that says why a run stopped (why != 0) after step stopped_at of train.steps;
// mid_step > 0: during the next step, after that many of its accum micro-batches.
void stop_report(const pb_config *cfg, int why, int stopped_at, int mid_step, int accum);

// Test hooks, each limited to rank R by PEBBLE_TEST_SIGNAL_RANK=R. After step `step` (1-based):
// PEBBLE_TEST_SIGNAL_AT_STEP=N sends this process SIGTERM at step N, PEBBLE_TEST_DIE_AT_STEP=N
// SIGKILL (a rank that dies).
void stop_test_after_step(int step);
// SIGTERM when the variable `name` is "S:K" with S = step and K = k: after micro-batch K
// (1-based) of step S (PEBBLE_TEST_SIGNAL_AT_MICRO), after validation batch K of step S's
// validation (PEBBLE_TEST_SIGNAL_AT_VAL).
void stop_test_signal_at(const char *name, int step, int k);

#endif
