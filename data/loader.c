// loader.c: batches of (B, T+1) token windows from llm.c shards (see loader.h).
//
// The windows: inside each shard, T+1 tokens starting at 0, T, 2T, ... (neighbours overlap
// by one token: the last target of one window is the first input of the next). Numbered
// across the shards in sorted-path order they form the global list g = 0 .. W-1.
// Each epoch orders that list: as it is, or (shuffle) by a Fisher-Yates permutation drawn
// from (seed, epoch), and cuts the order into W / B slots of B windows (slot j: positions jB ..
// jB+B-1; the last W % B positions are dropped). The epochs' slots follow each other as one
// stream, numbered G = epoch * slots + j. The ranks split that stream in rounds of
// nranks * block slots (loader.h); one rank reads exactly the stream, so a step of nranks
// ranks reads the slots one rank with nranks times the micro-batches reads, each as the same
// batch, and the loader's state (the next round's slot, as (epoch, cursor = j B)) is the same
// on every rank and for every world size.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "data/loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "kernels/common.h"

struct pb_loader {
    char *pattern;
    int B, T, rank, nranks;
    uint64_t seed;
    shard_set set;
    uint64_t *first_window;  // (set.n+1,): global index of each shard's first window
    uint64_t num_windows;    // W, over all shards
    uint64_t slots;          // W / B batches per epoch
    int block;               // slots a rank reads per round (loader_set_block)
    int k;                   // of them, read so far this round
    uint64_t num_tokens;
    loader_order order;      // the epochs' orders of the W windows
    uint64_t epoch, cursor;  // the position: cursor indexes this rank's share of the epoch
};

// ---------------------------------------------------------------------------------------
// the per-epoch permutation

// Uniform in [0, n) without modulo bias: reject the lowest 2^64 mod n values.
static uint64_t uniform_below(pb_rng *r, uint64_t n) {
    uint64_t threshold = (0 - n) % n;  // = 2^64 mod n
    for (;;) {
        uint64_t x = pb_rng_u64(r);
        if (x >= threshold) return x % n;
    }
}

// Fisher-Yates driven by pb_rng (never rand(), so a saved (seed, epoch) replays the same
// order on any machine).
void loader_epoch_order(uint64_t *order, uint64_t n, uint64_t seed, uint64_t epoch) {
    for (uint64_t i = 0; i < n; i++) order[i] = i;
    // One stream per (seed, epoch): for a fixed seed, distinct epochs give distinct keys
    // (the hash of the seed, xor the epoch), and pb_rng_seed mixes the key further.
    uint64_t h = seed * 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 32)) * 0xD6E8FEB86659FD93ull;
    pb_rng r;
    pb_rng_seed(&r, (h ^ (h >> 32)) ^ epoch);
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = uniform_below(&r, i);
        uint64_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

void loader_order_init(loader_order *o, uint64_t n, uint64_t seed, int shuffle) {
    memset(o, 0, sizeof *o);
    o->n = n, o->seed = seed, o->shuffle = shuffle != 0;
    if (o->shuffle) o->perm = pb_malloc(n * sizeof *o->perm);
}

uint64_t loader_order_at(loader_order *o, uint64_t epoch, uint64_t pos) {
    PB_ASSERT(pos < o->n);
    if (!o->shuffle) return pos;
    if (!o->perm_valid || o->perm_epoch != epoch) {
        loader_epoch_order(o->perm, o->n, o->seed, epoch);
        o->perm_epoch = epoch;
        o->perm_valid = 1;
    }
    return o->perm[pos];
}

void loader_order_free(loader_order *o) {
    free(o->perm);
    memset(o, 0, sizeof *o);
}

// Files with no items share their successor's first index, so the search skips them.
size_t loader_file_of(const uint64_t *first, size_t n, uint64_t g) {
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (first[mid] <= g) lo = mid;
        else hi = mid;
    }
    return lo;
}

// ---------------------------------------------------------------------------------------
// checks every loader makes

int loader_check_args(const char *pattern, int B, int T, int rank, int nranks, int vocab_size,
                      char *err, size_t errlen) {
    if (B <= 0 || T <= 0)
        pb_seterr(err, errlen,
                  "data '%s': batch size B = %d and sequence length T = %d must be positive",
                  pattern, B, T);
    else if (nranks <= 0 || rank < 0 || rank >= nranks)
        pb_seterr(err, errlen, "data '%s': rank %d is not in 0 .. nranks-1 (nranks = %d)",
                  pattern, rank, nranks);
    else if (vocab_size <= 0)
        pb_seterr(err, errlen, "data '%s': vocab_size must be positive (got %d)", pattern,
                  vocab_size);
    else
        return 0;
    return -1;
}

int loader_check_seed(const char *pattern, uint64_t seed, const pb_loader_state *s, char *err,
                      size_t errlen) {
    if (s->seed == seed) return 0;
    pb_seterr(err, errlen,
              "data '%s': saved loader state has seed %llu but this loader was opened with "
              "seed %llu",
              pattern, (unsigned long long)s->seed, (unsigned long long)seed);
    return -1;
}

// ---------------------------------------------------------------------------------------
// open / close

pb_loader *loader_open(const char *pattern, int B, int T, int rank, int nranks, uint64_t seed,
                       int shuffle, int vocab_size, char *err, size_t errlen) {
    if (loader_check_args(pattern, B, T, rank, nranks, vocab_size, err, errlen) != 0)
        return NULL;

    pb_loader *l = pb_calloc(1, sizeof *l);
    l->pattern = pb_malloc(strlen(pattern) + 1);
    strcpy(l->pattern, pattern);
    l->B = B, l->T = T, l->rank = rank, l->nranks = nranks;
    l->seed = seed;
    if (shard_set_open(&l->set, pattern, vocab_size, err, errlen) != 0) {
        loader_close(l);
        return NULL;
    }
    l->first_window = pb_calloc(l->set.n + 1, sizeof *l->first_window);

    uint64_t W = 0;
    for (size_t i = 0; i < l->set.n; i++) {
        uint64_t n = l->set.shards[i].n;
        l->first_window[i] = W;
        // windows at k*T for k*T + T+1 <= n: (n-1)/T of them, none when n < T+1
        W += n > (uint64_t)T ? (n - 1) / (uint64_t)T : 0;
        l->num_tokens += n;
    }
    l->first_window[l->set.n] = W;

    l->num_windows = W;
    l->slots = W / (uint64_t)B;
    l->block = 1;
    if (W == 0) {
        pb_seterr(err, errlen, "data '%s': no shard holds a full window of T+1 = %d tokens", pattern,
               T + 1);
        loader_close(l);
        return NULL;
    }
    if (l->slots < (uint64_t)nranks) {
        pb_seterr(err, errlen,
               "data '%s': %llu windows of T+1 = %d tokens make %llu batches of B = %d, fewer "
               "than one for each of %d ranks",
               pattern, (unsigned long long)W, T + 1, (unsigned long long)l->slots, B, nranks);
        loader_close(l);
        return NULL;
    }
    loader_order_init(&l->order, W, seed, shuffle);
    return l;
}

void loader_close(pb_loader *l) {
    if (!l) return;
    shard_set_close(&l->set);
    free(l->first_window);
    loader_order_free(&l->order);
    free(l->pattern);
    free(l);
}

// ---------------------------------------------------------------------------------------
// batches

void loader_set_block(pb_loader *l, int block) {
    PB_ASSERT(block >= 1 && l->k == 0);
    l->block = block;
}

// The round's first slot, as a stream index (a cursor of slots * B, left by a checkpoint of
// an older pebble at an epoch's end, is the next epoch's slot 0).
static uint64_t round_slot(const pb_loader *l) {
    return l->epoch * l->slots + l->cursor / (uint64_t)l->B;
}

void loader_next(pb_loader *l, int32_t *inputs, int32_t *targets) {
    PB_ASSERT(l && inputs && targets);
    const int B = l->B, T = l->T;
    // this rank's slot of the round: block r*block + k of the round's nranks*block slots
    uint64_t g0 = round_slot(l);
    uint64_t G = g0 + (uint64_t)l->rank * (uint64_t)l->block + (uint64_t)l->k;
    uint64_t epoch = G / l->slots, j = G % l->slots;
    for (int b = 0; b < B; b++) {
        uint64_t pos = j * (uint64_t)B + (uint64_t)b;
        uint64_t g = loader_order_at(&l->order, epoch, pos);
        size_t s = loader_file_of(l->first_window, l->set.n, g);
        uint64_t off = (g - l->first_window[s]) * (uint64_t)T;
        const uint16_t *w = l->set.shards[s].tokens + off;  // (T+1,)
        PB_ASSERT(off + (uint64_t)T + 1 <= l->set.shards[s].n);
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            in[t] = w[t];
            tg[t] = w[t + 1];
        }
    }
    if (++l->k == l->block) {  // every rank's block of the round is read: the next round
        // as (epoch, cursor) with cursor in (0, slots B]: an epoch's end stays in that epoch
        // until the next batch is read (the state one rank has always saved there)
        uint64_t next = g0 + (uint64_t)l->nranks * (uint64_t)l->block;
        l->epoch = (next - 1) / l->slots;
        l->cursor = (next - l->epoch * l->slots) * (uint64_t)B;
        l->k = 0;
    }
}

void loader_reset(pb_loader *l) {
    l->epoch = 0;
    l->cursor = 0;
    l->k = 0;
}

void loader_get_state(const pb_loader *l, pb_loader_state *s) {
    PB_ASSERT(l->k == 0);  // a state is a round's start (the trainer's step boundary)
    s->seed = l->seed;
    s->epoch = l->epoch;
    s->cursor = l->cursor;
}

int loader_set_state(pb_loader *l, const pb_loader_state *s, char *err, size_t errlen) {
    if (loader_check_seed(l->pattern, l->seed, s, err, errlen) != 0) return -1;
    uint64_t end = l->slots * (uint64_t)l->B;
    if (s->cursor > end || s->cursor % (uint64_t)l->B != 0) {
        pb_seterr(err, errlen,
               "data '%s': saved loader cursor %llu is not a batch start within the %llu "
               "windows of an epoch's batches of B = %d (different data, T or B?)",
               l->pattern, (unsigned long long)s->cursor, (unsigned long long)end, l->B);
        return -1;
    }
    l->epoch = s->epoch;
    l->cursor = s->cursor;
    l->k = 0;
    return 0;
}

uint64_t loader_num_tokens(const pb_loader *l) { return l->num_tokens; }

uint64_t loader_num_batches(const pb_loader *l) { return l->slots / (uint64_t)l->nranks; }
