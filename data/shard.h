// shard.h: llm.c token shards: write one atomically, open one (mmap) and validate it.
//
// Layout (little-endian, as llm.c writes it):
//   int32  header[256]   header[0] = 20240520 (magic), header[1] = 1 (version),
//                        header[2] = token count n, the rest zero
//   uint16 tokens[n]
// So a valid shard is exactly 1024 + 2n bytes long, and n fits in an int32.
#ifndef PEBBLE_SHARD_H
#define PEBBLE_SHARD_H

#include <glob.h>
#include <stddef.h>
#include <stdint.h>

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)
#define SHARD_MAX_TOKENS 2147483647u  // header[2] is an int32

// An open shard: `tokens` points into a read-only private mapping of the file.
typedef struct pb_shard {
    const uint16_t *tokens;  // (n,); NULL when n == 0
    size_t n;
    void *map;       // the whole file's mapping, for munmap; NULL when n == 0
    size_t map_len;
} pb_shard;

// Writes tokens (n,) as a shard at `path`: to "<path>.tmp" first, fsync, then rename over
// `path`, so a reader never sees a half-written shard. Returns 0, or -1 with one line in err
// (and no .tmp left behind).
int shard_write(const char *path, const uint16_t *tokens, size_t n, char *err, size_t errlen);

// Opens and validates a shard: header size, magic, version, file size against the header's
// count, and (when vocab_size > 0) every token id < vocab_size. Returns 0 and fills *s, or
// -1 with one line in err naming the path and the problem; *s is then empty and nothing
// needs closing.
int shard_open(pb_shard *s, const char *path, int vocab_size, char *err, size_t errlen);

// Unmaps the shard; safe on an empty or already closed one.
void shard_close(pb_shard *s);

// --- many files: what every loader does with its data pattern.

// The paths matching the glob `pattern`, sorted (so the data's order never depends on the
// directory's). Returns 0 with at least one path in *g (globfree it), or -1 with one line in
// err ("no files match data pattern '...'", or glob's own failure) and nothing to free.
int shard_glob(const char *pattern, glob_t *g, char *err, size_t errlen);

// Every shard matching `pattern`, opened and validated (shard_open), in sorted path order.
typedef struct shard_set {
    pb_shard *shards;  // (n,)
    char **paths;      // (n,) for error messages
    size_t n;
} shard_set;

// Returns 0, or -1 with err from shard_glob or the first shard_open that failed; *set is
// then empty and nothing needs closing.
int shard_set_open(shard_set *set, const char *pattern, int vocab_size, char *err,
                   size_t errlen);
// Closes every shard; safe on an empty or already closed set.
void shard_set_close(shard_set *set);

#endif
