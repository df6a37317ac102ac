// prep.h: `pebble prep`: text files -> token shards (llm.c format, data/shard.h), GPT-2 or
// BERT, or TSV files -> labelled sequences (data/lseq.h).
//
//   pebble prep --out DIR [--tokenizer gpt2|bert] [--vocab FILE] [--seq-len T]
//               [--shard-tokens N] [--val-tokens N] [--separator LINE] [--force]
//               [--binary-ok] FILES...
//   pebble prep --labels --out DIR [--tokenizer gpt2|bert] [--vocab FILE] [--seq-len T]
//               [--header] [--num-classes K] [--val-rows N] [--force] TRAIN.tsv [VAL.tsv]
//
// Shards. Each file is one document, or, with --separator, the documents are the stretches
// between lines that are exactly LINE (like the "%" lines of fortune files). Empty and
// all-whitespace documents are skipped. With gpt2 (the default) every document is preceded by
// <|endoftext|> (50256), as llm.c's fineweb.py does, and encoded as ordinary text (a literal
// "<|endoftext|>" inside a document stays text). With bert (data/wordpiece.h) each document
// becomes pieces [CLS] w1 ... [SEP] (101 ... 102) of at most --seq-len T tokens (default 512):
// its ids are cut every T-2 tokens, each cut gets its own [CLS] and [SEP], and a document
// with no ids writes nothing; so a reader takes a piece as the tokens from a 101 to the next
// 102, and no piece spans two shards (a shard may then end up to T-1 tokens short). The first
// documents go to DIR/val_000000.bin while it holds fewer than --val-tokens tokens and they
// keep it within a tenth of the input bytes, so that a small corpus is not swallowed by val
// (a document over 512 KB is encoded in 256 KB pieces cut where that changes no token,
// tok_split_point / wp_split_point; with gpt2 it may be split between val and train, with
// bert never). The rest fill DIR/train_000000.bin, train_000001.bin, ... of --shard-tokens
// tokens each (exactly, with gpt2; the last one shorter). Documents are encoded in parallel
// (OpenMP); the shards are the same for any thread count. A file with a NUL byte looks
// binary and is refused (unless --binary-ok); a note on stderr gives each file's bytes that
// are not valid UTF-8.
//
// Labels. Each line of a TSV file is "label<TAB>text" (label a decimal integer 0 .. 10^9-1,
// the text all after the first TAB; a "\r\n" ending is fine, blank lines are skipped,
// --header skips each file's first line). A row is, with bert, [CLS] text [SEP] cut to T
// tokens ([SEP] kept last); with gpt2, the text's first T tokens. One file: its rows go to
// DIR/train.lseq, but the first --val-rows N to DIR/val.lseq; two files: the first is train,
// the second val. num_classes is --num-classes K (labels must be below it) or the largest
// label + 1 (at least 2). A bad label, an empty text, a line without a TAB is one line naming
// the file and line, exit 3, and nothing written (the files are written under .tmp names
// and renamed at the end).
#ifndef PEBBLE_PREP_H
#define PEBBLE_PREP_H

// argv[0] is "prep". Returns the exit status; bad usage or input exits through pb_die.
int prep_main(int argc, char **argv);

#endif
