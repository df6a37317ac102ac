// lra_pos.h: `pebble lra upsample-pos` (FlashAttention's Path-X recipe): a checkpoint's learned
// positions duplicated over a larger image grid (see lra_pos.c).
#ifndef PEBBLE_LRA_POS_H
#define PEBBLE_LRA_POS_H

#include <stddef.h>

// from: a checkpoint file or run directory of a bert model with a^2 positions; T = b^2 (b a
// multiple of a). Writes a step-0 checkpoint at out. 0, or an exit code with one line in err.
int lra_upsample_pos(const char *from, int T, const char *out, char *err, size_t errlen);
int lra_upsample_pos_main(int argc, char **argv);  // argv[0] = "upsample-pos"

#endif
