// seqloader.c: padded sequence batches for BERT (see seqloader.h): the piece index of token
// shards, the rows of .lseq files, and the stream of epochs the ranks share.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "data/seqloader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/lseq.h"
#include "data/shard.h"
#include "kernels/common.h"

// One piece: tokens start .. start+len-1 of shard `shard` ([CLS] first, [SEP] last).
typedef struct seq_piece {
    uint32_t shard;
    uint32_t start;  // a shard holds fewer than 2^31 tokens
    int32_t len;
} seq_piece;

struct pb_seqloader {
    char *pattern;
    int B, T, rank, nranks, shuffle;
    uint64_t seed;
    uint64_t N;           // sequences per epoch
    uint64_t num_tokens;  // sum of their lengths
    // MLM pieces
    shard_set set;
    seq_piece *pieces;    // (N,)
    // classification rows
    lseq_file *files;     // (nfiles,)
    size_t nfiles;
    uint64_t *first_row;  // (nfiles+1,) global index of each file's first row
    int file_T, num_classes;
    int32_t *row;         // (file_T,) one row as lseq_row returns it
    loader_order order;   // the epochs' orders of the N sequences
    uint64_t epoch, cursor;  // where the group's next round of slots begins (cursor < N)
    int block;            // slots a rank reads per round (seqloader_set_block)
    int k;                // of them, read so far this round
};

// ---------------------------------------------------------------------------------------
// open / close

// The checks both kinds share, and the common fields.
static pb_seqloader *seqloader_new(const char *pattern, int B, int T, int rank, int nranks,
                                   uint64_t seed, int shuffle, int vocab_size, char *err,
                                   size_t errlen) {
    if (loader_check_args(pattern, B, T, rank, nranks, vocab_size, err, errlen) != 0)
        return NULL;
    pb_seqloader *l = pb_calloc(1, sizeof *l);
    l->pattern = pb_malloc(strlen(pattern) + 1);
    strcpy(l->pattern, pattern);
    l->B = B, l->T = T, l->rank = rank, l->nranks = nranks;
    l->seed = seed, l->shuffle = shuffle != 0;
    l->block = 1;
    return l;
}

// What both kinds check once their sequences are counted: enough for every rank.
static pb_seqloader *seqloader_ready(pb_seqloader *l, const char *what, char *err,
                                     size_t errlen) {
    uint64_t slot = (uint64_t)l->B * (uint64_t)l->nranks;
    if (l->N < slot) {
        pb_seterr(err, errlen,
                  "data '%s': %llu %s give fewer than one batch of B = %d to each of %d ranks",
                  l->pattern, (unsigned long long)l->N, what, l->B, l->nranks);
        seqloader_close(l);
        return NULL;
    }
    loader_order_init(&l->order, l->N, l->seed, l->shuffle);
    return l;
}

// The pieces of shard i appended to l->pieces (capacity *cap). Returns 0, or -1 with err.
static int index_pieces(pb_seqloader *l, uint32_t i, size_t *cap, char *err, size_t errlen) {
    const pb_shard *s = &l->set.shards[i];
    const char *path = l->set.paths[i];
    const uint16_t *tok = s->tokens;
    uint64_t in_shard = 0;
    size_t t = 0;
    while (t < s->n) {
        if (tok[t] != WP_CLS) {
            pb_seterr(err, errlen,
                      "%s: token %u at position %zu is outside any piece (pieces are [CLS] %d ... "
                      "[SEP] %d, as pebble prep --tokenizer bert writes them)",
                      path, (unsigned)tok[t], t, WP_CLS, WP_SEP);
            return -1;
        }
        size_t start = t++;
        while (t < s->n && tok[t] != WP_SEP) {
            if (tok[t] == WP_CLS) {
                pb_seterr(err, errlen,
                          "%s: [CLS] at position %zu inside the piece that starts at %zu (no "
                          "[SEP] between them)",
                          path, t, start);
                return -1;
            }
            t++;
        }
        if (t == s->n) {
            pb_seterr(err, errlen, "%s: the piece at position %zu has no [SEP] before the end of the shard",
                      path, start);
            return -1;
        }
        size_t len = t - start + 1;
        t++;
        if (len > (size_t)l->T) {
            pb_seterr(err, errlen,
                      "%s: piece %llu (positions %zu .. %zu) has %zu tokens, more than T = %d: "
                      "prep --seq-len must be <= train.seq_len",
                      path, (unsigned long long)in_shard, start, t - 1, len, l->T);
            return -1;
        }
        if (l->N == *cap) {
            *cap = *cap ? 2 * *cap : 1024;
            seq_piece *p = realloc(l->pieces, *cap * sizeof *p);
            if (!p) pb_die(PB_EXIT_RUNTIME, "out of memory indexing the pieces of %s", path);
            l->pieces = p;
        }
        l->pieces[l->N++] = (seq_piece){i, (uint32_t)start, (int32_t)len};
        l->num_tokens += len;
        in_shard++;
    }
    return 0;
}

pb_seqloader *seqloader_open_pieces(const char *pattern, int B, int T, int rank, int nranks,
                                    uint64_t seed, int shuffle, int vocab_size, char *err,
                                    size_t errlen) {
    if (vocab_size <= WP_MASK) {
        pb_seterr(err, errlen,
                  "data '%s': vocab_size %d has no room for BERT's special ids (up to [MASK] = %d)",
                  pattern, vocab_size, WP_MASK);
        return NULL;
    }
    pb_seqloader *l =
        seqloader_new(pattern, B, T, rank, nranks, seed, shuffle, vocab_size, err, errlen);
    if (!l) return NULL;
    if (shard_set_open(&l->set, pattern, vocab_size, err, errlen) != 0) {
        seqloader_close(l);
        return NULL;
    }
    size_t cap = 0;
    for (size_t i = 0; i < l->set.n; i++)
        if (index_pieces(l, (uint32_t)i, &cap, err, errlen) != 0) {
            seqloader_close(l);
            return NULL;
        }
    if (l->N == 0) {
        pb_seterr(err, errlen, "data '%s': no pieces ([CLS] ... [SEP]) in its %zu shard(s)",
                  pattern, l->set.n);
        seqloader_close(l);
        return NULL;
    }
    return seqloader_ready(l, "pieces", err, errlen);
}

pb_seqloader *seqloader_open_lseq(const char *pattern, int B, int T, int rank, int nranks,
                                  uint64_t seed, int shuffle, int vocab_size, char *err,
                                  size_t errlen) {
    pb_seqloader *l =
        seqloader_new(pattern, B, T, rank, nranks, seed, shuffle, vocab_size, err, errlen);
    if (!l) return NULL;
    glob_t g;
    if (shard_glob(pattern, &g, err, errlen) != 0) {
        seqloader_close(l);
        return NULL;
    }
    l->files = pb_calloc(g.gl_pathc, sizeof *l->files);
    l->first_row = pb_calloc(g.gl_pathc + 1, sizeof *l->first_row);
    int failed = 0;
    for (size_t i = 0; i < g.gl_pathc && !failed; i++) {
        const char *path = g.gl_pathv[i];
        lseq_file *f = &l->files[i];
        if (lseq_open(f, path, vocab_size, err, errlen) != 0) {
            failed = 1;
            break;
        }
        l->nfiles = i + 1;  // opened so far, for seqloader_close
        if (i == 0) {
            l->file_T = f->info.T;
            l->num_classes = f->info.num_classes;
        }
        failed = 1;
        if (f->info.T != l->file_T)
            pb_seterr(err, errlen,
                      "%s: rows of T = %d tokens, but %s has T = %d (one data pattern, one T)",
                      path, f->info.T, g.gl_pathv[0], l->file_T);
        else if (f->info.num_classes != l->num_classes)
            pb_seterr(err, errlen, "%s: num_classes = %d, but %s has %d", path,
                      f->info.num_classes, g.gl_pathv[0], l->num_classes);
        else if (f->info.T > T)
            pb_seterr(err, errlen,
                      "%s: rows of T = %d tokens do not fit the model's seq_len %d", path,
                      f->info.T, T);
        else
            failed = 0;
        l->first_row[i] = l->N;
        l->N += f->info.rows;
    }
    globfree(&g);
    if (failed) {
        seqloader_close(l);
        return NULL;
    }
    l->first_row[l->nfiles] = l->N;
    l->row = pb_malloc((size_t)l->file_T * sizeof *l->row);
    for (size_t i = 0; i < l->nfiles; i++)
        for (uint64_t r = 0; r < l->files[i].info.rows; r++) {
            int label;
            l->num_tokens += (uint64_t)lseq_row(&l->files[i], r, l->row, &label);
        }
    return seqloader_ready(l, "rows", err, errlen);
}

void seqloader_close(pb_seqloader *l) {
    if (!l) return;
    shard_set_close(&l->set);
    free(l->pieces);
    for (size_t i = 0; i < l->nfiles; i++) lseq_close(&l->files[i]);
    free(l->files);
    free(l->first_row);
    free(l->row);
    loader_order_free(&l->order);
    free(l->pattern);
    free(l);
}

// ---------------------------------------------------------------------------------------
// batches

// (e, c) moved on by n stream positions.
static void advance(const pb_seqloader *l, uint64_t *e, uint64_t *c, uint64_t n) {
    *c += n;
    *e += *c / l->N;
    *c %= l->N;
}

// Row b of the batch <- sequence q: its tokens, [PAD] to T, no MLM targets.
static void fill_row(pb_seqloader *l, pb_batch *bt, int b, uint64_t q) {
    const int T = l->T;
    int32_t *in = bt->inputs + (size_t)b * T, *tg = bt->targets + (size_t)b * T;
    int len, label;
    if (l->pieces) {
        const seq_piece *p = &l->pieces[q];
        const uint16_t *src = l->set.shards[p->shard].tokens + p->start;
        len = p->len;
        label = -1;
        for (int t = 0; t < len; t++) in[t] = src[t];
    } else {
        size_t f = loader_file_of(l->first_row, l->nfiles, q);
        len = lseq_row(&l->files[f], q - l->first_row[f], l->row, &label);
        memcpy(in, l->row, (size_t)len * sizeof *in);
    }
    PB_ASSERT(len >= 1 && len <= T);
    for (int t = len; t < T; t++) in[t] = WP_PAD;
    for (int t = 0; t < T; t++) tg[t] = -1;
    bt->lengths[b] = len;
    bt->labels[b] = label;
}

void seqloader_set_block(pb_seqloader *l, int block) {
    PB_ASSERT(block >= 1 && l->k == 0);
    l->block = block;
}

void seqloader_next(pb_seqloader *l, pb_batch *b) {
    PB_ASSERT(l && b && b->B == l->B && b->T == l->T);
    const uint64_t B = (uint64_t)l->B, block = (uint64_t)l->block;
    uint64_t e = l->epoch, c = l->cursor;
    // this rank's slot of the group's round: r*block + k
    advance(l, &e, &c, ((uint64_t)l->rank * block + (uint64_t)l->k) * B);
    for (int i = 0; i < l->B; i++) {
        fill_row(l, b, i, loader_order_at(&l->order, e, c));
        advance(l, &e, &c, 1);
    }
    if (++l->k == l->block) {  // every rank's block of the round is read
        advance(l, &l->epoch, &l->cursor, (uint64_t)l->nranks * block * B);
        l->k = 0;
    }
}

void seqloader_reset(pb_seqloader *l) {
    l->epoch = 0;
    l->cursor = 0;
    l->k = 0;
}

void seqloader_get_state(const pb_seqloader *l, pb_loader_state *s) {
    PB_ASSERT(l->k == 0);  // a state is a round's start (the trainer's step boundary)
    s->seed = l->seed;
    s->epoch = l->epoch;
    s->cursor = l->cursor;
}

int seqloader_set_state(pb_seqloader *l, const pb_loader_state *s, char *err, size_t errlen) {
    if (loader_check_seed(l->pattern, l->seed, s, err, errlen) != 0) return -1;
    if (s->cursor >= l->N) {
        pb_seterr(err, errlen,
                  "data '%s': saved loader cursor %llu is past the %llu sequences of an epoch "
                  "(different data?)",
                  l->pattern, (unsigned long long)s->cursor, (unsigned long long)l->N);
        return -1;
    }
    l->epoch = s->epoch;
    l->cursor = s->cursor;
    l->k = 0;
    return 0;
}

uint64_t seqloader_num_seqs(const pb_seqloader *l) { return l->N; }
uint64_t seqloader_num_tokens(const pb_seqloader *l) { return l->num_tokens; }
uint64_t seqloader_num_batches(const pb_seqloader *l) {
    return l->N / ((uint64_t)l->B * (uint64_t)l->nranks);
}
int seqloader_num_classes(const pb_seqloader *l) { return l->pieces ? 0 : l->num_classes; }
