// rundir.h: the run directory belongs to one run: one writer at a time (a lock holding its
// pid), and a new run never writes over an old one (its files are archived, or refused).
#ifndef PEBBLE_RUNDIR_H
#define PEBBLE_RUNDIR_H

// flock() on <dir>/.lock for the whole run (held until the process ends, however it ends);
// a second writer is refused with one line naming the holder's pid (exit 1).
void rundir_lock(const char *dir);
// A new run (no --resume) into dir: an earlier run's checkpoints are refused unless force,
// which moves that run's files into a new dir/archive-N (never overwriting); an earlier run's
// files without checkpoints are archived without asking. Prints a note when it archives.
void rundir_claim_fresh(const char *dir, int force);

#endif
