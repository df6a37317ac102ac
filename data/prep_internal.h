// prep_internal.h: what the two halves of `pebble prep` share: prep.c (text -> token shards,
// the options, the tokenizers) and prep_labels.c (TSV -> labelled sequences).
#ifndef PEBBLE_PREP_INTERNAL_H
#define PEBBLE_PREP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "data/wordpiece.h"

typedef struct in_file {
    const char *path;
    size_t size;
} in_file;

// The command's options (parsed and checked by prep.c).
typedef struct prep_options {
    const char *out, *sep, *vocab;
    int bert, labels, header, force, binary_ok;
    uint64_t shard_tokens, val_tokens;
    long seq_len, num_classes, val_rows;  // -1: not given
    in_file *files;
    int nfiles;
} prep_options;

// The tokenizer, either kind: loaded once, one GPT-2 encoder per thread.
typedef struct prep_encoder {
    int bert;
    tok_tokenizer *gpt2;
    tok_encoder **encs;  // per thread
    wp_tokenizer *wp;
    int vocab_size;
} prep_encoder;

void prep_encoder_load(prep_encoder *e, int bert, const char *path);  // exits on a bad file
// Appends the ids of p[0..n) to out; called from inside an OpenMP parallel region.
void prep_encoder_run(const prep_encoder *e, const uint8_t *p, size_t n, tok_ids *out);
void prep_encoder_free(prep_encoder *e);

int prep_all_space(const uint8_t *p, size_t n);  // only ASCII white space (or nothing)

// `pebble prep --labels`: the TSV files of o into DIR/train.lseq (and val.lseq).
int prep_labels(const prep_options *o);

#endif
