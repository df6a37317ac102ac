// text.c: the inputs of LRA's byte-level Text (IMDB) and Retrieval (AAN) tasks, read from the
// user's copy in the published layouts, and their tokens (lra.h has the vocabulary).
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/lra/lra.h"

int lra_bytes_row(const uint8_t *bytes, size_t n, int32_t *row, int T) {
    // LRA truncates the encoded bytes to max_length; our CLS takes one of the T positions.
    size_t keep = n < (size_t)(T - 1) ? n : (size_t)(T - 1);
    row[0] = LRA_TX_CLS;
    for (size_t i = 0; i < keep; i++) row[1 + i] = LRA_TX_BYTE0 + bytes[i];
    for (int i = 1 + (int)keep; i < T; i++) row[i] = LRA_TX_PAD;
    return 1 + (int)keep;
}

// --- IMDB

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int lra_imdb_list(const char *dir, char ***names, size_t *count, char *err, size_t errlen) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        pb_seterr(err, errlen, "%s: %s (want the aclImdb layout: train/{pos,neg}/*.txt, "
                  "test/{pos,neg}/*.txt)", dir, strerror(errno));
        return -1;
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        // Reviews are N_R.txt; anything else (hidden files, other names) is not one.
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".txt") != 0) continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            pb_seterr(err, errlen, "%s: not a regular file", path);
            closedir(d);
            free_names(v, n);
            return -1;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            v = realloc(v, cap * sizeof *v);
            if (!v) pb_die(PB_EXIT_RUNTIME, "lra: out of memory listing %s", dir);
        }
        v[n] = strdup(e->d_name);
        if (!v[n]) pb_die(PB_EXIT_RUNTIME, "lra: out of memory listing %s", dir);
        n++;
    }
    closedir(d);
    if (n == 0) {
        pb_seterr(err, errlen, "%s: no reviews (*.txt) in it", dir);
        free(v);
        return -1;
    }
    qsort(v, n, sizeof *v, cmp_name);
    *names = v;
    *count = n;
    return 0;
}

// Python's bytes.strip() removes these (tfds reads each review as imdb_f.read().strip()).
static int is_py_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int lra_imdb_review(const char *path, uint8_t **buf, size_t *cap, size_t *off, size_t *len,
                    char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = 0;
    for (;;) {
        if (n == *cap) {
            *cap = *cap ? 2 * *cap : 1 << 16;
            *buf = realloc(*buf, *cap);
            if (!*buf) pb_die(PB_EXIT_RUNTIME, "lra: out of memory reading %s", path);
        }
        size_t got = fread(*buf + n, 1, *cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        pb_seterr(err, errlen, "%s: read error", path);
        return -1;
    }
    size_t a = 0, b = n;
    while (a < b && is_py_space((*buf)[a])) a++;
    while (b > a && is_py_space((*buf)[b - 1])) b--;
    if (a == b) {
        pb_seterr(err, errlen, "%s: an empty review (%zu bytes, %s)", path, n,
                  n ? "all white space" : "the file is empty: an unfinished copy?");
        return -1;
    }
    *off = a;
    *len = b - a;
    return 0;
}

// --- AAN

int lra_aan_parse(const char *line, size_t len, lra_aan_pair *p, char *err, size_t errlen) {
    if (len && line[len - 1] == '\n') len--;
    if (len && line[len - 1] == '\r') len--;  // a file saved with CRLF line ends
    if (len == 0) {
        pb_seterr(err, errlen, "an empty line (want label, id1, id2, text1, text2 separated "
                  "by tabs)");
        return -1;
    }
    // LRA reads the files with use_quote_delim=False: a tab always separates, quotes are text.
    // Fields are (start, length): bytes are bytes, NUL included.
    const char *field[5];
    size_t flen[5];
    int nf = 0;
    for (size_t s = 0;; nf++) {
        const char *tab = memchr(line + s, '\t', len - s);
        size_t e = tab ? (size_t)(tab - line) : len;
        if (nf < 5) field[nf] = line + s, flen[nf] = e - s;
        if (!tab) {
            nf++;
            break;
        }
        s = e + 1;
    }
    if (nf != 5) {
        pb_seterr(err, errlen, "%d column%s; want 5 separated by tabs: label, id1, id2, text1, "
                  "text2 (no header)", nf, nf == 1 ? "" : "s");
        return -1;
    }
    // LRA parses the label as a float (col_defaults tf.float32), so 1 and 1.0 both read as 1.
    char lab[48], *end;
    snprintf(lab, sizeof lab, "%.*s", (int)(flen[0] < 40 ? flen[0] : 40), field[0]);
    errno = 0;
    double v = strtod(lab, &end);
    if (lab[0] < '0' || lab[0] > '9' || *end || errno || strlen(lab) != flen[0] ||
        (v != 0.0 && v != 1.0)) {
        pb_seterr(err, errlen, "label '%s' (want 0 or 1%s)", lab,
                  strcmp(lab, "label") == 0 ? "; a header? LRA's files have none" : "");
        return -1;
    }
    p->label = v == 1.0;
    for (int d = 0; d < 2; d++) {
        p->text[d] = (const uint8_t *)field[3 + d];
        p->len[d] = flen[3 + d];
    }
    return 0;
}

int lra_aan_row(const lra_aan_pair *p, int32_t *row) {
    lra_bytes_row(p->text[0], p->len[0], row, LRA_TEXT_T);
    // document 1's region is whole (padded), so the row's length reaches into document 2
    return LRA_TEXT_T + lra_bytes_row(p->text[1], p->len[1], row + LRA_TEXT_T, LRA_TEXT_T);
}
