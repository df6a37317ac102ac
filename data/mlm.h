// mlm.h: BERT's masked-LM corruption of a batch (data/batch.h), as Hugging Face's
// DataCollatorForLanguageModeling does it: each maskable position is chosen with probability
// p (Bernoulli per position, so a row gets p of its tokens on average, not exactly); a chosen
// position gets the target = its original id, and its input becomes [MASK] (80%), a random
// id uniform in [0, V) (10%), or stays (10%). Every other target is -1.
//
// Maskable: positions before the row's length whose token is not [CLS], [SEP] or [PAD]. That is
// the special_tokens_mask of HF's run_mlm.py (the tokenizer's own [CLS]/[SEP], and padding)
// and of Google's create_pretraining_data.py ([CLS]/[SEP]); [UNK] stays maskable, as there.
// (HF's collator, when handed no mask, builds one from all_special_ids and so also spares
// [UNK] and [MASK]: a choice between two HF paths, made for the pre-training scripts'.)
// The random id is drawn from the whole vocabulary, specials included, as both HF
// (torch.randint(len(tokenizer))) and Google (any vocab word) do.
//
// No row is promised a target (HF promises none): a short piece often has none, and a whole
// batch may; the MLM loss divides by the count of targets and must take 0 (mlm_mask returns
// it, so the trainer can sum it over a step's micro-batches and ranks).
//
// Randomness: every decision at (row, position) comes from a counter-based hash of (seed,
// step, global row, position), never from a stream: masks do not depend on call order, thread
// count or resumption (a run resumed at step s masks step s as the uninterrupted run did), and
// do not depend on the rank split: the key is the row's index in the whole step, which
// mlm_first_row gives for data/seqloader.h's slot order.
#ifndef PEBBLE_MLM_H
#define PEBBLE_MLM_H

#include <stdint.h>

#include "data/batch.h"

#define MLM_PROB 0.15  // bert-base's masking rate

// Masks b in place: b->inputs (B,T) corrupted, b->targets (B,T) written, from b->lengths (B,).
// `first_row` is the step-global index of b's row 0 (mlm_first_row); vocab_size V must exceed
// [MASK] (103) and prob lie in [0, 1]. Returns the number of targets set.
int64_t mlm_mask(pb_batch *b, int vocab_size, double prob, uint64_t seed, uint64_t step,
                 uint64_t first_row);

// The step-global index of row 0 of micro-batch `micro` (0 .. per_rank-1) of rank `rank`,
// each rank taking per_rank micro-batches of B rows a step: (rank per_rank + micro) B, the
// row's place in the step's slots (data/seqloader.h: rank r's micro-batch k is slot
// r per_rank + k).
uint64_t mlm_first_row(int micro, int rank, int per_rank, int B);

#endif
