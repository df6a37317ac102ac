// test_tokenizer.c: GPT-2 BPE tokenizer against js-tiktoken's ids, byte-exact round trips, and
// `pebble prep` (documents, <|endoftext|>, val and train shards).
//
// Needs data/cache/gpt2_tokenizer.bin (`make tokenizer`; PEBBLE_TOKENIZER overrides the path)
// and tests/fixtures/tokenizer_cases.tsv (written by tests/fixtures/gen_tokenizer_fixture.mjs
// with js-tiktoken, an implementation independent of data/tokenizer.c). Run from the
// repository root, as `make test` does.
#include <criterion/criterion.h>
#include <glob.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/prep.h"
#include "data/shard.h"
#include "data/tokenizer.h"

#define FIXTURE "tests/fixtures/tokenizer_cases.tsv"

static tok_tokenizer *T;
static tok_encoder *E;

static void setup(void) {
    const char *path = getenv("PEBBLE_TOKENIZER");
    if (!path) path = TOK_DEFAULT_PATH;
    char err[512] = "";
    T = tok_load(path, err, sizeof err);
    cr_assert_not_null(T, "%s (build it with: make tokenizer)", err);
    E = tok_encoder_new(T);
}

static void teardown(void) {
    tok_encoder_free(E);
    tok_free(T);
}

TestSuite(tokenizer, .init = setup, .fini = teardown);
TestSuite(prep, .init = setup, .fini = teardown);

// --- helpers

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {  // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static tok_ids enc(const void *text, size_t len, int flags) {
    tok_ids ids = {0};
    tok_encode(E, text, len, flags, &ids);
    return ids;
}

// decode(ids) must equal text[0..len) byte for byte
static void assert_round_trip(const tok_ids *ids, const uint8_t *text, size_t len,
                              const char *what) {
    uint8_t *buf = malloc(len + 16);
    int64_t got = tok_decode(T, ids->data, ids->n, buf, len + 16);
    cr_assert_eq(got, (int64_t)len, "%s: decoded %lld bytes, expected %zu", what, (long long)got,
                 len);
    cr_assert(memcmp(buf, text, len) == 0, "%s: decoded bytes differ from the input", what);
    free(buf);
}

static void assert_ids(const tok_ids *got, const int32_t *want, size_t n, const char *what) {
    size_t i = 0;
    while (i < got->n && i < n && got->data[i] == want[i]) i++;
    cr_assert(i == n && got->n == n,
              "%s: ids differ at index %zu (got %zu ids, expected %zu; got %d, expected %d)", what,
              i, got->n, n, i < got->n ? got->data[i] : -1, i < n ? want[i] : -1);
}

// --- ids known from GPT-2 itself

Test(tokenizer, known_gpt2_ids) {
    cr_assert_eq(tok_vocab_size(T), 50257);
    cr_assert_eq(tok_eot(T), 50256);
    tok_ids a = enc("hello world", 11, 0);
    assert_ids(&a, (int32_t[]){31373, 995}, 2, "hello world");
    tok_ids b = enc("Hello World!", 12, 0);
    assert_ids(&b, (int32_t[]){15496, 2159, 0}, 3, "Hello World!");
    tok_ids c = enc("<|endoftext|>", 13, TOK_ALLOW_SPECIAL);
    assert_ids(&c, (int32_t[]){50256}, 1, "special <|endoftext|>");
    tok_ids d = enc("<|endoftext|>", 13, 0);  // ordinary: text, never the special token
    cr_assert_gt(d.n, 1);
    for (size_t i = 0; i < d.n; i++) cr_assert_neq(d.data[i], 50256);
    assert_round_trip(&d, (const uint8_t *)"<|endoftext|>", 13, "ordinary <|endoftext|>");
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_ids_free(&c);
    tok_ids_free(&d);
}

// --- every case of the js-tiktoken fixture

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

Test(tokenizer, fixture_cases_match_js_tiktoken) {
    FILE *f = fopen(FIXTURE, "r");
    cr_assert_not_null(f, "cannot open %s (run the tests from the repository root)", FIXTURE);
    size_t cap = 1 << 20, ncases = 0;
    char *line = malloc(cap);
    uint8_t *bytes = malloc(cap);
    int32_t *want = malloc(cap * sizeof *want);
    tok_encoder *tiny = tok_encoder_new(T);
    tok_encoder_tune(tiny, 3, 0);
    while (fgets(line, (int)cap, f)) {
        size_t ll = strlen(line);
        cr_assert(ll > 0 && line[ll - 1] == '\n', "%s: line too long or unterminated", FIXTURE);
        line[--ll] = 0;
        if (line[0] == '#' || ll == 0) continue;
        char *name = line, *flags = strchr(name, '\t');
        cr_assert_not_null(flags, "%s: bad line %s", FIXTURE, line);
        *flags++ = 0;
        char *hex = strchr(flags, '\t');
        cr_assert_not_null(hex, "%s: bad line for %s", FIXTURE, name);
        *hex++ = 0;
        char *idstr = strchr(hex, '\t');
        cr_assert_not_null(idstr, "%s: bad line for %s", FIXTURE, name);
        *idstr++ = 0;
        size_t hl = strlen(hex), n = hl / 2, nw = 0;
        cr_assert(hl % 2 == 0, "%s: odd hex length for %s", FIXTURE, name);
        for (size_t i = 0; i < n; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            cr_assert(hi >= 0 && lo >= 0, "%s: bad hex for %s", FIXTURE, name);
            bytes[i] = (uint8_t)(hi << 4 | lo);
        }
        for (char *p = idstr, *q; *p; p = q) {
            long v = strtol(p, &q, 10);
            cr_assert(q != p && v >= 0 && v < 50257, "%s: bad id list for %s", FIXTURE, name);
            want[nw++] = (int32_t)v;
        }
        int fl = strcmp(flags, "special") == 0 ? TOK_ALLOW_SPECIAL : 0;
        cr_assert(fl || strcmp(flags, "ordinary") == 0, "%s: bad flags for %s", FIXTURE, name);
        tok_ids got = enc(bytes, n, fl);
        assert_ids(&got, want, nw, name);
        assert_round_trip(&got, bytes, n, name);
        tok_ids_free(&got);
        // again with every piece going through the window regrowth and the heap BPE
        tok_ids tiny_ids = {0};
        tok_encode(tiny, bytes, n, fl, &tiny_ids);
        char what[300];
        snprintf(what, sizeof what, "%s (3-byte window, heap BPE)", name);
        assert_ids(&tiny_ids, want, nw, what);
        tok_ids_free(&tiny_ids);
        ncases++;
    }
    fclose(f);
    tok_encoder_free(tiny);
    free(line);
    free(bytes);
    free(want);
    cr_assert_geq(ncases, 400, "%s has only %zu cases (truncated?)", FIXTURE, ncases);
}

// --- round trips of random bytes, valid UTF-8 or not

// Appends one random UTF-8 character (any plane, no surrogates) to s.
static size_t put_utf8(uint8_t *s, uint32_t cp) {
    if (cp < 0x80) return s[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return s[0] = 0xC0 | cp >> 6, s[1] = 0x80 | (cp & 0x3F), 2;
    if (cp < 0x10000)
        return s[0] = 0xE0 | cp >> 12, s[1] = 0x80 | (cp >> 6 & 0x3F), s[2] = 0x80 | (cp & 0x3F), 3;
    s[0] = 0xF0 | cp >> 18;
    s[1] = 0x80 | (cp >> 12 & 0x3F);
    s[2] = 0x80 | (cp >> 6 & 0x3F);
    s[3] = 0x80 | (cp & 0x3F);
    return 4;
}

static size_t random_text(uint8_t *s, size_t maxlen, int kind) {
    size_t n = rnd() % maxlen, i = 0;
    while (i + 4 < n) {
        uint32_t r = rnd();
        if (kind == 0) {  // uniform bytes
            s[i++] = (uint8_t)r;
        } else if (kind == 1) {  // mostly ASCII text, some stray high bytes
            static const char ascii[] = "aaeeiioo tns'rl\n\n\t  .,!?0123456789ABC'sd<|>";
            s[i++] =
                r % 16 == 0 ? (uint8_t)(0x80 | r >> 8) : (uint8_t)ascii[r % (sizeof ascii - 1)];
        } else {  // random code points of all sizes, with some junk bytes
            uint32_t cp = r % 4 == 0   ? rnd() % 0x80
                          : r % 4 == 1 ? rnd() % 0x800
                          : r % 4 == 2 ? rnd() % 0x10000
                                       : rnd() % 0x110000;
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x20;
            if (rnd() % 10 == 0)
                s[i++] = (uint8_t)rnd();
            else
                i += put_utf8(s + i, cp);
        }
    }
    return i;
}

Test(tokenizer, round_trip_random_bytes) {
    uint8_t s[1200];
    for (int k = 0; k < 3; k++)
        for (int iter = 0; iter < 1500; iter++) {
            size_t n = random_text(s, sizeof s - 8, k);
            for (int fl = 0; fl <= TOK_ALLOW_SPECIAL; fl++) {
                tok_ids ids = enc(s, n, fl);
                char what[64];
                snprintf(what, sizeof what, "random kind %d #%d flags %d", k, iter, fl);
                assert_round_trip(&ids, s, n, what);
                tok_ids_free(&ids);
            }
        }
}

// Pieces longer than the regex window (64 KiB) and than the quadratic BPE limit: the default
// encoder must give the ids of one with a small window, which regrows it many times over.
Test(tokenizer, long_pieces_cross_the_window) {
    size_t n = 200000;
    uint8_t *s = malloc(n + 8);
    tok_encoder *small = tok_encoder_new(T);
    tok_encoder_tune(small, 777, 128);
    for (int k = 0; k < 5; k++) {
        size_t len = 0;
        if (k == 3) s[len++] = 'x';
        while (len < n) {
            uint32_t r = rnd();
            if (k == 0)
                s[len++] = (uint8_t)('a' + r % 26);  // one long word
            else if (k == 1)
                s[len++] = ' ';  // spaces (lookahead)
            else if (k == 2)
                s[len++] = (uint8_t)(0x80 | r % 128);  // one invalid run
            else if (k == 3)
                s[len++] = r % 3 ? ' ' : '\n';  // whitespace run
            else
                len += put_utf8(s + len, 0x4E00 + r % 0x5000);  // CJK, no ASCII at all
        }
        if (k == 1) s[len++] = 'y';
        tok_ids a = enc(s, len, 0), b = {0};
        tok_encode(small, s, len, 0, &b);
        char what[64];
        snprintf(what, sizeof what, "long input kind %d", k);
        assert_ids(&a, b.data, b.n, what);
        assert_round_trip(&a, s, len, what);
        tok_ids_free(&a);
        tok_ids_free(&b);
    }
    tok_encoder_free(small);
    free(s);
}

// --- the cache and the split points give exactly the plain encoding

Test(tokenizer, cache_does_not_change_ids) {
    uint8_t s[600];
    tok_encoder *fresh = NULL;
    for (int iter = 0; iter < 400; iter++) {
        size_t n = random_text(s, sizeof s - 8, iter % 3);
        tok_ids warm = enc(s, n, 0), again = enc(s, n, 0), cold = {0};
        fresh = tok_encoder_new(T);
        tok_encode(fresh, s, n, 0, &cold);
        tok_encoder_free(fresh);
        assert_ids(&again, warm.data, warm.n, "second encoding (cache hits)");
        assert_ids(&cold, warm.data, warm.n, "fresh encoder");
        tok_ids_free(&warm);
        tok_ids_free(&again);
        tok_ids_free(&cold);
    }
}

Test(tokenizer, split_points_are_exact) {
    static const char *frags[] = {"the",  " cat", "\n", "\n\n", "  ",       " ",
                                  "'s",   "x",    "42", ".",    "\xc3\xa9", "\xe3\x80\x80",
                                  "\xff", "\t",   "A",  "\n "};
    uint8_t s[4000];
    int splits = 0;
    for (int iter = 0; iter < 500; iter++) {
        size_t n = 0;
        while (n < sizeof s - 16) {
            const char *f = frags[rnd() % (sizeof frags / sizeof *frags)];
            memcpy(s + n, f, strlen(f));
            n += strlen(f);
        }
        size_t p = tok_split_point(s, n, rnd() % n);
        cr_assert_leq(p, n);
        if (p == n) continue;
        splits++;
        cr_assert(s[p - 1] == '\n');
        tok_ids whole = enc(s, n, TOK_ALLOW_SPECIAL), a = enc(s, p, TOK_ALLOW_SPECIAL),
                b = enc(s + p, n - p, TOK_ALLOW_SPECIAL);
        cr_assert_eq(whole.n, a.n + b.n, "split at %zu changes the token count", p);
        cr_assert(memcmp(whole.data, a.data, a.n * sizeof(int32_t)) == 0 &&
                      memcmp(whole.data + a.n, b.data, b.n * sizeof(int32_t)) == 0,
                  "split at %zu changes the ids", p);
        tok_ids_free(&whole);
        tok_ids_free(&a);
        tok_ids_free(&b);
    }
    cr_assert_gt(splits, 400, "only %d of 500 texts had a split point", splits);
}

// --- decode and load errors

Test(tokenizer, decode_bad_ids_and_short_buffers) {
    uint8_t buf[8];
    cr_assert_eq(tok_decode(T, (int32_t[]){31373, 50257}, 2, buf, sizeof buf), -1);
    cr_assert_eq(tok_decode(T, (int32_t[]){-1}, 1, buf, sizeof buf), -1);
    // "hello world" needs 11 bytes: a short buffer gets the prefix and the full length
    int64_t n = tok_decode(T, (int32_t[]){31373, 995}, 2, buf, 7);
    cr_assert_eq(n, 11);
    cr_assert(memcmp(buf, "hello w", 7) == 0);
    cr_assert_eq(tok_decode(T, (int32_t[]){50256}, 1, buf, sizeof buf), 13);
    size_t len;
    cr_assert_null(tok_token_bytes(T, 50257, &len));
    const uint8_t *b = tok_token_bytes(T, 50256, &len);
    cr_assert(len == 13 && memcmp(b, "<|endoftext|>", 13) == 0);
}

static void write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

Test(tokenizer, load_rejects_bad_files) {
    char err[512];
    cr_assert_null(tok_load("/nonexistent/tok.bin", err, sizeof err));
    cr_assert_not_null(strstr(err, "/nonexistent/tok.bin"), "error does not name the file: %s",
                       err);

    const char *path = getenv("PEBBLE_TOKENIZER");
    if (!path) path = TOK_DEFAULT_PATH;
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static uint8_t data[2 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    char tmp[] = "/tmp/pebble_tok_XXXXXX";
    int fd = mkstemp(tmp);
    cr_assert_geq(fd, 0);

    write_file(tmp, data, n - 100);  // truncated
    cr_assert_null(tok_load(tmp, err, sizeof err));
    cr_assert_not_null(strstr(err, "truncated"), "%s", err);
    data[n / 2] ^= 1;  // one flipped bit
    write_file(tmp, data, n);
    cr_assert_null(tok_load(tmp, err, sizeof err));
    cr_assert_not_null(strstr(err, "checksum"), "%s", err);
    data[n / 2] ^= 1;
    data[0] = 'X';  // not our magic
    write_file(tmp, data, n);
    cr_assert_null(tok_load(tmp, err, sizeof err));
    cr_assert_not_null(strstr(err, "not a pebble tokenizer"), "%s", err);
    data[0] = 'P';
    write_file(tmp, data, n);  // and the repaired copy loads
    tok_tokenizer *t2 = tok_load(tmp, err, sizeof err);
    cr_assert_not_null(t2, "%s", err);
    tok_free(t2);
    remove(tmp);
}

// --- pebble prep: documents, <|endoftext|>, val and train shards

static const char *tok_path(void) {
    const char *p = getenv("PEBBLE_TOKENIZER");
    return p ? p : TOK_DEFAULT_PATH;
}

static void put_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, (const uint8_t *)text, strlen(text));
}

// The tokens of all shards DIR/prefix_*.bin, in order, appended to *out.
static int read_shards(const char *dir, const char *prefix, tok_ids *out) {
    int n = 0;
    for (;; n++) {
        char path[512], err[512];
        snprintf(path, sizeof path, "%s/%s_%06d.bin", dir, prefix, n);
        FILE *f = fopen(path, "rb");
        if (!f) break;
        fclose(f);
        pb_shard s;
        cr_assert_eq(shard_open(&s, path, 50257, err, sizeof err), 0, "%s", err);
        for (size_t i = 0; i < s.n; i++) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 1024;
                out->data = realloc(out->data, out->cap * sizeof *out->data);
            }
            out->data[out->n++] = s.tokens[i];
        }
        shard_close(&s);
    }
    return n;
}

// expected stream: <|endoftext|> then the ordinary encoding of each document
static void expect_doc(tok_ids *want, const char *doc) {
    tok_ids d = enc(doc, strlen(doc), 0);
    if (want->n + d.n + 1 > want->cap) {
        want->cap = 2 * (want->n + d.n + 1);
        want->data = realloc(want->data, want->cap * sizeof *want->data);
    }
    want->data[want->n++] = 50256;
    memcpy(want->data + want->n, d.data, d.n * sizeof *d.data);
    want->n += d.n;
    tok_ids_free(&d);
}

// Removes what the prep tests put in dir: its files, out/ and its files.
static void remove_dir(const char *dir) {
    const char *pats[2] = {"%s/out/*", "%s/*"};
    for (int k = 0; k < 2; k++) {
        char pat[600];
        snprintf(pat, sizeof pat, pats[k], dir);
        glob_t g;
        if (glob(pat, 0, NULL, &g) == 0)
            for (size_t i = 0; i < g.gl_pathc; i++)
                if (remove(g.gl_pathv[i]) != 0) rmdir(g.gl_pathv[i]);
        globfree(&g);
    }
    rmdir(dir);
}

static void run_prep(int argc, const char **argv) {
    fflush(stdout);
    cr_assert_eq(prep_main(argc, (char **)argv), 0);
}

Test(prep, documents_separators_and_eot) {
    char dir[] = "/tmp/pebble_prep_XXXXXX", out[600], a[600], b[600];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    // the third document of a.txt is only whitespace (skipped); b.txt has CRLF lines and
    // a literal <|endoftext|>, which must stay text
    put_text(dir, "a.txt", "one\n%\ntwo  two\n%\n \n\n%\n%not a separator\n% \n");
    put_text(dir, "b.txt", "three\r\n%\r\nfour <|endoftext|> five");
    const char *argv[] = {
        "prep",     "--out", out, "--separator", "%", "--val-tokens", "0", "--vocab",
        tok_path(), a,       b};
    run_prep(11, argv);
    tok_ids got = {0}, want = {0};
    cr_assert_eq(read_shards(out, "val", &got), 0, "a val shard with --val-tokens 0");
    cr_assert_eq(read_shards(out, "train", &got), 1);
    expect_doc(&want, "one\n");
    expect_doc(&want, "two  two\n");
    expect_doc(&want, "%not a separator\n% \n");
    expect_doc(&want, "three\r\n");
    expect_doc(&want, "four <|endoftext|> five");
    assert_ids(&got, want.data, want.n, "prep output");
    size_t eots = 0;
    for (size_t i = 0; i < got.n; i++) eots += got.data[i] == 50256;
    cr_assert_eq(eots, 5, "one <|endoftext|> per document, none from the text");
    tok_ids_free(&got);
    tok_ids_free(&want);
    remove_dir(dir);
}

Test(prep, val_prefix_and_train_shards) {
    char dir[] = "/tmp/pebble_prep_XXXXXX", out[600], a[600];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(a, sizeof a, "%s/a.txt", dir);
    static char text[200000];
    char docs[300][64];
    size_t len = 0;
    for (int d = 0; d < 300; d++) {
        snprintf(docs[d], sizeof docs[d], "Fortune number %d: the %s is %d.\n", d,
                 d % 3 ? "cat" : "dog's dinner", d * 37);
        len += (size_t)sprintf(text + len, "%s%%\n", docs[d]);
    }
    put_text(dir, "a.txt", text);
    const char *argv[] = {"prep",
                          "--out=",
                          "--separator=%",
                          "--val-tokens=50",
                          "--shard-tokens",
                          "1K",
                          "--vocab",
                          tok_path(),
                          a};
    char outflag[700];
    snprintf(outflag, sizeof outflag, "--out=%s", out);
    argv[1] = outflag;
    run_prep(9, argv);

    tok_ids val = {0}, train = {0}, want = {0};
    cr_assert_eq(read_shards(out, "val", &val), 1);
    int ntrain = read_shards(out, "train", &train);
    for (int d = 0; d < 300; d++) expect_doc(&want, docs[d]);
    // val: whole documents from the start until it holds >= 50 tokens
    cr_assert_geq(val.n, 50);
    cr_assert_lt(val.n, 50 + 20, "val took more than the documents it needed: %zu", val.n);
    cr_assert(val.n < want.n && want.data[val.n] == 50256, "val does not end at a document");
    // train: the rest, in shards of exactly 1000 tokens but the last
    cr_assert_eq(val.n + train.n, want.n);
    cr_assert_eq(ntrain, (int)((train.n + 999) / 1000));
    cr_assert(memcmp(val.data, want.data, val.n * sizeof(int32_t)) == 0);
    cr_assert(memcmp(train.data, want.data + val.n, train.n * sizeof(int32_t)) == 0);
    char path[700], err[512];
    pb_shard s;
    snprintf(path, sizeof path, "%s/train_000000.bin", out);
    cr_assert_eq(shard_open(&s, path, 50257, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 1000);
    shard_close(&s);
    tok_ids_free(&val);
    tok_ids_free(&train);
    tok_ids_free(&want);
    remove_dir(dir);
}

static char overwrite_dir[] = "/tmp/pebble_prep_XXXXXX";
static void remove_overwrite_dir(void) {
    remove_dir(overwrite_dir);
}

Test(prep, refuses_to_overwrite_shards, .exit_code = 2) {
    char *dir = overwrite_dir, a[600];
    cr_assert_not_null(mkdtemp(dir));
    atexit(remove_overwrite_dir);  // prep_main exits
    snprintf(a, sizeof a, "%s/a.txt", dir);
    put_text(dir, "a.txt", "hello world\n");
    const char *argv[] = {"prep", "--out", dir, "--val-tokens", "0", "--vocab", tok_path(), a};
    run_prep(8, argv);
    prep_main(8, (char **)argv);  // shards exist now and there is no --force: exit 2
}

Test(prep, rejects_unknown_options, .exit_code = 2) {
    const char *argv[] = {"prep", "--out", "/tmp", "--shards", "3", "x.txt"};
    prep_main(6, (char **)argv);
}

Test(prep, rejects_unreadable_input, .exit_code = 1) {
    const char *argv[] = {"prep", "--out", "/tmp/pebble_prep_none", "/nonexistent/input.txt"};
    prep_main(4, (char **)argv);
}
