// seqloader.h: batches of padded sequences (data/batch.h) for BERT: pieces from token shards
// for masked-LM pre-training, labelled rows from .lseq files for sequence classification.
//
// The sequences. MLM: llm.c token shards (data/shard.h) written by `pebble prep --tokenizer
// bert --seq-len T`, whose tokens are documents cut into pieces [CLS] w ... [SEP] of at most T
// tokens; a piece runs from a [CLS] (101) to the next [SEP] (102) inclusive, and every token of
// a shard belongs to one. Classification: the rows of labelled-sequence files (data/lseq.h).
// Either way the sequences of all files, in sorted path order, are numbered 0 .. N-1.
//
// The order. Epoch e visits the N sequences in the order loader_epoch_order(seed, e) (or as
// they are, without shuffle); the epochs follow each other as one stream, and a batch that
// reaches the end of an epoch takes the rest of its rows from the start of the next one.
//
// The rank split. The stream is cut into micro-batch slots of B sequences: slot j holds
// stream positions jB .. jB+B-1. The ranks read it in rounds of nranks x block slots (block:
// seqloader_set_block, the micro-batches per rank of an optimizer step; 1 by default): rank r
// takes the round's slots r block .. r block + block-1, its micro-batch k being slot
// r block + k. So the slots one optimizer step consumes are the same for every world size,
// each as the same micro-batch: 1 rank with nranks x block micro-batches reads exactly the
// same batches, and the step's gradient is the same sum. Nothing is dropped at an epoch's end,
// which is what keeps that true across epoch boundaries for any nranks and block.
// mlm_first_row (data/mlm.h) keys the masks by the slot.
//
// The state (pb_loader_state, as for the GPT-2 loader, so checkpoints store one kind): seed,
// epoch, and cursor = the stream position in that epoch where the whole group's next slot
// begins (rank r reads from cursor + r block B). It is the same on every rank, and a checkpoint saved
// with one world size resumes with another.
#ifndef PEBBLE_SEQLOADER_H
#define PEBBLE_SEQLOADER_H

#include <stddef.h>
#include <stdint.h>

#include "data/batch.h"
#include "data/loader.h"

typedef struct pb_seqloader pb_seqloader;

// MLM pieces from every token shard matching `pattern`. Refuses, with one line in err naming
// the shard: a token outside any piece, a piece without its [SEP] or with a second [CLS], a
// piece longer than T, token ids >= vocab_size (and vocab_size <= [MASK] 103); and no pieces
// at all, or fewer than one batch of B for each of nranks ranks. Returns NULL then.
pb_seqloader *seqloader_open_pieces(const char *pattern, int B, int T, int rank, int nranks,
                                    uint64_t seed, int shuffle, int vocab_size, char *err,
                                    size_t errlen);
// Classification rows from every .lseq file matching `pattern` (their tokens checked below
// vocab_size). All files must share one row length and one num_classes; the rows' length
// (file T) may be below the model's T (rows are padded) but not above it. Returns NULL with
// one line in err on any problem.
pb_seqloader *seqloader_open_lseq(const char *pattern, int B, int T, int rank, int nranks,
                                  uint64_t seed, int shuffle, int vocab_size, char *err,
                                  size_t errlen);

// The next micro-batch of this rank into b (batch_alloc'ed with the loader's B and T):
// inputs padded with [PAD] (0), lengths set, targets all -1 (the MLM path then calls
// mlm_mask), labels the class of each row (-1 for pieces).
void seqloader_next(pb_seqloader *l, pb_batch *b);
// The slots a rank reads per round (the rank split above). Before the first batch.
void seqloader_set_block(pb_seqloader *l, int block);
void seqloader_reset(pb_seqloader *l);  // back to epoch 0, position 0 (validation passes)
void seqloader_get_state(const pb_seqloader *l, pb_loader_state *s);
// -1 with err on another seed or a cursor past the epoch (other data).
int seqloader_set_state(pb_seqloader *l, const pb_loader_state *s, char *err, size_t errlen);

uint64_t seqloader_num_seqs(const pb_seqloader *l);    // N: pieces or rows, one epoch
uint64_t seqloader_num_tokens(const pb_seqloader *l);  // real tokens (sum of lengths)
// Batches of this rank that lie inside epoch 0 without wrapping, floor(N / (B nranks)): the
// cap for a validation pass that must not read a sequence twice.
uint64_t seqloader_num_batches(const pb_seqloader *l);
// The files' num_classes (for model.num_labels); 0 for MLM pieces.
int seqloader_num_classes(const pb_seqloader *l);
void seqloader_close(pb_seqloader *l);

#endif
