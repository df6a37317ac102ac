// feed.h: the batches a run's task trains and validates on, whatever the data's kind:
//   lm        token windows (data/loader.h): inputs and next-token targets
//   mlm       BERT pieces (data/seqloader.h), masked by data/mlm.h with (seed, step, the
//             micro-batch's slot in the step): a run repeats and resumes to the bit, and
//             does not depend on the number of ranks
//   classify  labelled rows (data/seqloader.h over data/lseq.h files)
// Validation masks its batches with a step of its own (FEED_VAL_STEP), so every validation
// of a run sees the same masks and the losses compare.
#ifndef PEBBLE_FEED_H
#define PEBBLE_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "data/batch.h"
#include "data/loader.h"
#include "train/config.h"

typedef enum { FEED_LM = 0, FEED_MLM = 1, FEED_CLASSIFY = 2 } feed_task;

#define FEED_VAL_STEP UINT64_MAX  // the mask step of validation batches

typedef struct pb_feed pb_feed;

// The task a (validated) config trains: train.task, or the model's when auto.
feed_task feed_task_of(const pb_config *cfg);
const char *feed_task_name(feed_task t);

// The data matching pattern for cfg's task and shape (B = train.batch_size, T =
// model.seq_len, or batch_size when > 0), checked against the model (vocabulary; classify:
// the files' num_classes against model.num_labels). NULL with one line in err.
pb_feed *feed_open(const pb_config *cfg, const char *pattern, int batch_size, int shuffle,
                   int rank, int nranks, char *err, size_t errlen);
// The micro-batches per rank of a step (the loaders' block, data/loader.h): rank r's
// micro-batch k is the step's slot r*block + k. 1 unless set; before the first batch.
void feed_set_block(pb_feed *f, int block);
// The next micro-batch into b (batch_alloc'ed B x T); step and micro key the MLM masks.
void feed_next(pb_feed *f, pb_batch *b, uint64_t step, int micro);
void feed_reset(pb_feed *f);
void feed_get_state(const pb_feed *f, pb_loader_state *s);
int feed_set_state(pb_feed *f, const pb_loader_state *s, char *err, size_t errlen);
uint64_t feed_num_tokens(const pb_feed *f);   // tokens in the data (real ones: no padding)
uint64_t feed_num_batches(const pb_feed *f);  // batches of one epoch that read nothing twice
void feed_close(pb_feed *f);

#endif
