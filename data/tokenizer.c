// tokenizer.c: GPT-2 byte-level BPE encode/decode and the tokenizer file builder (see tokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/tokenizer.h"

#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"

#define TOK_MAGIC "PBTOKEN1"
#define TOK_VERSION 1
#define TOK_HEADER_BYTES 32
#define NO_RANK UINT32_MAX

// GPT-2's pre-tokenizer. \s is spelled out as Unicode's White_Space property, which is what
// tiktoken's Rust regex means by \s; PCRE2's own \s (with UCP) also takes U+180E.
#define WS                                                                             \
    "\\t\\n\\x{0b}\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
    "\\x{202f}\\x{205f}\\x{3000}"
static const char TOK_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                  "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

// Subjects handed to PCRE2 are windows of this many bytes (grown when a match reaches the
// window's end), so no call ever looks at more of a long document than it needs. Without JIT
// the interpreter checks the UTF-8 of the whole subject on every call: a small window there.
#define MATCH_WINDOW (64 * 1024)
#define MATCH_WINDOW_NOJIT 512
// Pieces up to this length are BPE-merged by the simple quadratic scan; longer ones (long
// words, runs of spaces) with a heap, so that no input is quadratic.
#define BPE_SMALL_MAX 128
// The merge cache: pieces up to CACHE_MAX_PIECE bytes; emptied when half full.
#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_PIECE 64
#define CACHE_ARENA_BYTES (1u << 20)

// --- hashing and little-endian helpers

// MurmurHash3's finalizer: every input bit reaches the low bits the tables index with.
static uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w);
}

static uint64_t hash_pair(int32_t a, int32_t b) {
    return mix64((uint64_t)(uint32_t)a << 32 | (uint32_t)b);
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static void put_u16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// --- the tokenizer

struct tok_tokenizer {
    int n_tokens, n_merges, eot;
    uint32_t *off;  // (n_tokens+1): token i is bytes[off[i] .. off[i+1])
    uint8_t *bytes;
    int32_t byte_id[256];  // the token of each single byte
    // bytes -> id for every ordinary token (open addressing; UINT64_MAX empty). A slot holds
    // the high 32 bits of the key's hash above the id, so most probes need no memcmp.
    uint64_t *vmap;
    uint32_t vmask;
    // (left id, right id) -> merge rank and merged id (open addressing; key UINT64_MAX empty)
    uint64_t *pkey;
    uint32_t *prank;
    int32_t *pmerged;
    uint32_t pmask;
    pcre2_code *re;
    int jit;
};

typedef struct cache_slot {
    uint64_t h;
    uint32_t koff, ioff;  // key bytes in kbuf, ids in ibuf
    uint16_t klen, nids;  // klen == 0: empty slot
} cache_slot;

struct tok_encoder {
    const tok_tokenizer *t;
    pcre2_match_data *md;
    size_t window, small_max;  // MATCH_WINDOW and BPE_SMALL_MAX unless a test tunes them
    // BPE work arrays, grown to the longest piece seen
    size_t wcap;
    int32_t *w_id, *w_merged, *w_prev, *w_next;
    uint32_t *w_rank, *w_ver;
    struct heap_ent *heap;
    size_t heap_cap;
    // merge cache
    cache_slot *slots;
    uint32_t n_cached;
    uint8_t *kbuf;
    int32_t *ibuf;
    size_t klen, ilen;  // bytes / ids used in the arenas
};

int tok_vocab_size(const tok_tokenizer *t) {
    return t->n_tokens;
}
int tok_eot(const tok_tokenizer *t) {
    return t->eot;
}

const uint8_t *tok_token_bytes(const tok_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->n_tokens) return NULL;
    *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

// The id of the token with bytes p[0..n), whose hash_bytes is h; -1 if none.
static int32_t vocab_find_h(const tok_tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & t->vmask;; i = (i + 1) & t->vmask) {
        uint64_t v = t->vmap[i];
        if (v == UINT64_MAX) return -1;
        int32_t id = (int32_t)(uint32_t)v;
        if ((uint32_t)(v >> 32) == tag && t->off[id + 1] - t->off[id] == n &&
            memcmp(t->bytes + t->off[id], p, n) == 0)
            return id;
    }
}

static int32_t vocab_find(const tok_tokenizer *t, const uint8_t *p, size_t n) {
    return vocab_find_h(t, p, n, hash_bytes(p, n));
}

// Rank of merging (a, b), NO_RANK if they do not merge; *merged gets the result.
static uint32_t pair_find(const tok_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = (uint32_t)hash_pair(a, b) & t->pmask;; i = (i + 1) & t->pmask) {
        if (t->pkey[i] == key) {
            *merged = t->pmerged[i];
            return t->prank[i];
        }
        if (t->pkey[i] == UINT64_MAX) return NO_RANK;
    }
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    free(t->off);
    free(t->bytes);
    free(t->vmap);
    free(t->pkey);
    free(t->prank);
    free(t->pmerged);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

static int compile_regex(tok_tokenizer *t, const char *path, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)TOK_PATTERN, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        pb_seterr(err, errlen, "tokenizer %s: PCRE2 cannot compile the GPT-2 regex at offset %zu: %s",
                path, (size_t)at, (const char *)msg);
        return -1;
    }
    // Without JIT (some platforms lack it) the interpreter gives the same matches, slower.
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

// Reads the whole file; NULL with err set on failure.
static uint8_t *read_file(const char *path, size_t *size, const char *what, char *err,
                          size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pb_seterr(err, errlen, "cannot open %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = pb_malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) pb_die(PB_EXIT_RUNTIME, "out of memory reading %s", path);
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        pb_seterr(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        free(buf);
        return NULL;
    }
    *size = n;
    return buf;
}

tok_tokenizer *tok_load(const char *path, char *err, size_t errlen) {
    size_t size;
    uint8_t *f = read_file(path, &size, "tokenizer", err, errlen);
    if (!f) return NULL;
    tok_tokenizer *t = pb_calloc(1, sizeof *t);
    uint8_t *cat = NULL;  // scratch for the bytes of a merged pair
#define FAIL(...)                          \
    do {                                   \
        pb_seterr(err, errlen, __VA_ARGS__); \
        free(f);                           \
        free(cat);                         \
        tok_free(t);                       \
        return NULL;                       \
    } while (0)
    if (size < TOK_HEADER_BYTES + 8 || memcmp(f, TOK_MAGIC, 8) != 0)
        FAIL(
            "tokenizer %s: not a pebble tokenizer file (bad magic or too short); rebuild it "
            "with make tokenizer",
            path);
    uint32_t version = get_u32(f + 8), n_tokens = get_u32(f + 12), n_merges = get_u32(f + 16);
    uint32_t eot = get_u32(f + 20), total = get_u32(f + 24);
    if (version != TOK_VERSION)
        FAIL(
            "tokenizer %s: format version %u, this pebble reads version %d; rebuild it with "
            "make tokenizer",
            path, version, TOK_VERSION);
    if (n_tokens < 257 || n_tokens > (1u << 20) || n_merges >= n_tokens || eot >= n_tokens)
        FAIL("tokenizer %s: implausible header (%u tokens, %u merges, eot %u)", path, n_tokens,
             n_merges, eot);
    size_t expect = TOK_HEADER_BYTES + 2 * (size_t)n_tokens + total + 8 * (size_t)n_merges + 8;
    if (size != expect)
        FAIL("tokenizer %s: %zu bytes, the header says %zu (truncated or corrupt)", path, size,
             expect);
    if (fnv1a(f, size - 8) != get_u64(f + size - 8))
        FAIL("tokenizer %s: checksum mismatch (corrupt file)", path);

    t->n_tokens = (int)n_tokens;
    t->n_merges = (int)n_merges;
    t->eot = (int)eot;
    t->off = pb_malloc((n_tokens + 1) * sizeof *t->off);
    t->bytes = pb_malloc(total ? total : 1);
    const uint8_t *lens = f + TOK_HEADER_BYTES, *tb = lens + 2 * (size_t)n_tokens;
    uint32_t o = 0;
    for (uint32_t i = 0; i < n_tokens; i++) {
        uint32_t len = (uint32_t)lens[2 * i] | (uint32_t)lens[2 * i + 1] << 8;
        if (len == 0 || len > total - o)
            FAIL("tokenizer %s: token %u has a bad length %u", path, i, len);
        t->off[i] = o;
        o += len;
    }
    t->off[n_tokens] = o;
    if (o != total) FAIL("tokenizer %s: token lengths add up to %u, not %u", path, o, total);
    memcpy(t->bytes, tb, total);

    // bytes -> id, and the token of each single byte
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    t->vmask = pow2_at_least(2 * (size_t)n_tokens) - 1;
    t->vmap = pb_malloc((t->vmask + 1) * sizeof *t->vmap);
    memset(t->vmap, 0xff, (t->vmask + 1) * sizeof *t->vmap);
    for (uint32_t id = 0; id < n_tokens; id++) {
        if (id == eot) continue;  // ordinary text never becomes the special token
        const uint8_t *p = t->bytes + t->off[id];
        size_t n = t->off[id + 1] - t->off[id];
        uint64_t h = hash_bytes(p, n);
        if (vocab_find_h(t, p, n, h) >= 0) FAIL("tokenizer %s: token %u appears twice", path, id);
        uint32_t i = (uint32_t)h & t->vmask;
        while (t->vmap[i] != UINT64_MAX) i = (i + 1) & t->vmask;
        t->vmap[i] = (h >> 32) << 32 | id;
        if (n == 1) t->byte_id[p[0]] = (int32_t)id;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) FAIL("tokenizer %s: no token for the byte 0x%02x", path, b);

    // (left, right) -> rank, merged
    t->pmask = pow2_at_least(4 * (size_t)n_merges) - 1;
    t->pkey = pb_malloc((t->pmask + 1) * sizeof *t->pkey);
    t->prank = pb_malloc((t->pmask + 1) * sizeof *t->prank);
    t->pmerged = pb_malloc((t->pmask + 1) * sizeof *t->pmerged);
    memset(t->pkey, 0xff, (t->pmask + 1) * sizeof *t->pkey);
    const uint8_t *mp = tb + total;
    cat = pb_malloc(2 * 65536);
    for (uint32_t r = 0; r < n_merges; r++) {
        uint32_t a = get_u32(mp + 8 * (size_t)r), b = get_u32(mp + 8 * (size_t)r + 4);
        if (a >= n_tokens || b >= n_tokens || a == eot || b == eot)
            FAIL("tokenizer %s: merge %u has a bad id (%u, %u)", path, r, a, b);
        size_t la = t->off[a + 1] - t->off[a], lb = t->off[b + 1] - t->off[b];
        memcpy(cat, t->bytes + t->off[a], la);
        memcpy(cat + la, t->bytes + t->off[b], lb);
        int32_t merged = vocab_find(t, cat, la + lb), dummy;
        if (merged < 0) FAIL("tokenizer %s: merge %u (%u, %u) makes no token", path, r, a, b);
        if (pair_find(t, (int32_t)a, (int32_t)b, &dummy) != NO_RANK)
            FAIL("tokenizer %s: merge (%u, %u) appears twice", path, a, b);
        uint32_t i = (uint32_t)hash_pair((int32_t)a, (int32_t)b) & t->pmask;
        while (t->pkey[i] != UINT64_MAX) i = (i + 1) & t->pmask;
        t->pkey[i] = (uint64_t)a << 32 | b;
        t->prank[i] = r;
        t->pmerged[i] = merged;
    }
#undef FAIL
    free(f);
    free(cat);
    if (compile_regex(t, path, err, errlen) != 0) {
        tok_free(t);
        return NULL;
    }
    return t;
}

// --- encoding

void tok_ids_free(tok_ids *ids) {
    free(ids->data);
    ids->data = NULL;
    ids->n = ids->cap = 0;
}

static void ids_reserve(tok_ids *ids, size_t extra) {
    if (ids->n + extra <= ids->cap) return;
    size_t cap = ids->cap ? ids->cap : 256;
    while (cap < ids->n + extra) cap *= 2;
    int32_t *d = realloc(ids->data, cap * sizeof *d);
    if (!d) pb_die(PB_EXIT_RUNTIME, "out of memory growing a token array to %zu ids", cap);
    ids->data = d;
    ids->cap = cap;
}

static void ids_push(tok_ids *ids, int32_t id) {
    ids_reserve(ids, 1);
    ids->data[ids->n++] = id;
}

typedef struct heap_ent {
    uint32_t rank;
    int32_t left, right;  // node indices (= the byte offset each node starts at)
    uint32_t lver, rver;  // versions of the two nodes when pushed; stale if either changed
    int32_t merged;
} heap_ent;

tok_encoder *tok_encoder_new(const tok_tokenizer *t) {
    tok_encoder *e = pb_calloc(1, sizeof *e);
    e->t = t;
    e->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!e->md) pb_die(PB_EXIT_RUNTIME, "out of memory creating PCRE2 match data");
    e->window = t->jit ? MATCH_WINDOW : MATCH_WINDOW_NOJIT;
    e->small_max = BPE_SMALL_MAX;
    e->slots = pb_calloc(CACHE_SLOTS, sizeof *e->slots);
    e->kbuf = pb_malloc(CACHE_ARENA_BYTES);
    e->ibuf = pb_malloc(CACHE_ARENA_BYTES);
    return e;
}

void tok_encoder_free(tok_encoder *e) {
    if (!e) return;
    pcre2_match_data_free(e->md);
    free(e->w_id);
    free(e->w_merged);
    free(e->w_prev);
    free(e->w_next);
    free(e->w_rank);
    free(e->w_ver);
    free(e->heap);
    free(e->slots);
    free(e->kbuf);
    free(e->ibuf);
    free(e);
}

static void work_reserve(tok_encoder *e, size_t m) {
    if (m <= e->wcap) return;
    size_t c = e->wcap ? e->wcap : 64;
    while (c < m) c *= 2;
    free(e->w_id);
    free(e->w_merged);
    free(e->w_prev);
    free(e->w_next);
    free(e->w_rank);
    free(e->w_ver);
    e->w_id = pb_malloc(c * sizeof *e->w_id);
    e->w_merged = pb_malloc(c * sizeof *e->w_merged);
    e->w_prev = pb_malloc(c * sizeof *e->w_prev);
    e->w_next = pb_malloc(c * sizeof *e->w_next);
    e->w_rank = pb_malloc(c * sizeof *e->w_rank);
    e->w_ver = pb_malloc(c * sizeof *e->w_ver);
    e->wcap = c;
}

// BPE of p[0..m) by scanning for the lowest-ranked adjacent pair, O(m^2): fast for the
// short pieces that are nearly all of them. Leaves the ids in e->w_id; returns their count.
static size_t bpe_small(tok_encoder *e, const uint8_t *p, size_t m) {
    const tok_tokenizer *t = e->t;
    work_reserve(e, m);
    int32_t *id = e->w_id, *mg = e->w_merged;
    uint32_t *rk = e->w_rank;  // rk[i], mg[i]: the pair (id[i], id[i+1])
    for (size_t i = 0; i < m; i++) id[i] = t->byte_id[p[i]];
    for (size_t i = 0; i + 1 < m; i++) rk[i] = pair_find(t, id[i], id[i + 1], &mg[i]);
    size_t n = m;
    while (n > 1) {
        uint32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < best) best = rk[i], bi = i;  // strict <: leftmost of equal ranks
        if (best == NO_RANK) break;
        id[bi] = mg[bi];
        // drop element bi+1 and the pair (bi+1, bi+2)
        memmove(id + bi + 1, id + bi + 2, (n - bi - 2) * sizeof *id);
        if (n >= bi + 3) {
            memmove(rk + bi + 1, rk + bi + 2, (n - bi - 3) * sizeof *rk);
            memmove(mg + bi + 1, mg + bi + 2, (n - bi - 3) * sizeof *mg);
        }
        n--;
        if (bi > 0) rk[bi - 1] = pair_find(t, id[bi - 1], id[bi], &mg[bi - 1]);
        if (bi + 1 < n) rk[bi] = pair_find(t, id[bi], id[bi + 1], &mg[bi]);
    }
    return n;
}

static int heap_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(tok_encoder *e, size_t *n, heap_ent x) {
    if (*n == e->heap_cap) {
        e->heap_cap = e->heap_cap ? 2 * e->heap_cap : 256;
        heap_ent *h = realloc(e->heap, e->heap_cap * sizeof *h);
        if (!h) pb_die(PB_EXIT_RUNTIME, "out of memory in BPE");
        e->heap = h;
    }
    heap_ent *h = e->heap;
    size_t i = (*n)++;
    while (i > 0 && heap_less(&x, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static heap_ent heap_pop(tok_encoder *e, size_t *n) {
    heap_ent *h = e->heap, top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = x;
    return top;
}

static void heap_push_pair(tok_encoder *e, size_t *hn, int32_t l, int32_t r) {
    heap_ent x = {0, l, r, e->w_ver[l], e->w_ver[r], 0};
    x.rank = pair_find(e->t, e->w_id[l], e->w_id[r], &x.merged);
    if (x.rank != NO_RANK) heap_push(e, hn, x);
}

// The same merges as bpe_small, in O(m log m): a linked list of parts and a heap of candidate
// pairs ordered by (rank, position), skipping entries made stale by earlier merges. Leaves
// the ids in e->w_id[0..count); returns count.
static size_t bpe_heap(tok_encoder *e, const uint8_t *p, size_t m) {
    const tok_tokenizer *t = e->t;
    work_reserve(e, m);
    int32_t *id = e->w_id, *prev = e->w_prev, *next = e->w_next;
    uint32_t *ver = e->w_ver;
    for (size_t i = 0; i < m; i++) {
        id[i] = t->byte_id[p[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
        ver[i] = 0;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < m; i++) heap_push_pair(e, &hn, (int32_t)i, (int32_t)i + 1);
    while (hn > 0) {
        heap_ent x = heap_pop(e, &hn);
        if (ver[x.left] != x.lver || ver[x.right] != x.rver || next[x.left] != x.right) continue;
        int32_t l = x.left, r = x.right;
        id[l] = x.merged;
        ver[l]++;
        ver[r]++;  // r is gone
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        if (prev[l] >= 0) heap_push_pair(e, &hn, prev[l], l);
        if (next[l] >= 0) heap_push_pair(e, &hn, l, next[l]);
    }
    size_t n = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) id[n++] = id[i];  // compact in order; n <= i
    return n;
}

static size_t bpe(tok_encoder *e, const uint8_t *p, size_t m) {
    return m <= e->small_max ? bpe_small(e, p, m) : bpe_heap(e, p, m);
}

void tok_encoder_tune(tok_encoder *e, size_t window, size_t small_max) {
    e->window = window > 0 ? window : 1;
    e->small_max = small_max;
}

static void cache_clear(tok_encoder *e) {
    memset(e->slots, 0, CACHE_SLOTS * sizeof *e->slots);
    e->n_cached = 0;
    e->klen = e->ilen = 0;
}

static void encode_piece(tok_encoder *e, const uint8_t *p, size_t m, tok_ids *out) {
    const tok_tokenizer *t = e->t;
    if (m == 1) {
        ids_push(out, t->byte_id[p[0]]);
        return;
    }
    uint64_t h = hash_bytes(p, m);
    int32_t whole = vocab_find_h(t, p, m, h);  // tiktoken's shortcut: a piece that is a token
    if (whole >= 0) {
        ids_push(out, whole);
        return;
    }
    uint32_t slot = 0;
    if (m <= CACHE_MAX_PIECE) {
        for (slot = (uint32_t)h & (CACHE_SLOTS - 1);; slot = (slot + 1) & (CACHE_SLOTS - 1)) {
            cache_slot *s = &e->slots[slot];
            if (s->klen == 0) break;
            if (s->h == h && s->klen == m && memcmp(e->kbuf + s->koff, p, m) == 0) {
                ids_reserve(out, s->nids);
                memcpy(out->data + out->n, e->ibuf + s->ioff, s->nids * sizeof(int32_t));
                out->n += s->nids;
                return;
            }
        }
    }
    size_t n = bpe(e, p, m);
    ids_reserve(out, n);
    memcpy(out->data + out->n, e->w_id, n * sizeof(int32_t));
    out->n += n;
    if (m <= CACHE_MAX_PIECE) {
        if (e->n_cached >= CACHE_SLOTS / 2 || e->klen + m > CACHE_ARENA_BYTES ||
            (e->ilen + n) * sizeof(int32_t) > CACHE_ARENA_BYTES) {
            cache_clear(e);  // crude but rare: the text has moved on to other words
            slot = (uint32_t)h & (CACHE_SLOTS - 1);
        }
        cache_slot *s = &e->slots[slot];
        s->h = h;
        s->koff = (uint32_t)e->klen;
        s->ioff = (uint32_t)e->ilen;
        s->klen = (uint16_t)m;
        s->nids = (uint16_t)n;
        memcpy(e->kbuf + e->klen, p, m);
        memcpy(e->ibuf + e->ilen, e->w_id, n * sizeof(int32_t));
        e->klen += m;
        e->ilen += n;
        e->n_cached++;
    }
}

// Offsets of the next regex match in s[0..len): 1 if found, 0 if none (all invalid UTF-8).
static int re_next(tok_encoder *e, const uint8_t *s, size_t len, size_t *ms, size_t *me) {
    const tok_tokenizer *t = e->t;
    int rc = t->jit ? pcre2_jit_match(t->re, s, len, 0, 0, e->md, NULL)
                    : pcre2_match(t->re, s, len, 0, 0, e->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        pb_die(PB_EXIT_RUNTIME, "tokenizer: regex match failed: %s", (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *ms = ov[0];
    *me = ov[1];
    PB_ASSERT(*me > *ms && *me <= len);
    return 1;
}

static void encode_ordinary(tok_encoder *e, const uint8_t *s, size_t n, tok_ids *out) {
    size_t pos = 0;
    while (pos < n) {
        // The window ends before a byte that starts a character (or is invalid), so it never
        // cuts a valid character.
        size_t win = e->window, wend, ms, me;
        int found;
        for (;;) {
            wend = n - pos > win ? pos + win : n;
            while (wend < n && (s[wend] & 0xC0) == 0x80) wend++;
            found = re_next(e, s + pos, wend - pos, &ms, &me);
            // A match or an invalid run that reaches the window's end may go on past it; and
            // a match that ends just before it may be a short one standing in for a contraction
            // cut by the window ("'" of "'ve"), so a few bytes must follow it.
            if (wend == n || (found && pos + me + 3 <= wend)) break;
            win *= 2;
        }
        if (!found) ms = me = n - pos;                  // the rest of the text is invalid UTF-8
        if (ms > 0) encode_piece(e, s + pos, ms, out);  // bytes the regex skipped: invalid
        if (me > ms) encode_piece(e, s + pos + ms, me - ms, out);
        pos += me;
    }
}

void tok_encode(tok_encoder *e, const void *text, size_t len, int flags, tok_ids *out) {
    const uint8_t *s = text;
    if (!(flags & TOK_ALLOW_SPECIAL)) {
        encode_ordinary(e, s, len, out);
        return;
    }
    size_t sl = 0;
    const uint8_t *special = tok_token_bytes(e->t, e->t->eot, &sl);
    size_t pos = 0;
    for (;;) {
        const uint8_t *hit = memmem(s + pos, len - pos, special, sl);
        size_t end = hit ? (size_t)(hit - s) : len;
        encode_ordinary(e, s + pos, end - pos, out);
        if (!hit) break;
        ids_push(out, e->t->eot);
        pos = end + sl;
    }
}

// --- decoding

int64_t tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, uint8_t *buf, size_t cap) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens) return -1;
        size_t o = t->off[ids[i]], l = t->off[ids[i] + 1] - o;
        if (len < cap) memcpy(buf + len, t->bytes + o, len + l <= cap ? l : cap - len);
        len += l;
    }
    return (int64_t)len;
}

static int is_word_byte(uint8_t c) {
    return c > 0x20 && c < 0x7f;
}

size_t tok_split_point(const void *text, size_t len, size_t target) {
    const uint8_t *s = text;
    for (size_t p = target < 2 ? 2 : target; p < len; p++)
        if (s[p - 1] == '\n' && is_word_byte(s[p - 2]) && is_word_byte(s[p])) return p;
    return len;
}

// --- building the tokenizer file from encoder.json and vocab.bpe

// GPT-2's bytes_to_unicode: printable latin-1 bytes stand for themselves, the other 68
// bytes for the code points 256, 257, ... in byte order, so every token is printable text.
static void byte_unicode_tables(uint32_t b2u[256], int u2b[324]) {
    int n = 0;
    for (int i = 0; i < 324; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        b2u[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        u2b[b2u[b]] = b;
    }
}

// Decodes one UTF-8 character at s[*i] (advancing *i); -1 if invalid.
static int32_t utf8_next(const uint8_t *s, size_t n, size_t *i) {
    uint8_t c = s[*i];
    int len = c < 0x80             ? 1
              : (c & 0xE0) == 0xC0 ? 2
              : (c & 0xF0) == 0xE0 ? 3
              : (c & 0xF8) == 0xF0 ? 4
                                   : 0;
    if (len == 0 || *i + (size_t)len > n) return -1;
    int32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) return -1;
        cp = cp << 6 | (s[*i + k] & 0x3F);
    }
    *i += (size_t)len;
    return cp;
}

typedef struct build_tok {
    uint8_t *bytes;
    size_t len;
    int set;
} build_tok;

// Appends the byte that code point cp stands for; -1 if cp is outside the alphabet.
static int cp_to_byte(const int u2b[324], int32_t cp, uint8_t *out, size_t *n) {
    if (cp < 0 || cp >= 324 || u2b[cp] < 0) return -1;
    out[(*n)++] = (uint8_t)u2b[cp];
    return 0;
}

// Parses encoder.json: one flat object {"token": id, ...} with JSON string escapes.
static build_tok *parse_encoder(const uint8_t *s, size_t n, const int u2b[324], int *n_tokens,
                                int *eot, const char *path, char *err, size_t errlen) {
    size_t i = 0, cap = 65536, count = 0;
    build_tok *toks = pb_calloc(cap, sizeof *toks);
    uint8_t key[4096];
    size_t line = 1;
#define SKIP_WS                                                                    \
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) \
        if (s[i++] == '\n') line++;
#define JFAIL(...)                                                \
    do {                                                          \
        char m_[256];                                             \
        snprintf(m_, sizeof m_, __VA_ARGS__);                     \
        pb_seterr(err, errlen, "%s line %zu: %s", path, line, m_);  \
        for (size_t k_ = 0; k_ < cap; k_++) free(toks[k_].bytes); \
        free(toks);                                               \
        return NULL;                                              \
    } while (0)
    SKIP_WS;
    if (i >= n || s[i++] != '{') JFAIL("expected '{' at the start");
    *eot = -1;
    for (;;) {
        SKIP_WS;
        if (i >= n || s[i++] != '"') JFAIL("expected a string key");
        size_t kn = 0;
        uint8_t raw[4096];  // the key as UTF-8 text (to recognise <|endoftext|>)
        size_t rn = 0;
        while (i < n && s[i] != '"') {
            int32_t cp;
            if (s[i] == '\\') {
                if (i + 1 >= n) JFAIL("unterminated escape");
                uint8_t c = s[i + 1];
                i += 2;
                if (c == 'u') {
                    if (i + 4 > n) JFAIL("short \\u escape");
                    cp = 0;
                    for (int k = 0; k < 4; k++) {
                        uint8_t h = s[i + k];
                        int v = h >= '0' && h <= '9'   ? h - '0'
                                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                       : -1;
                        if (v < 0) JFAIL("bad \\u escape");
                        cp = cp << 4 | v;
                    }
                    i += 4;
                } else {
                    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
                    const char *hit = c ? strchr(from, c) : NULL;
                    if (!hit) JFAIL("bad escape \\%c", c);
                    cp = (uint8_t)to[hit - from];
                }
            } else {
                if (s[i] < 0x20) JFAIL("control character in a string");
                cp = utf8_next(s, n, &i);
                if (cp < 0) JFAIL("invalid UTF-8 in a key");
            }
            if (kn >= sizeof key - 1 || rn >= sizeof raw - 4) JFAIL("key too long");
            if (cp_to_byte(u2b, cp, key, &kn) != 0)
                JFAIL("key has U+%04X, outside GPT-2's byte alphabet", (unsigned)cp);
            raw[rn++] = (uint8_t)(cp < 0x80 ? cp : '?');
        }
        if (i >= n) JFAIL("unterminated string");
        i++;
        SKIP_WS;
        if (i >= n || s[i++] != ':') JFAIL("expected ':'");
        SKIP_WS;
        long id = 0;
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && id < 100000000)
            id = id * 10 + (s[i++] - '0'), digits++;
        if (digits == 0 || id >= 10000000) JFAIL("expected a token id");
        if ((size_t)id >= cap) {
            size_t nc = cap;
            while (nc <= (size_t)id) nc *= 2;
            build_tok *nt = realloc(toks, nc * sizeof *nt);
            if (!nt) pb_die(PB_EXIT_RUNTIME, "out of memory parsing %s", path);
            memset(nt + cap, 0, (nc - cap) * sizeof *nt);
            toks = nt;
            cap = nc;
        }
        if (toks[id].set) JFAIL("id %ld appears twice", id);
        toks[id].bytes = pb_malloc(kn);
        memcpy(toks[id].bytes, key, kn);
        toks[id].len = kn;
        toks[id].set = 1;
        count++;
        if (rn == 13 && memcmp(raw, "<|endoftext|>", 13) == 0) *eot = (int)id;
        SKIP_WS;
        if (i < n && s[i] == ',') {
            i++;
            continue;
        }
        if (i < n && s[i] == '}') break;
        JFAIL("expected ',' or '}'");
    }
    if (count == 0) JFAIL("no tokens");
    for (size_t id = 0; id < count; id++)
        if (!toks[id].set) JFAIL("ids are not 0..%zu: %zu is missing", count - 1, id);
    if (*eot < 0) JFAIL("no <|endoftext|> token");
#undef SKIP_WS
#undef JFAIL
    *n_tokens = (int)count;
    return toks;
}

// A token string of vocab.bpe (UTF-8 in GPT-2's alphabet) to bytes; -1 if not in it.
static int bpe_str_bytes(const uint8_t *s, size_t n, const int u2b[324], uint8_t *out, size_t cap,
                         size_t *on) {
    size_t i = 0;
    *on = 0;
    while (i < n) {
        int32_t cp = utf8_next(s, n, &i);
        if (cp < 0 || *on >= cap || cp_to_byte(u2b, cp, out, on) != 0) return -1;
    }
    return 0;
}

// The lookup table tok_build needs before a tok_tokenizer exists: bytes -> id.
typedef struct build_map {
    int32_t *slot;
    uint32_t mask;
    const build_tok *toks;
} build_map;

static int32_t build_find(const build_map *m, const uint8_t *p, size_t n) {
    for (uint32_t i = (uint32_t)hash_bytes(p, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (m->toks[id].len == n && memcmp(m->toks[id].bytes, p, n) == 0) return id;
    }
}

int tok_build(const char *encoder_json, const char *vocab_bpe, const char *out_path, char *msg,
              size_t msglen) {
    uint32_t b2u[256];
    int u2b[324];
    byte_unicode_tables(b2u, u2b);
    size_t en, vn;
    uint8_t *ej = read_file(encoder_json, &en, "encoder.json", msg, msglen);
    if (!ej) return -1;
    int n_tokens, eot;
    build_tok *toks = parse_encoder(ej, en, u2b, &n_tokens, &eot, encoder_json, msg, msglen);
    free(ej);
    if (!toks) return -1;
    int rc = -1;
    uint8_t *vb = NULL, *file = NULL;
    int32_t(*merges)[2] = NULL;
    build_map map = {0};
    map.toks = toks;
    map.mask = pow2_at_least(2 * (size_t)n_tokens) - 1;
    map.slot = pb_malloc((map.mask + 1) * sizeof *map.slot);
    memset(map.slot, 0xff, (map.mask + 1) * sizeof *map.slot);
    for (int id = 0; id < n_tokens; id++) {
        if (toks[id].len > 65535) {
            pb_seterr(msg, msglen, "%s: token %d is longer than 65535 bytes", encoder_json, id);
            goto done;
        }
        if (id == eot) continue;
        if (build_find(&map, toks[id].bytes, toks[id].len) >= 0) {
            pb_seterr(msg, msglen, "%s: token %d has the same bytes as another", encoder_json, id);
            goto done;
        }
        uint32_t i = (uint32_t)hash_bytes(toks[id].bytes, toks[id].len) & map.mask;
        while (map.slot[i] >= 0) i = (i + 1) & map.mask;
        map.slot[i] = id;
    }

    vb = read_file(vocab_bpe, &vn, "vocab.bpe", msg, msglen);
    if (!vb) goto done;
    merges = pb_malloc((size_t)n_tokens * sizeof *merges);
    int n_merges = 0, off_by_rank = 0;
    size_t line = 0;
    for (size_t i = 0; i < vn;) {
        size_t end = i;
        while (end < vn && vb[end] != '\n') end++;
        line++;
        size_t e2 = end > i && vb[end - 1] == '\r' ? end - 1 : end;
        const uint8_t *l = vb + i;
        size_t ln = e2 - i;
        i = end + 1;
        if (ln == 0 || (line == 1 && l[0] == '#')) continue;
        const uint8_t *sp = memchr(l, ' ', ln);
        uint8_t a[4096], b[4096], cat[8192];
        size_t an, bn;
        if (!sp || memchr(sp + 1, ' ', ln - (size_t)(sp + 1 - l)) ||
            bpe_str_bytes(l, (size_t)(sp - l), u2b, a, sizeof a, &an) != 0 ||
            bpe_str_bytes(sp + 1, ln - (size_t)(sp + 1 - l), u2b, b, sizeof b, &bn) != 0 ||
            an == 0 || bn == 0) {
            pb_seterr(msg, msglen, "%s line %zu: not a merge \"left right\" in GPT-2's alphabet",
                    vocab_bpe, line);
            goto done;
        }
        int32_t ia = build_find(&map, a, an), ib = build_find(&map, b, bn);
        memcpy(cat, a, an);
        memcpy(cat + an, b, bn);
        int32_t im = build_find(&map, cat, an + bn);
        if (ia < 0 || ib < 0 || im < 0) {
            pb_seterr(msg, msglen, "%s line %zu: merge of tokens not in %s", vocab_bpe, line,
                    encoder_json);
            goto done;
        }
        if (n_merges >= n_tokens - 1) {
            pb_seterr(msg, msglen, "%s: more merges than tokens", vocab_bpe);
            goto done;
        }
        if (im != 256 + n_merges) off_by_rank++;
        merges[n_merges][0] = ia;
        merges[n_merges][1] = ib;
        n_merges++;
    }

    // serialise
    size_t total = 0;
    for (int id = 0; id < n_tokens; id++) total += toks[id].len;
    size_t fsize = TOK_HEADER_BYTES + 2 * (size_t)n_tokens + total + 8 * (size_t)n_merges + 8;
    file = pb_calloc(1, fsize);
    memcpy(file, TOK_MAGIC, 8);
    put_u32(file + 8, TOK_VERSION);
    put_u32(file + 12, (uint32_t)n_tokens);
    put_u32(file + 16, (uint32_t)n_merges);
    put_u32(file + 20, (uint32_t)eot);
    put_u32(file + 24, (uint32_t)total);
    put_u32(file + 28, 0);
    uint8_t *p = file + TOK_HEADER_BYTES;
    for (int id = 0; id < n_tokens; id++, p += 2) put_u16(p, (uint32_t)toks[id].len);
    for (int id = 0; id < n_tokens; id++) {
        memcpy(p, toks[id].bytes, toks[id].len);
        p += toks[id].len;
    }
    for (int r = 0; r < n_merges; r++, p += 8) {
        put_u32(p, (uint32_t)merges[r][0]);
        put_u32(p + 4, (uint32_t)merges[r][1]);
    }
    put_u64(p, fnv1a(file, fsize - 8));
    // written under a temporary name and renamed, so a failed build leaves no half file
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        pb_seterr(msg, msglen, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    int bad = fwrite(file, 1, fsize, f) != fsize;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, out_path) != 0) {
        pb_seterr(msg, msglen, "cannot write %s: %s", out_path, strerror(errno));
        remove(tmp);
        goto done;
    }

    // Load it back; check that both BPE paths agree on every token, and count the tokens
    // whose own bytes do not merge back into them (tiktoken's whole-piece shortcut covers those).
    tok_tokenizer *t = tok_load(out_path, msg, msglen);
    if (!t) goto done;
    tok_encoder *e = tok_encoder_new(t);
    int unreachable = 0, disagree = -1;
    int32_t *small = pb_malloc(65536 * sizeof *small);
    for (int id = 0; id < n_tokens; id++) {
        if (id == eot || toks[id].len < 2) continue;
        size_t ns = bpe_small(e, toks[id].bytes, toks[id].len);
        memcpy(small, e->w_id, ns * sizeof *small);
        size_t nh = bpe_heap(e, toks[id].bytes, toks[id].len);
        if (ns != nh || memcmp(small, e->w_id, ns * sizeof *small) != 0) disagree = id;
        if (ns != 1 || small[0] != id) unreachable++;
    }
    free(small);
    tok_encoder_free(e);
    tok_free(t);
    if (disagree >= 0) {
        pb_seterr(msg, msglen, "internal error: the two BPE paths disagree on token %d", disagree);
        remove(out_path);
        goto done;
    }
    pb_seterr(msg, msglen,
            "%d tokens, %d merges, <|endoftext|> = %d, %zu bytes -> %s (%d merged ids not "
            "256+rank; %d tokens not rebuilt by their own merges)",
            n_tokens, n_merges, eot, fsize, out_path, off_by_rank, unreachable);
    rc = 0;
done:
    for (int id = 0; id < n_tokens; id++) free(toks[id].bytes);
    free(toks);
    free(map.slot);
    free(vb);
    free(file);
    free(merges);
    return rc;
}
