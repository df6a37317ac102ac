// prep.h: `pebble prep`: text files -> GPT-2 token shards (llm.c format, data/shard.h).
//
//   pebble prep --out DIR [--shard-tokens N] [--val-tokens N] [--separator LINE]
//               [--tokenizer FILE] [--force] [--binary-ok] FILES...
//
// Each file is one document, or, with --separator, the documents are the stretches between
// lines that are exactly LINE (like the "%" lines of fortune files). Empty and all-whitespace
// documents are skipped. Every document is preceded by <|endoftext|> (50256), as llm.c's
// fineweb.py does, and encoded as ordinary text (a literal "<|endoftext|>" inside a document
// stays text). The first documents go to DIR/val_000000.bin while it holds fewer than
// --val-tokens tokens and they keep it within a tenth of the input bytes, so that a small
// corpus is not swallowed by val (a document over 512 KB is encoded in 256 KB pieces cut where
// that changes no token, tok_split_point, and may be split between val and train). The rest fill
// DIR/train_000000.bin, train_000001.bin, ... of exactly --shard-tokens tokens each (the last one
// shorter). Documents are encoded in parallel (OpenMP); the shards are the same for any thread
// count. A file with a NUL byte looks binary and is refused (unless --binary-ok); a note
// on stderr gives each file's bytes that are not valid UTF-8.
#ifndef PEBBLE_PREP_H
#define PEBBLE_PREP_H

// argv[0] is "prep". Returns the exit status; bad usage or input exits through pb_die.
int prep_main(int argc, char **argv);

#endif
