// feed.c: the batches of a run's task (see feed.h).
#include "train/feed.h"

#include <stdio.h>
#include <string.h>

#include "data/mlm.h"
#include "data/seqloader.h"
#include "kernels/common.h"

struct pb_feed {
    feed_task task;
    pb_loader *lm;      // lm
    pb_seqloader *seq;  // mlm, classify
    int B, T, rank, nranks, block, vocab_size;
    uint64_t seed;
    double mlm_prob;
};

feed_task feed_task_of(const pb_config *cfg) {
    if (strcmp(cfg->model_family, "bert") != 0) return FEED_LM;
    return strcmp(cfg->head, "classify") == 0 ? FEED_CLASSIFY : FEED_MLM;
}

const char *feed_task_name(feed_task t) {
    return t == FEED_LM ? "lm" : t == FEED_MLM ? "mlm" : "classify";
}

pb_feed *feed_open(const pb_config *cfg, const char *pattern, int batch_size, int shuffle,
                   int rank, int nranks, char *err, size_t errlen) {
    pb_feed *f = pb_calloc(1, sizeof *f);
    f->task = feed_task_of(cfg);
    f->B = batch_size > 0 ? batch_size : cfg->batch_size;
    f->T = cfg->seq_len;
    f->rank = rank;
    f->nranks = nranks;
    f->block = 1;
    f->vocab_size = cfg->vocab_size;
    f->seed = cfg->seed;
    f->mlm_prob = cfg->mlm_prob;
    if (f->task == FEED_LM)
        f->lm = loader_open(pattern, f->B, f->T, rank, nranks, f->seed, shuffle, f->vocab_size,
                            err, errlen);
    else if (f->task == FEED_MLM)
        f->seq = seqloader_open_pieces(pattern, f->B, f->T, rank, nranks, f->seed, shuffle,
                                       f->vocab_size, err, errlen);
    else
        f->seq = seqloader_open_lseq(pattern, f->B, f->T, rank, nranks, f->seed, shuffle,
                                     f->vocab_size, err, errlen);
    if (!f->lm && !f->seq) {
        free(f);
        return NULL;
    }
    if (f->task == FEED_CLASSIFY && seqloader_num_classes(f->seq) != cfg->num_labels) {
        pb_seterr(err, errlen, "%s: the data has %d classes but model.num_labels = %d", pattern,
                  seqloader_num_classes(f->seq), cfg->num_labels);
        feed_close(f);
        return NULL;
    }
    return f;
}

void feed_next(pb_feed *f, pb_batch *b, uint64_t step, int micro) {
    if (f->lm) {
        loader_next(f->lm, b->inputs, b->targets);
        for (int i = 0; i < f->B; i++) b->lengths[i] = f->T, b->labels[i] = -1;
        return;
    }
    seqloader_next(f->seq, b);
    if (f->task == FEED_MLM)
        mlm_mask(b, f->vocab_size, f->mlm_prob, f->seed, step,
                 mlm_first_row(micro, f->rank, f->block, f->B));
}

void feed_set_block(pb_feed *f, int block) {
    f->block = block;
    if (f->lm)
        loader_set_block(f->lm, block);
    else
        seqloader_set_block(f->seq, block);
}

void feed_reset(pb_feed *f) {
    if (f->lm)
        loader_reset(f->lm);
    else
        seqloader_reset(f->seq);
}

void feed_get_state(const pb_feed *f, pb_loader_state *s) {
    if (f->lm)
        loader_get_state(f->lm, s);
    else
        seqloader_get_state(f->seq, s);
}

int feed_set_state(pb_feed *f, const pb_loader_state *s, char *err, size_t errlen) {
    return f->lm ? loader_set_state(f->lm, s, err, errlen)
                 : seqloader_set_state(f->seq, s, err, errlen);
}

uint64_t feed_num_tokens(const pb_feed *f) {
    return f->lm ? loader_num_tokens(f->lm) : seqloader_num_tokens(f->seq);
}

uint64_t feed_num_batches(const pb_feed *f) {
    return f->lm ? loader_num_batches(f->lm) : seqloader_num_batches(f->seq);
}

void feed_close(pb_feed *f) {
    if (!f) return;
    if (f->lm) loader_close(f->lm);
    if (f->seq) seqloader_close(f->seq);
    free(f);
}
