// prep.c: `pebble prep`, text files -> GPT-2 or BERT token shards, or TSV files -> labelled
// sequences, tokenized in parallel (see prep.h).
#include "data/prep.h"
#include "data/prep_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/lseq.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "data/wordpiece.h"
#include "kernels/common.h"

// A long document is encoded in pieces of about this size, so that threads can share it.
#define CHUNK_BYTES (256u << 10)
// Units are gathered into batches of this much text, encoded in parallel, then written in
// order; memory stays bounded whatever the corpus size.
#define BATCH_BYTES (32u << 20)
#define BATCH_UNITS 65536

static void usage(FILE *f) {
    fprintf(f,
            "usage: pebble prep --out DIR [options] FILES...\n"
            "       pebble prep --labels --out DIR [options] TRAIN.tsv [VAL.tsv]\n"
            "\n"
            "Tokenizes text files into llm.c token shards: DIR/val_000000.bin (the first\n"
            "documents) and DIR/train_000000.bin, ... With gpt2 each document is preceded by\n"
            "<|endoftext|> (50256); with bert it is cut into pieces [CLS] ... [SEP] (101 ... 102)\n"
            "of at most --seq-len tokens. With --labels, TSV lines \"label<TAB>text\" become\n"
            "labelled sequences DIR/train.lseq (and DIR/val.lseq).\n"
            "\n"
            "  --out DIR           where the output goes (created if missing)\n"
            "  --tokenizer KIND    gpt2 (default: GPT-2's BPE) or bert (bert-base-uncased's\n"
            "                      WordPiece)\n"
            "  --vocab FILE        the tokenizer's file; default for gpt2\n"
            "                      %s (make tokenizer), for bert\n"
            "                      %s (make bert-vocab)\n"
            "  --seq-len T         bert pieces and --labels rows hold at most T tokens (default\n"
            "                      512; longer texts are cut)\n"
            "  --shard-tokens N    tokens per shard (default 100M; K, M, G suffixes)\n"
            "  --val-tokens N      tokens for val: the first documents, until val holds N\n"
            "                      tokens or a tenth of the input (default 1M; 0: no val)\n"
            "  --separator LINE    documents are separated by lines that are exactly LINE\n"
            "                      (default: one document per file)\n"
            "  --labels            TSV input: one row a line, \"label<TAB>text\", labels 0, 1, ...\n"
            "  --header            (--labels) skip each file's first line\n"
            "  --num-classes K     (--labels) labels are below K (default: the largest + 1)\n"
            "  --val-rows N        (--labels, one file) its first N rows go to val.lseq\n"
            "  --force             replace output already in DIR\n"
            "  --binary-ok         encode files with NUL bytes too (refused: they look binary)\n"
            "Bytes that are not valid UTF-8 are encoded one token each with gpt2 and dropped\n"
            "with bert; a note says how many.\n",
            TOK_DEFAULT_PATH, WP_DEFAULT_PATH);
}

// "100M" -> 100000000; positive counts only.
static uint64_t parse_count(const char *flag, const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1000, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1000000, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1000000000, end++;
    if (s[0] < '0' || s[0] > '9' || *end || errno || v > UINT64_MAX / mul)
        pb_die(PB_EXIT_USAGE, "prep: %s wants a count like 100M, not '%s'", flag, s);
    return v * mul;
}

// --- reading documents out of the input files

typedef struct unit {
    const uint8_t *p;  // text to encode
    size_t n;
    int doc_start;  // first unit of a document: <|endoftext|> goes before it
} unit;

typedef struct reader {
    in_file *files;
    int nfiles, fi;      // the file being read
    uint8_t *map;        // its mapping (NULL for an empty file)
    size_t off;          // next byte of it to look at
    const uint8_t *doc;  // the document being cut into chunks, if any
    size_t doc_n, doc_pos;
    const char *sep;
    size_t sep_len;
    size_t (*split_point)(const void *, size_t, size_t);  // the tokenizer's (exact) cut
    uint64_t docs, skipped;
} reader;

int prep_all_space(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r'))) return 0;
    return 1;
}

static void reader_map(reader *r) {
    in_file *f = &r->files[r->fi];
    r->map = NULL;
    r->off = 0;
    if (f->size == 0) {  // one empty document
        r->skipped++;
        return;
    }
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) pb_die(PB_EXIT_RUNTIME, "prep: cannot open %s: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size != f->size)  // mapped past EOF is SIGBUS
        pb_die(PB_EXIT_RUNTIME, "prep: %s changed size while prep was running", f->path);
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        pb_die(PB_EXIT_RUNTIME, "prep: cannot map %s: %s", f->path, strerror(errno));
    madvise(m, f->size, MADV_SEQUENTIAL);
    r->map = m;
}

// The next document of the current file, [*p, *p + *n); 0 when the file is done.
static int next_doc(reader *r, const uint8_t **p, size_t *n) {
    size_t size = r->files[r->fi].size;
    if (r->off >= size) return 0;
    const uint8_t *m = r->map;
    size_t start = r->off;
    if (!r->sep) {
        r->off = size;
    } else {
        // scan line by line for a line that is exactly the separator (with \n or \r\n)
        size_t ls = start;
        for (;;) {
            const uint8_t *nl = memchr(m + ls, '\n', size - ls);
            size_t le = nl ? (size_t)(nl - m) : size, len = le - ls;
            if (len > 0 && m[le - 1] == '\r') len--;
            if (len == r->sep_len && memcmp(m + ls, r->sep, len) == 0) {
                r->off = nl ? le + 1 : size;
                *p = m + start;
                *n = ls - start;
                return 1;
            }
            if (!nl) break;
            ls = le + 1;
        }
        r->off = size;
    }
    *p = m + start;
    *n = size - start;
    return 1;
}

// Mappings of finished files, released once the batch holding their last units is written.
typedef struct unmap_list {
    void **p;
    size_t *len;
    size_t n, cap;
} unmap_list;

static void unmap_add(unmap_list *l, void *p, size_t len) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->p = realloc(l->p, l->cap * sizeof *l->p);
        l->len = realloc(l->len, l->cap * sizeof *l->len);
        if (!l->p || !l->len) pb_die(PB_EXIT_RUNTIME, "prep: out of memory");
    }
    l->p[l->n] = p;
    l->len[l->n++] = len;
}

// The next unit to encode, in input order; 0 at the end of the input.
static int next_unit(reader *r, unit *u, unmap_list *done) {
    for (;;) {
        if (r->doc) {  // the next piece of the current document
            size_t left = r->doc_n - r->doc_pos;
            size_t cut = left > 2 * CHUNK_BYTES
                             ? r->split_point(r->doc + r->doc_pos, left, CHUNK_BYTES)
                             : left;
            u->p = r->doc + r->doc_pos;
            u->n = cut;
            u->doc_start = r->doc_pos == 0;
            r->doc_pos += cut;
            if (r->doc_pos == r->doc_n) r->doc = NULL;
            return 1;
        }
        if (r->fi >= r->nfiles) return 0;
        const uint8_t *p;
        size_t n;
        if (next_doc(r, &p, &n)) {
            if (n == 0 || prep_all_space(p, n)) {
                r->skipped++;
            } else {
                r->docs++;
                r->doc = p;
                r->doc_n = n;
                r->doc_pos = 0;
            }
            continue;
        }
        // this file is done: on to the next
        if (r->map) unmap_add(done, r->map, r->files[r->fi].size);
        r->map = NULL;
        if (++r->fi < r->nfiles) reader_map(r);
    }
}

// --- writing shards

typedef struct writer {
    const char *dir, *prefix;
    uint16_t *buf;
    size_t n, cap, limit;  // tokens buffered, allocated, per shard
    int shards;
    uint64_t total;
} writer;

static void writer_flush(writer *w) {
    if (w->n == 0) return;
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s_%06d.bin", w->dir, w->prefix, w->shards);
    if (shard_write(path, w->buf, w->n, err, sizeof err) != 0)
        pb_die(PB_EXIT_RUNTIME, "prep: %s", err);
    w->shards++;
    w->n = 0;
}

static void writer_push(writer *w, const int32_t *ids, size_t n) {
    while (n > 0) {
        if (w->n == w->cap) {  // grow towards one shard's worth
            size_t cap = w->cap ? 2 * w->cap : 1 << 16;
            if (cap > w->limit) cap = w->limit;
            uint16_t *b = realloc(w->buf, cap * sizeof *b);
            if (!b) pb_die(PB_EXIT_RUNTIME, "prep: out of memory for a shard of %zu tokens", cap);
            w->buf = b;
            w->cap = cap;
        }
        size_t k = w->cap - w->n < n ? w->cap - w->n : n;
        for (size_t i = 0; i < k; i++) {
            PB_ASSERT(ids[i] >= 0 && ids[i] <= UINT16_MAX);
            w->buf[w->n + i] = (uint16_t)ids[i];
        }
        w->n += k;
        w->total += k;
        ids += k;
        n -= k;
        if (w->n == w->limit) writer_flush(w);
    }
}

// --- progress

typedef struct progress {
    int tty;
    double t0, last;
    int last_decile;
} progress;

static void progress_show(progress *pg, uint64_t done, uint64_t total, uint64_t tokens, int final) {
    double now = pb_now(), dt = now - pg->t0;
    double frac = total ? (double)done / (double)total : 1.0;
    if (pg->tty) {
        if (!final && now - pg->last < 0.1) return;
        pg->last = now;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : ' ';
        bar[30] = 0;
        fprintf(stderr, "\rprep [%s] %3d%%  %.1f/%.1f MB  %.1f MB/s  %llu tokens", bar,
                (int)(frac * 100), done / 1e6, total / 1e6, dt > 0 ? done / 1e6 / dt : 0.0,
                (unsigned long long)tokens);
        if (final) fputc('\n', stderr);
        fflush(stderr);
    } else {
        int decile = (int)(frac * 10);
        if (decile <= pg->last_decile || (final && decile < 10)) return;
        pg->last_decile = decile;
        fprintf(stderr, "prep: %d%% (%.1f of %.1f MB, %llu tokens)\n", decile * 10, done / 1e6,
                total / 1e6, (unsigned long long)tokens);
    }
}

// --- checking the input is text

// Bytes of p[0..n) that are not part of a valid UTF-8 sequence (overlong forms, surrogates
// and code points past U+10FFFF are invalid; each byte of a bad sequence counts once), and
// the offset of the first NUL byte (n if none).
static void scan_text(const uint8_t *p, size_t n, uint64_t *invalid, size_t *first_nul) {
    uint64_t bad = 0;
    size_t nul = n;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c == 0 && nul == n) nul = i;
            i++;
            continue;
        }
        // the sequence's length, and the range its second byte must lie in
        int len = 0;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        int ok = len > 0 && i + (size_t)len <= n && p[i + 1] >= lo && p[i + 1] <= hi;
        for (int k = 2; ok && k < len; k++) ok = p[i + k] >= 0x80 && p[i + k] <= 0xbf;
        if (ok) {
            i += (size_t)len;
        } else {
            bad++;
            i++;
        }
    }
    *invalid = bad;
    *first_nul = nul;
}

// A NUL byte means a binary file (text has none; UTF-16 has many): refused unless
// binary_ok. Invalid UTF-8 is encoded byte by byte (GPT-2's BPE has a token per byte), which
// is right for a Latin-1 accent or two and wrong for a whole file: say how much.
static void check_text(const in_file *f, int binary_ok, int bert) {
    if (f->size == 0) return;
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) pb_die(PB_EXIT_RUNTIME, "prep: cannot open %s: %s", f->path, strerror(errno));
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) pb_die(PB_EXIT_RUNTIME, "prep: cannot map %s: %s", f->path, strerror(errno));
    uint64_t bad;
    size_t nul;
    scan_text(m, f->size, &bad, &nul);
    munmap(m, f->size);
    if (nul < f->size && !binary_ok)
        pb_die(PB_EXIT_DATA, "prep: %s looks binary, not text (a NUL byte at offset %zu); pass "
               "--binary-ok to encode it anyway", f->path, nul);
    if (bad)
        fprintf(stderr, "prep: note: %s: %llu of its %zu bytes (%.2f%%) are not valid UTF-8; "
                "%s\n", f->path, (unsigned long long)bad, f->size,
                100.0 * (double)bad / (double)f->size,
                bert ? "BERT's tokenizer drops them" : "each becomes a byte token");
}

// --- the command

static void remove_shards(const char *dir, int force) {
    const char *pats[2] = {"train_*.bin", "val_*.bin"};
    for (int k = 0; k < 2; k++) {
        char pat[4096];
        snprintf(pat, sizeof pat, "%s/%s", dir, pats[k]);
        glob_t g;
        if (glob(pat, 0, NULL, &g) == 0) {
            if (!force)
                pb_die(PB_EXIT_USAGE,
                       "prep: %s already holds shards (%s%s); pass --force to replace them", dir,
                       g.gl_pathv[0], g.gl_pathc > 1 ? ", ..." : "");
            for (size_t i = 0; i < g.gl_pathc; i++)
                if (unlink(g.gl_pathv[i]) != 0)
                    pb_die(PB_EXIT_RUNTIME, "prep: cannot remove %s: %s", g.gl_pathv[i],
                           strerror(errno));
        }
        globfree(&g);
    }
}

// --- the tokenizer, either kind: loaded once, one GPT-2 encoder per thread

void prep_encoder_load(prep_encoder *e, int bert, const char *path) {
    char err[1024];
    e->bert = bert;
    if (bert) {
        e->wp = wp_load(path, err, sizeof err);
        if (!e->wp) pb_die(PB_EXIT_DATA, "prep: %s (make bert-vocab builds it)", err);
        e->vocab_size = wp_vocab_size(e->wp);
        return;
    }
    e->gpt2 = tok_load(path, err, sizeof err);
    if (!e->gpt2) pb_die(PB_EXIT_DATA, "prep: %s (make tokenizer builds it)", err);
    e->vocab_size = tok_vocab_size(e->gpt2);
    int nthreads = omp_get_max_threads();
    e->encs = pb_calloc((size_t)nthreads, sizeof *e->encs);
    for (int t = 0; t < nthreads; t++) e->encs[t] = tok_encoder_new(e->gpt2);
}

// Appends the ids of p[0..n) to out; called from inside an OpenMP parallel region.
void prep_encoder_run(const prep_encoder *e, const uint8_t *p, size_t n, tok_ids *out) {
    if (e->bert)
        wp_encode(e->wp, p, n, out);
    else
        tok_encode(e->encs[omp_get_thread_num()], p, n, 0, out);
}

void prep_encoder_free(prep_encoder *e) {
    if (e->encs)
        for (int t = 0; t < omp_get_max_threads(); t++) tok_encoder_free(e->encs[t]);
    free(e->encs);
    tok_free(e->gpt2);
    wp_free(e->wp);
}

// --- BERT pieces: [CLS] up to T-2 tokens of one document [SEP], never split across shards

typedef struct piece {
    int32_t *buf;  // T tokens
    int T, n;      // n = 0: no piece open
    uint64_t count;
} piece;

static void piece_close(piece *pc, writer *w) {
    if (pc->n == 0) return;
    pc->buf[pc->n++] = WP_SEP;
    if (w->n + (size_t)pc->n > w->limit) writer_flush(w);  // a piece stays in one shard
    writer_push(w, pc->buf, (size_t)pc->n);
    pc->n = 0;
    pc->count++;
}

static void piece_push(piece *pc, writer *w, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (pc->n == 0) pc->buf[pc->n++] = WP_CLS;
        pc->buf[pc->n++] = ids[i];
        if (pc->n == pc->T - 1) piece_close(pc, w);
    }
}

// --- the command's options

static long parse_int(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v < lo || v > hi)
        pb_die(PB_EXIT_USAGE, "prep: %s wants a whole number from %ld to %ld, not '%s'", flag, lo,
               hi, s);
    return v;
}

static void parse_options(int argc, char **argv, prep_options *o) {
    *o = (prep_options){.shard_tokens = 100000000, .val_tokens = 1000000, .seq_len = -1,
                   .num_classes = -1, .val_rows = -1};
    o->files = pb_calloc((size_t)argc, sizeof *o->files);
    int shard_opt = 0;  // an option of token shards only was given
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        // "--flag value" and "--flag=value" both work
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        char name[64];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        static const char *const with_value[] = {
            "--out",   "--shard-tokens", "--val-tokens",  "--separator", "--tokenizer",
            "--vocab", "--seq-len",      "--num-classes", "--val-rows"};
        int takes = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            takes |= !strcmp(name, with_value[k]);
        const char *val = NULL;
        if (takes) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                pb_die(PB_EXIT_USAGE, "prep: %s needs a value (see pebble prep --help)", name);
        } else if (eq) {
            pb_die(PB_EXIT_USAGE, "prep: unknown option '%s' (see pebble prep --help)", a);
        }
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(name, "--out")) {
            o->out = val;
        } else if (!strcmp(name, "--shard-tokens")) {
            o->shard_tokens = parse_count(name, val);
            shard_opt = 1;
        } else if (!strcmp(name, "--val-tokens")) {
            o->val_tokens = parse_count(name, val);
            shard_opt = 1;
        } else if (!strcmp(name, "--separator")) {
            o->sep = val;
            shard_opt = 1;
        } else if (!strcmp(name, "--tokenizer")) {
            if (strcmp(val, "gpt2") && strcmp(val, "bert"))
                pb_die(PB_EXIT_USAGE, "prep: --tokenizer is gpt2 or bert, not '%s' (the file "
                       "goes in --vocab FILE)", val);
            o->bert = !strcmp(val, "bert");
        } else if (!strcmp(name, "--vocab")) {
            o->vocab = val;
        } else if (!strcmp(name, "--seq-len")) {
            o->seq_len = parse_int(name, val, 3, 1 << 20);
        } else if (!strcmp(name, "--num-classes")) {
            o->num_classes = parse_int(name, val, 2, INT32_MAX);
        } else if (!strcmp(name, "--val-rows")) {
            o->val_rows = parse_int(name, val, 0, INT32_MAX);
        } else if (!strcmp(name, "--labels")) {
            o->labels = 1;
        } else if (!strcmp(name, "--header")) {
            o->header = 1;
        } else if (!strcmp(name, "--force")) {
            o->force = 1;
        } else if (!strcmp(name, "--binary-ok")) {
            o->binary_ok = 1;
        } else if (a[0] == '-' && a[1] != 0) {
            pb_die(PB_EXIT_USAGE, "prep: unknown option '%s' (see pebble prep --help)", a);
        } else {
            o->files[o->nfiles++].path = a;
        }
    }
    if (!o->out) pb_die(PB_EXIT_USAGE, "prep: --out DIR is required (see pebble prep --help)");
    if (o->nfiles == 0) pb_die(PB_EXIT_USAGE, "prep: no input files (see pebble prep --help)");
    if (!o->vocab) o->vocab = o->bert ? WP_DEFAULT_PATH : TOK_DEFAULT_PATH;
    if (o->labels) {
        if (shard_opt)
            pb_die(PB_EXIT_USAGE, "prep: --shard-tokens, --val-tokens and --separator are for "
                   "token shards, not --labels");
        if (o->nfiles > 2)
            pb_die(PB_EXIT_USAGE, "prep: --labels takes one TSV file (train) or two (train, val), "
                   "not %d", o->nfiles);
        if (o->nfiles == 2 && o->val_rows >= 0)
            pb_die(PB_EXIT_USAGE, "prep: --val-rows is for one TSV file; the second file is val");
    } else {
        if (o->header || o->num_classes >= 0 || o->val_rows >= 0)
            pb_die(PB_EXIT_USAGE, "prep: --header, --num-classes and --val-rows are for --labels");
        if (!o->bert && o->seq_len >= 0)
            pb_die(PB_EXIT_USAGE, "prep: --seq-len is for --tokenizer bert or --labels (GPT-2 "
                   "shards are one stream)");
    }
    if (o->seq_len < 0) o->seq_len = 512;
    if (o->shard_tokens == 0 || o->shard_tokens > SHARD_MAX_TOKENS)
        pb_die(PB_EXIT_USAGE, "prep: --shard-tokens must be between 1 and %u", SHARD_MAX_TOKENS);
    if (o->bert && !o->labels && o->shard_tokens < (uint64_t)o->seq_len)
        pb_die(PB_EXIT_USAGE, "prep: --shard-tokens (%llu) must hold a whole piece of --seq-len "
               "%ld tokens", (unsigned long long)o->shard_tokens, o->seq_len);
    if (o->sep && (!*o->sep || strchr(o->sep, '\n')))
        pb_die(PB_EXIT_USAGE, "prep: --separator must be a non-empty line without newlines");

    // Check every input before writing anything, so a typo does not leave half a dataset.
    for (int i = 0; i < o->nfiles; i++) {
        struct stat st;
        int fd = open(o->files[i].path, O_RDONLY);
        if (fd < 0 || fstat(fd, &st) != 0)
            pb_die(PB_EXIT_RUNTIME, "prep: cannot read %s: %s", o->files[i].path, strerror(errno));
        close(fd);
        if (!S_ISREG(st.st_mode))
            pb_die(PB_EXIT_USAGE, "prep: %s is not a regular file", o->files[i].path);
        o->files[i].size = (size_t)st.st_size;
    }
    for (int i = 0; i < o->nfiles; i++) check_text(&o->files[i], o->binary_ok, o->bert);
}

// --- token shards

static int prep_shards(const prep_options *o) {
    const char *out = o->out;
    uint64_t total_bytes = 0, val_tokens = o->val_tokens;
    for (int i = 0; i < o->nfiles; i++) total_bytes += o->files[i].size;
    prep_encoder enc = {0};
    prep_encoder_load(&enc, o->bert, o->vocab);
    char err[1024];
    if (pb_make_dirs(out, err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "prep: %s", err);
    remove_shards(out, o->force);

    int nthreads = omp_get_max_threads();
    unit *units = pb_calloc(BATCH_UNITS, sizeof *units);
    tok_ids *ids = pb_calloc(BATCH_UNITS, sizeof *ids);
    unmap_list done_maps = {0};

    reader r = {.files = o->files,
                .nfiles = o->nfiles,
                .fi = 0,
                .sep = o->sep,
                .sep_len = o->sep ? strlen(o->sep) : 0,
                .split_point = o->bert ? wp_split_point : tok_split_point};
    reader_map(&r);
    writer val = {.dir = out, .prefix = "val", .limit = o->shard_tokens};
    writer train = {.dir = out, .prefix = "train", .limit = o->shard_tokens};
    piece pc = {.buf = pb_malloc((size_t)o->seq_len * sizeof(int32_t)), .T = (int)o->seq_len};
    int in_val = val_tokens > 0;
    uint64_t val_bytes = 0, encoded_bytes = 0;
    const int32_t eot = o->bert ? WP_SEP : tok_eot(enc.gpt2);  // (bert: unused)
    progress pg = {.tty = isatty(2), .t0 = pb_now(), .last_decile = 0};

    for (;;) {
        // gather a batch of units, in input order
        size_t nu = 0, bytes = 0;
        int more = 1;
        while (nu < BATCH_UNITS && bytes < BATCH_BYTES) {
            if (!next_unit(&r, &units[nu], &done_maps)) {
                more = 0;
                break;
            }
            bytes += units[nu++].n;
        }
        // encode it in parallel
#pragma omp parallel for schedule(dynamic, 4)
        for (size_t i = 0; i < nu; i++) {
            ids[i].n = 0;
            prep_encoder_run(&enc, units[i].p, units[i].n, &ids[i]);
        }
        // write it in order
        for (size_t i = 0; i < nu; i++) {
            writer *w = in_val ? &val : &train;
            if (o->bert && units[i].doc_start) piece_close(&pc, w);  // the last document's
            // val is a prefix of the corpus: units go to it while it is short of val_tokens
            // and would stay within a tenth of the input bytes; then everything goes to train
            // (with bert, from a document's start, so that no piece is cut)
            if (in_val && (!o->bert || units[i].doc_start) &&
                (val.total >= val_tokens || (val_bytes + units[i].n) * 10 > total_bytes)) {
                writer_flush(&val);
                in_val = 0;
                w = &train;
            }
            if (o->bert) {
                piece_push(&pc, w, ids[i].data, ids[i].n);
            } else {
                if (units[i].doc_start) writer_push(w, &eot, 1);
                writer_push(w, ids[i].data, ids[i].n);
            }
            if (in_val) val_bytes += units[i].n;
            if (ids[i].cap > (1u << 20)) tok_ids_free(&ids[i]);  // keep only small buffers
        }
        if (!more) piece_close(&pc, in_val ? &val : &train);
        for (size_t k = 0; k < done_maps.n; k++) munmap(done_maps.p[k], done_maps.len[k]);
        done_maps.n = 0;
        encoded_bytes += bytes;  // (separator lines and skipped documents are not counted)
        progress_show(&pg, more ? encoded_bytes : total_bytes, total_bytes,
                      val.total + train.total, !more);
        if (!more) break;
    }
    writer_flush(&val);
    writer_flush(&train);
    double dt = pb_now() - pg.t0;
    uint64_t tokens = val.total + train.total;

    if (tokens == 0)
        pb_die(PB_EXIT_DATA, "prep: the input files hold no text (only empty documents)");
    if (val_tokens > 0 && val.total == 0)
        fprintf(stderr,
                "prep: warning: no val shard: the first document alone is over a tenth "
                "of the input\n");
    if (train.total == 0) {
        char path[4096];
        for (int s = 0; s < val.shards; s++) {
            snprintf(path, sizeof path, "%s/val_%06d.bin", out, s);
            unlink(path);
        }
        pb_die(
            PB_EXIT_USAGE,
            "prep: all %llu tokens went to val, none to train; lower --val-tokens (shards removed)",
            (unsigned long long)tokens);
    }
    printf(
        "prep: %d files, %llu documents (%llu empty skipped), %.2f MB -> %llu tokens in %.2f s "
        "(%.1f MB/s, %.2fM tokens/s, %d threads)\n",
        o->nfiles, (unsigned long long)r.docs, (unsigned long long)r.skipped, total_bytes / 1e6,
        (unsigned long long)tokens, dt, dt > 0 ? total_bytes / 1e6 / dt : 0.0,
        dt > 0 ? tokens / 1e6 / dt : 0.0, nthreads);
    if (o->bert)
        printf("prep: bert: %llu pieces [CLS] ... [SEP] of at most %d tokens\n",
               (unsigned long long)pc.count, pc.T);
    if (val.shards)
        printf("prep: val   %llu tokens in %d shard%s: %s/val_000000.bin%s\n",
               (unsigned long long)val.total, val.shards, val.shards > 1 ? "s" : "", out,
               val.shards > 1 ? " ..." : "");
    printf("prep: train %llu tokens in %d shard%s: %s/train_000000.bin%s\n",
           (unsigned long long)train.total, train.shards, train.shards > 1 ? "s" : "", out,
           train.shards > 1 ? " ..." : "");

    for (size_t i = 0; i < BATCH_UNITS; i++) tok_ids_free(&ids[i]);
    free(ids);
    free(units);
    free(val.buf);
    free(train.buf);
    free(pc.buf);
    free(done_maps.p);
    free(done_maps.len);
    prep_encoder_free(&enc);
    return 0;
}

int prep_main(int argc, char **argv) {
    prep_options o;
    parse_options(argc, argv, &o);
    int rc = o.labels ? prep_labels(&o) : prep_shards(&o);
    free(o.files);
    return rc;
}
