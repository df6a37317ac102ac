// batch.c: pb_batch allocation (see batch.h).
#include "data/batch.h"

#include <string.h>

#include "kernels/common.h"

void batch_alloc(pb_batch *b, int B, int T) {
    PB_ASSERT(B > 0 && T > 0);
    size_t bt = (size_t)B * (size_t)T;
    int32_t *all = pb_calloc(2 * bt + 2 * (size_t)B, sizeof(int32_t));
    b->B = B, b->T = T;
    b->inputs = all;
    b->targets = all + bt;
    b->lengths = all + 2 * bt;
    b->labels = all + 2 * bt + B;
}

void batch_free(pb_batch *b) {
    if (!b) return;
    free(b->inputs);  // the start of the one allocation
    memset(b, 0, sizeof *b);
}
