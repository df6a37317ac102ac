// lseq.c: labelled-sequence shards (see lseq.h): streamed atomic write, mmap + validation.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "data/lseq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pebble's labelled-sequence files assume a little-endian host"
#endif

static int info_check(const lseq_info *in, char *err, size_t errlen) {
    int maxv = in->token_bytes == 1 ? 256 : 65536;
    if (in->T < 1)
        pb_seterr(err, errlen, "T = %d tokens per row (must be at least 1)", in->T);
    else if (in->token_bytes != 1 && in->token_bytes != 2)
        pb_seterr(err, errlen, "token bytes = %d (must be 1 or 2)", in->token_bytes);
    else if (in->num_classes < 2)
        pb_seterr(err, errlen, "num_classes = %d (must be at least 2)", in->num_classes);
    else if (in->vocab_size < 1 || in->vocab_size > maxv)
        pb_seterr(err, errlen, "vocab_size = %d (must be 1 .. %d with %d-byte tokens)",
                  in->vocab_size, maxv, in->token_bytes);
    else
        return 0;
    return -1;
}

static void header_fill(int32_t h[256], const lseq_info *in) {
    memset(h, 0, 256 * sizeof(int32_t));
    h[0] = LSEQ_MAGIC;
    h[1] = LSEQ_VERSION;
    h[2] = (int32_t)(in->rows & 0x7fffffff);
    h[3] = (int32_t)(in->rows >> 31);
    h[4] = in->T;
    h[5] = in->token_bytes;
    h[6] = in->num_classes;
    h[7] = in->vocab_size;
}

// ---------------------------------------------------------------------------------------
// writing

struct lseq_writer {
    char *path, *tmp;
    FILE *f;
    lseq_info info;
    uint8_t *row;  // one row's bytes
    size_t row_bytes;
};

lseq_writer *lseq_create(const char *path, const lseq_info *info, char *err, size_t errlen) {
    char why[160];
    if (info_check(info, why, sizeof why) != 0) {
        pb_seterr(err, errlen, "%s: %s", path, why);
        return NULL;
    }
    lseq_writer *w = pb_calloc(1, sizeof *w);
    size_t plen = strlen(path);
    w->path = pb_malloc(plen + 1);
    memcpy(w->path, path, plen + 1);
    w->tmp = pb_malloc(plen + 5);
    memcpy(w->tmp, path, plen);
    memcpy(w->tmp + plen, ".tmp", 5);
    w->info = *info;
    w->info.rows = 0;
    w->row_bytes = 8 + (size_t)info->T * (size_t)info->token_bytes;
    w->row = pb_calloc(1, w->row_bytes);
    w->f = fopen(w->tmp, "wb");
    int32_t h[256];
    header_fill(h, &w->info);  // the row count is written again by lseq_finish
    if (!w->f || fwrite(h, sizeof h, 1, w->f) != 1) {
        pb_seterr(err, errlen, "%s: cannot create: %s", w->tmp, strerror(errno));
        lseq_abort(w);
        return NULL;
    }
    return w;
}

int lseq_append(lseq_writer *w, const int32_t *tokens, int len, int label, char *err,
                size_t errlen) {
    const lseq_info *in = &w->info;
    if (len < 1 || len > in->T) {
        pb_seterr(err, errlen, "%s: row %llu has %d tokens (must be 1 .. %d)", w->path,
                  (unsigned long long)in->rows, len, in->T);
        return -1;
    }
    if (label < 0 || label >= in->num_classes) {
        pb_seterr(err, errlen, "%s: row %llu has label %d (must be 0 .. %d)", w->path,
                  (unsigned long long)in->rows, label, in->num_classes - 1);
        return -1;
    }
    int32_t head[2] = {len, label};
    memcpy(w->row, head, 8);
    memset(w->row + 8, 0, w->row_bytes - 8);
    for (int t = 0; t < len; t++) {
        if (tokens[t] < 0 || tokens[t] >= in->vocab_size) {
            pb_seterr(err, errlen, "%s: row %llu: token %d at position %d is outside the vocabulary (%d)",
                      w->path, (unsigned long long)in->rows, tokens[t], t, in->vocab_size);
            return -1;
        }
        if (in->token_bytes == 1)
            w->row[8 + t] = (uint8_t)tokens[t];
        else {
            uint16_t v = (uint16_t)tokens[t];
            memcpy(w->row + 8 + 2 * (size_t)t, &v, 2);
        }
    }
    if (fwrite(w->row, w->row_bytes, 1, w->f) != 1) {
        pb_seterr(err, errlen, "%s: write failed: %s", w->tmp, strerror(errno));
        return -1;
    }
    w->info.rows++;
    return 0;
}

static void writer_free(lseq_writer *w) {
    free(w->path);
    free(w->tmp);
    free(w->row);
    free(w);
}

int lseq_finish(lseq_writer *w, char *err, size_t errlen) {
    int32_t h[256];
    header_fill(h, &w->info);
    const char *what = NULL;
    if (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, sizeof h, 1, w->f) != 1 ||
        fflush(w->f) != 0)
        what = "write";
    else if (fsync(fileno(w->f)) != 0)
        what = "fsync";
    int saved = errno;
    if (fclose(w->f) != 0 && !what) {
        what = "close";
        saved = errno;
    }
    w->f = NULL;
    if (!what && rename(w->tmp, w->path) != 0) {
        what = "rename";
        saved = errno;
    }
    if (what) {
        pb_seterr(err, errlen, "%s: %s failed: %s", w->tmp, what, strerror(saved));
        unlink(w->tmp);
        writer_free(w);
        return -1;
    }
    pb_fsync_parent_dir(w->path);
    writer_free(w);
    return 0;
}

void lseq_abort(lseq_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    writer_free(w);
}

// ---------------------------------------------------------------------------------------
// reading

static int open_fail(lseq_file *f, int fd, char *err, size_t errlen, const char *fmt,
                     const char *path, const char *why) {
    pb_seterr(err, errlen, fmt, path, why);
    if (fd >= 0) close(fd);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
    return -1;
}

int lseq_open(lseq_file *f, const char *path, int vocab_size, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return open_fail(f, -1, err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return open_fail(f, fd, err, errlen, "%s: %s", path, "not a regular file");
    uint64_t size = (uint64_t)st.st_size;
    int32_t h[256];
    if (size < LSEQ_HEADER_BYTES || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        return open_fail(f, fd, err, errlen, "%s: %s", path, "truncated header");
    if (h[0] != LSEQ_MAGIC)
        return open_fail(f, fd, err, errlen, "%s: %s", path,
                         "bad magic (not a labelled-sequence file; a token shard is read by train.task = lm or mlm)");
    if (h[1] != LSEQ_VERSION)
        return open_fail(f, fd, err, errlen, "%s: %s", path, "unsupported version");
    lseq_info in = {(uint64_t)(uint32_t)h[2] | (uint64_t)(uint32_t)h[3] << 31, h[4], h[5], h[6],
                    h[7]};
    char why[200];
    if (h[2] < 0 || h[3] < 0 || info_check(&in, why, sizeof why) != 0)
        return open_fail(f, fd, err, errlen, "%s: header: %s", path,
                         h[2] < 0 || h[3] < 0 ? "negative row count" : why);
    size_t row_bytes = 8 + (size_t)in.T * (size_t)in.token_bytes;
    if ((size - LSEQ_HEADER_BYTES) / row_bytes != in.rows ||
        (size - LSEQ_HEADER_BYTES) % row_bytes != 0) {
        snprintf(why, sizeof why, "the header says %llu rows of %zu bytes but the file holds %llu bytes after it",
                 (unsigned long long)in.rows, row_bytes, (unsigned long long)(size - LSEQ_HEADER_BYTES));
        return open_fail(f, fd, err, errlen, "%s: %s", path, why);
    }
    if (in.rows == 0) return open_fail(f, fd, err, errlen, "%s: %s", path, "no rows");
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return open_fail(f, fd, err, errlen, "%s: mmap failed: %s", path, strerror(errno));
    close(fd);
    f->map = map;
    f->map_len = (size_t)size;
    f->info = in;
    f->rows = (const uint8_t *)map + LSEQ_HEADER_BYTES;
    f->row_bytes = row_bytes;
    int limit = vocab_size > 0 && vocab_size < in.vocab_size ? vocab_size : in.vocab_size;
    int32_t *tok = pb_malloc((size_t)in.T * sizeof(int32_t));
    for (uint64_t i = 0; i < in.rows; i++) {
        int label, len = lseq_row(f, i, tok, &label);
        why[0] = 0;
        if (len < 1 || len > in.T)
            snprintf(why, sizeof why, "row %llu has length %d (must be 1 .. %d)",
                     (unsigned long long)i, len, in.T);
        else if (label < 0 || label >= in.num_classes)
            snprintf(why, sizeof why, "row %llu has label %d (the header says %d classes)",
                     (unsigned long long)i, label, in.num_classes);
        else
            for (int t = 0; t < in.T && !why[0]; t++) {
                if (t >= len && tok[t] != 0)
                    snprintf(why, sizeof why, "row %llu: padding at position %d is not 0",
                             (unsigned long long)i, t);
                else if (tok[t] >= limit)
                    snprintf(why, sizeof why,
                             "row %llu: token %d at position %d is outside the vocabulary (%d)",
                             (unsigned long long)i, tok[t], t, limit);
            }
        if (why[0]) {
            free(tok);
            return open_fail(f, -1, err, errlen, "%s: %s", path, why);
        }
    }
    free(tok);
    return 0;
}

int lseq_row(const lseq_file *f, uint64_t i, int32_t *tokens, int *label) {
    const uint8_t *r = f->rows + i * f->row_bytes;
    int32_t head[2];
    memcpy(head, r, 8);
    int T = f->info.T;
    if (f->info.token_bytes == 1)
        for (int t = 0; t < T; t++) tokens[t] = r[8 + t];
    else
        for (int t = 0; t < T; t++) {
            uint16_t v;
            memcpy(&v, r + 8 + 2 * (size_t)t, 2);
            tokens[t] = v;
        }
    *label = head[1];
    return head[0];
}

void lseq_close(lseq_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}
