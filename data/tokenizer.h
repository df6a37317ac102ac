// tokenizer.h: GPT-2 byte-level BPE, id for id the "gpt2" encoding of OpenAI's tiktoken.
//
// Encoding a text is three steps:
//   1. split it into pieces with GPT-2's pre-tokenizer regex (PCRE2, UTF + UCP, JIT):
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      where \s is Unicode White_Space, as in tiktoken's Rust regex;
//   2. turn each piece into its bytes, one token per byte to start with;
//   3. repeatedly merge the adjacent pair with the lowest merge rank (GPT-2's vocab.bpe order;
//      leftmost first on ties) until no adjacent pair is a merge.
// A piece that is itself a token becomes that token directly, as in tiktoken.
//
// Bytes that are not valid UTF-8 never match the regex (PCRE2_MATCH_INVALID_UTF makes them
// a barrier): the valid stretches around them are split exactly as if they were separate
// texts, and each maximal run of invalid bytes becomes one piece of its own, BPE-merged like
// any other. tiktoken itself only encodes str (js-tiktoken's TextEncoder would turn such bytes
// into U+FFFD; python tiktoken's private _encode_bytes re-merges everything from the first bad
// byte to the end as one piece, which is quadratic on long inputs), so this rule is ours: it
// keeps every byte in exactly one piece, so decode(encode(x)) == x for any bytes x, and on
// valid UTF-8 it is exactly tiktoken.
//
// \p{L} and \p{N} come from PCRE2's Unicode tables (Debian 12: PCRE2 10.42); characters
// assigned after them could split differently from a newer tiktoken. Checked against
// js-tiktoken on every code point U+0000..U+10FFFF (in context) and on 15 MB of text.
//
// The vocabulary comes from a file made once by `make tokenizer` (see tok_build below).
#ifndef PEBBLE_TOKENIZER_H
#define PEBBLE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define TOK_GPT2_VOCAB 50257  // 256 bytes + 50000 merges + <|endoftext|>
#define TOK_GPT2_EOT 50256    // <|endoftext|>
#define TOK_DEFAULT_PATH "data/cache/gpt2_tokenizer.bin"

// The vocabulary, merges and compiled regex; read-only once loaded, shared by all threads.
typedef struct tok_tokenizer tok_tokenizer;
// Per-thread scratch: the regex match data, BPE work arrays and the merge cache (piece -> ids).
typedef struct tok_encoder tok_encoder;

// A growable array of token ids; tok_encode appends to it. Zero-initialize before first use.
typedef struct tok_ids {
    int32_t *data;
    size_t n, cap;
} tok_ids;
void tok_ids_free(tok_ids *ids);

enum {
    // Encode the text "<|endoftext|>" as the special token 50256. Without it the text is
    // encoded as ordinary text (tiktoken's encode_ordinary), so data cannot forge the token.
    TOK_ALLOW_SPECIAL = 1,
};

// Loads a tokenizer file made by tok_build. Returns NULL with one line in err (naming the
// file and what is wrong) if it is missing, truncated, corrupt or of another version.
tok_tokenizer *tok_load(const char *path, char *err, size_t errlen);
void tok_free(tok_tokenizer *t);
int tok_vocab_size(const tok_tokenizer *t);  // 50257
int tok_eot(const tok_tokenizer *t);         // 50256
// The bytes of one token (the special token's text for <|endoftext|>); NULL if id is out
// of range. Not NUL-terminated.
const uint8_t *tok_token_bytes(const tok_tokenizer *t, int id, size_t *len);

tok_encoder *tok_encoder_new(const tok_tokenizer *t);
void tok_encoder_free(tok_encoder *e);
// Appends the ids of text[0..len) (any bytes) to out.
void tok_encode(tok_encoder *e, const void *text, size_t len, int flags, tok_ids *out);
// For tests: the regex window in bytes (default 64 KiB) and the longest piece merged by the
// quadratic scan rather than the heap (default 128). Tiny values make every path of the
// encoder run on short inputs; the ids must not change.
void tok_encoder_tune(tok_encoder *e, size_t window, size_t small_max);

// Writes the bytes of ids[0..n) into buf (at most cap bytes) and returns how many bytes the
// whole decoding takes, like snprintf: if that is more than cap, buf holds only a prefix.
// Returns -1 if an id is out of range.
int64_t tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, uint8_t *buf, size_t cap);

// A position p >= target (or len) at which text can be cut so that encoding text[0..p) and
// text[p..len) separately gives exactly the ids of encoding the whole: just after a "\n"
// that has a printable, non-space ASCII byte on each side (the regex always ends a piece
// there and starts a new one). Lets one long document be encoded by several threads.
size_t tok_split_point(const void *text, size_t len, size_t target);

// --- building the tokenizer file
//
// File format (all integers little-endian), version 1:
//   char[8]  magic "PBTOKEN1"
//   u32      version (1)
//   u32      n_tokens (50257): ids 0..n_tokens-1
//   u32      n_merges (50000): ranks 0..n_merges-1
//   u32      eot id (50256): the one special token; its bytes are its text
//   u32      total bytes of all tokens
//   u32      reserved (0)
//   u16      length of each token, n_tokens of them
//   u8       the token bytes, concatenated in id order
//   u32[2]   each merge as (left id, right id), in rank order; the merged token is the one
//            whose bytes are left's bytes followed by right's
//   u64      FNV-1a hash of every byte before it
//
// Converts GPT-2's encoder.json (token string -> id, strings in GPT-2's byte-to-unicode
// alphabet) and vocab.bpe (merges, one "left right" per line in rank order) into that file,
// then loads it back and checks it. Returns 0, or -1 with one line in err.
int tok_build(const char *encoder_json, const char *vocab_bpe, const char *out_path, char *err,
              size_t errlen);

#endif
