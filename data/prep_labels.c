// prep_labels.c: `pebble prep --labels`: TSV files of `label<TAB>text` lines -> labelled
// sequences (data/lseq.h), tokenized in parallel (see prep.h for the format and rules).
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/lseq.h"
#include "data/prep_internal.h"
#include "kernels/common.h"

typedef struct row {
    const uint8_t *text;
    size_t n;
    int label;
    int file;
    size_t line;
} row;

// Reads every row of the TSV files, checks labels and texts, and returns them in file order
// (*nrows of them); *max_label gets the largest label.
static row *read_rows(const prep_options *o, uint8_t **bufs, size_t *nrows, size_t *file_rows,
                      long *max_label) {
    size_t n = 0, cap = 1024;
    row *rows = pb_malloc(cap * sizeof *rows);
    *max_label = -1;
    for (int fi = 0; fi < o->nfiles; fi++) {
        const char *path = o->files[fi].path;
        size_t size = o->files[fi].size;
        uint8_t *b = bufs[fi] = pb_malloc(size + 1);
        FILE *f = pb_fopen(path, "rb");
        if (fread(b, 1, size, f) != size)
            pb_die(PB_EXIT_RUNTIME, "prep: cannot read %s: %s", path, strerror(errno));
        fclose(f);
        size_t line = 0, before = n;
        for (size_t i = 0; i < size;) {
            uint8_t *nl = memchr(b + i, '\n', size - i);
            size_t end = nl ? (size_t)(nl - b) : size, e = end;
            const uint8_t *l = b + i;
            if (e > i && b[e - 1] == '\r') e--;
            size_t len = e - i;
            i = end + 1;
            line++;
            if ((line == 1 && o->header) || len == 0) continue;  // the header; blank lines
            const uint8_t *tab = memchr(l, '\t', len);
            if (!tab)
                pb_die(PB_EXIT_DATA, "prep: %s line %zu: no TAB between a label and a text",
                       path, line);
            long label = 0;
            int ok = tab > l && tab - l <= 9;
            for (const uint8_t *c = l; ok && c < tab; c++) {
                ok = *c >= '0' && *c <= '9';
                label = label * 10 + (*c - '0');
            }
            if (!ok)
                pb_die(PB_EXIT_DATA, "prep: %s line %zu: the label '%.*s' is not a non-negative "
                       "integer below 10^9%s", path, line, (int)(tab - l > 40 ? 40 : tab - l), l,
                       line == 1 ? " (a header line? pass --header)" : "");
            if (o->num_classes >= 0 && label >= o->num_classes)
                pb_die(PB_EXIT_DATA, "prep: %s line %zu: label %ld is not below --num-classes %ld",
                       path, line, label, o->num_classes);
            const uint8_t *text = tab + 1;
            size_t tn = (size_t)(l + len - text);
            if (prep_all_space(text, tn))
                pb_die(PB_EXIT_DATA, "prep: %s line %zu: the text is empty", path, line);
            if (n == cap) {
                cap *= 2;
                rows = realloc(rows, cap * sizeof *rows);
                if (!rows) pb_die(PB_EXIT_RUNTIME, "prep: out of memory for %zu rows", cap);
            }
            rows[n++] = (row){text, tn, (int)label, fi, line};
            if (label > *max_label) *max_label = label;
        }
        file_rows[fi] = n - before;
        if (n == before) pb_die(PB_EXIT_DATA, "prep: %s holds no rows", path);
    }
    *nrows = n;
    return rows;
}

int prep_labels(const prep_options *o) {
    uint8_t *bufs[2] = {0};
    size_t nrows, file_rows[2] = {0};
    long max_label;
    row *rows = read_rows(o, bufs, &nrows, file_rows, &max_label);
    // rows [0, n_val) go to val.lseq, the rest to train.lseq
    size_t n_val = 0, val_first = 0;
    if (o->nfiles == 2) {
        n_val = file_rows[1];
        val_first = file_rows[0];
    } else if (o->val_rows > 0) {
        if ((size_t)o->val_rows >= nrows)
            pb_die(PB_EXIT_USAGE, "prep: --val-rows %ld leaves no row of %s's %zu for train",
                   o->val_rows, o->files[0].path, nrows);
        n_val = (size_t)o->val_rows;
    }
    long classes = o->num_classes >= 0 ? o->num_classes : max_label + 1;
    if (classes < 2)
        pb_die(PB_EXIT_DATA, "prep: every label is 0: one class (pass --num-classes K if the "
               "others are just absent)");

    prep_encoder enc = {0};
    prep_encoder_load(&enc, o->bert, o->vocab);
    char err[1024], train_path[4096], val_path[4096];
    if (pb_make_dirs(o->out, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "prep: %s", err);
    snprintf(train_path, sizeof train_path, "%s/train.lseq", o->out);
    snprintf(val_path, sizeof val_path, "%s/val.lseq", o->out);
    if (!o->force)
        for (int k = 0; k < 2; k++)
            if (access(k ? val_path : train_path, F_OK) == 0)
                pb_die(PB_EXIT_USAGE, "prep: %s already exists; pass --force to replace it",
                       k ? val_path : train_path);
    lseq_info info = {.T = (int)o->seq_len, .token_bytes = 2, .num_classes = (int)classes,
                      .vocab_size = enc.vocab_size};
    lseq_writer *tw = lseq_create(train_path, &info, err, sizeof err), *vw = NULL;
    if (tw && n_val) vw = lseq_create(val_path, &info, err, sizeof err);
    if (!tw || (n_val && !vw)) {
        if (tw) lseq_abort(tw);
        pb_die(PB_EXIT_RUNTIME, "prep: %s", err);
    }

    double t0 = pb_now();
    const int T = (int)o->seq_len;
    int32_t *tokens = pb_malloc((size_t)T * sizeof *tokens);
    size_t batch = 65536, truncated = 0;
    tok_ids *ids = pb_calloc(batch, sizeof *ids);
    uint64_t total = 0;
    for (size_t b0 = 0; b0 < nrows; b0 += batch) {
        size_t nb = nrows - b0 < batch ? nrows - b0 : batch;
#pragma omp parallel for schedule(dynamic, 64)
        for (size_t i = 0; i < nb; i++) {
            ids[i].n = 0;
            prep_encoder_run(&enc, rows[b0 + i].text, rows[b0 + i].n, &ids[i]);
        }
        for (size_t i = 0; i < nb; i++) {
            const row *rw = &rows[b0 + i];
            // bert: [CLS] the first T-2 tokens [SEP]; gpt2: the first T tokens
            int len = 0, room = o->bert ? T - 2 : T;
            int keep = ids[i].n > (size_t)room ? room : (int)ids[i].n;
            truncated += ids[i].n > (size_t)room;
            if (o->bert) tokens[len++] = WP_CLS;
            if (keep) memcpy(tokens + len, ids[i].data, (size_t)keep * sizeof *tokens);
            len += keep;
            if (o->bert) tokens[len++] = WP_SEP;
            size_t at = b0 + i;
            int is_val = o->nfiles == 2 ? at >= val_first : at < n_val;
            const char *why = keep == 0 ? "the text has no tokens (nothing left once cleaned)"
                                        : NULL;
            if (!why && lseq_append(is_val ? vw : tw, tokens, len, rw->label, err, sizeof err) != 0)
                why = err;
            if (why) {
                lseq_abort(tw);
                if (vw) lseq_abort(vw);
                pb_die(PB_EXIT_DATA, "prep: %s line %zu: %s", o->files[rw->file].path, rw->line,
                       why);
            }
            total += (uint64_t)len;
        }
    }
    if (vw && lseq_finish(vw, err, sizeof err) != 0) {
        lseq_abort(tw);
        pb_die(PB_EXIT_RUNTIME, "prep: %s", err);
    }
    if (lseq_finish(tw, err, sizeof err) != 0) {
        if (vw) unlink(val_path);
        pb_die(PB_EXIT_RUNTIME, "prep: %s", err);
    }
    if (!n_val && unlink(val_path) == 0)  // --force: a val.lseq of an earlier run is stale
        fprintf(stderr, "prep: removed %s of an earlier run\n", val_path);
    double dt = pb_now() - t0;
    printf("prep: %zu rows, %ld classes, %llu tokens (%zu rows cut to %d tokens) in %.2f s\n",
           nrows, classes, (unsigned long long)total, truncated, T, dt);
    if (n_val) printf("prep: val   %zu rows: %s\n", n_val, val_path);
    printf("prep: train %zu rows: %s\n", nrows - n_val, train_path);

    for (size_t i = 0; i < batch; i++) tok_ids_free(&ids[i]);
    free(ids);
    free(tokens);
    free(rows);
    free(bufs[0]);
    free(bufs[1]);
    prep_encoder_free(&enc);
    return 0;
}

