// lseq.h: labelled-sequence shards, the data of sequence classification (BERT fine-tuning,
// Long Range Arena): rows of at most T tokens, each with its length and its class label.
//
// Layout (little-endian):
//   int32  header[256]   [0] = 20261202 (magic), [1] = 1 (version), [2] = rows n (low 31
//                        bits) and [3] = rows >> 31 (high bits, 0 below 2^31 rows),
//                        [4] = T (tokens per row), [5] = token bytes (1 or 2),
//                        [6] = num_classes (labels are 0 .. num_classes-1),
//                        [7] = vocab_size (every token id is below it), the rest zero
//   rows[n]              int32 length (1 .. T), int32 label, then T tokens of token-bytes
//                        each (uint8 or uint16); tokens past length are 0 (padding)
// So a valid file is exactly 1024 + n * (8 + T * token_bytes) bytes long. Pixels
// (Pathfinder) and bytes (LRA Text) fit one byte; WordPiece ids (BERT) need two.
#ifndef PEBBLE_LSEQ_H
#define PEBBLE_LSEQ_H

#include <stddef.h>
#include <stdint.h>

#define LSEQ_MAGIC 20261202
#define LSEQ_VERSION 1
#define LSEQ_HEADER_BYTES 1024

typedef struct lseq_info {
    uint64_t rows;
    int T;            // tokens per row (the longest sequence)
    int token_bytes;  // 1 or 2
    int num_classes;  // >= 2
    int vocab_size;   // <= 256 with 1-byte tokens, <= 65536 with 2
} lseq_info;

// --- writing: rows are streamed to "<path>.tmp"; lseq_finish writes the row count, fsyncs
// and renames it over path, so a reader never sees a half-written file.
typedef struct lseq_writer lseq_writer;

// NULL with one line in err on a bad info (T < 1, token bytes, classes, vocabulary) or when
// the file cannot be created.
lseq_writer *lseq_create(const char *path, const lseq_info *info, char *err, size_t errlen);
// Appends one row of len tokens (1 <= len <= T) with its label. Returns 0, or -1 with one
// line in err (a token or label out of range, a write error); the writer is then still
// valid, for lseq_abort.
int lseq_append(lseq_writer *w, const int32_t *tokens, int len, int label, char *err,
                size_t errlen);
// Finishes and renames; the writer is freed either way. Returns 0, or -1 with err (and no
// .tmp left behind).
int lseq_finish(lseq_writer *w, char *err, size_t errlen);
// Drops the file being written (removes the .tmp) and frees the writer.
void lseq_abort(lseq_writer *w);

// --- reading: the file is mapped read-only.
typedef struct lseq_file {
    lseq_info info;
    const uint8_t *rows;  // the first row
    size_t row_bytes;     // 8 + T * token_bytes
    void *map;
    size_t map_len;
} lseq_file;

// Opens and validates a file: header, size against the header, and every row's length,
// label and tokens (below info.vocab_size, and below vocab_size when that is > 0: the
// model's). Returns 0 and fills *f, or -1 with one line in err naming the path, the row
// and the problem; *f is then empty.
int lseq_open(lseq_file *f, const char *path, int vocab_size, char *err, size_t errlen);
// Row i: its tokens into tokens (T entries, padding 0), its label into *label; returns its
// length.
int lseq_row(const lseq_file *f, uint64_t i, int32_t *tokens, int *label);
void lseq_close(lseq_file *f);

#endif
