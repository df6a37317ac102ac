// loader.h: batches of (B, T+1) token windows from llm.c-format shards.
// Shard format (data/shard.h): 256 int32 header (magic 20240520, version 1, token count),
// then that many uint16 tokens.
#ifndef PEBBLE_LOADER_H
#define PEBBLE_LOADER_H

#include <stddef.h>
#include <stdint.h>

typedef struct pb_loader pb_loader;

// The exact position of a loader, to save in a checkpoint and restore later.
typedef struct pb_loader_state {
    uint64_t seed;
    uint64_t epoch;
    uint64_t cursor;  // where the next round of slots begins: a window index, a multiple of B
} pb_loader_state;

// Opens every shard matching the glob `pattern` and validates them (magic, version, size
// against the header, token ids < vocab_size). Windows are T+1 tokens at stride T inside a
// shard; with shuffle, each epoch visits them in a permutation drawn from (seed, epoch),
// cut into batches of B (slots). Rank r of nranks reads, of every round of nranks * block
// consecutive slots, the block r*block .. r*block + block-1 (block 1 unless loader_set_block:
// slots r, r + nranks, ...), so that the ranks of one step read what one rank with nranks
// times the batches would, batch for batch. Returns NULL with one line in err on any problem
// (empty pattern, bad magic, truncated file, out-of-vocabulary token, ...).
pb_loader *loader_open(const char *pattern, int B, int T, int rank, int nranks, uint64_t seed,
                       int shuffle, int vocab_size, char *err, size_t errlen);
// The slots a rank reads per round: the micro-batches per rank of an optimizer step, so
// that rank r's micro-batch k is slot r*block + k of the step. Before the first batch.
void loader_set_block(pb_loader *l, int block);
// Next batch: inputs (B,T) and targets (B,T) = inputs shifted by one. Wraps to a new epoch.
void loader_next(pb_loader *l, int32_t *inputs, int32_t *targets);
void loader_reset(pb_loader *l);  // back to epoch 0, first window (for validation passes)
// The position at a round's start (between steps), the same on every rank.
void loader_get_state(const pb_loader *l, pb_loader_state *s);
int loader_set_state(pb_loader *l, const pb_loader_state *s, char *err, size_t errlen);
uint64_t loader_num_tokens(const pb_loader *l);   // tokens in all shards
uint64_t loader_num_batches(const pb_loader *l);  // batches per epoch for this rank: (W/B)/nranks
void loader_close(pb_loader *l);

// --- what every pebble loader shares (data/seqloader.c uses these too)

// The order of epoch `epoch` over n items: order (n,) becomes a permutation of 0 .. n-1 drawn
// from (seed, epoch) alone, the same on every machine and rank.
void loader_epoch_order(uint64_t *order, uint64_t n, uint64_t seed, uint64_t epoch);

// The epochs' orders of n items, as it is or shuffled, each built when first asked for (the
// positions a loader asks for only move forward, so each epoch's is built once).
typedef struct loader_order {
    uint64_t n, seed;
    int shuffle;
    uint64_t *perm;  // (n,) the order of epoch perm_epoch; NULL without shuffle
    uint64_t perm_epoch;
    int perm_valid;
} loader_order;
void loader_order_init(loader_order *o, uint64_t n, uint64_t seed, int shuffle);
uint64_t loader_order_at(loader_order *o, uint64_t epoch, uint64_t pos);  // pos < n
void loader_order_free(loader_order *o);

// Items numbered across files: first (n+1,) ascending holds each file's first item. Returns
// the file holding item g (the last i < n with first[i] <= g).
size_t loader_file_of(const uint64_t *first, size_t n, uint64_t g);

// One line in err and -1 for B or T not positive, rank not in 0 .. nranks-1, vocab_size not
// positive; 0 otherwise.
int loader_check_args(const char *pattern, int B, int T, int rank, int nranks, int vocab_size,
                      char *err, size_t errlen);
// -1 with one line in err when a saved state's seed is not the loader's.
int loader_check_seed(const char *pattern, uint64_t seed, const pb_loader_state *s, char *err,
                      size_t errlen);

#endif
