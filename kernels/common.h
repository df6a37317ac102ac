// common.h: small helpers every pebble module uses: checked allocation and file IO,
// an assert that is never compiled out, and the fatal-error path.
#ifndef PEBBLE_COMMON_H
#define PEBBLE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// pebble's version, written into logs (and later checkpoints).
#define PEBBLE_VERSION "0.1.0"

// Print one line "pebble: <message>" to stderr and exit(code). Never returns.
void pb_die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

// Exit codes: documented in README.md ("Exit codes").
enum {
    PB_EXIT_OK = 0,
    PB_EXIT_RUNTIME = 1,   // IO error, out of memory, numerical failure
    PB_EXIT_USAGE = 2,     // bad command line, config key or value
    PB_EXIT_DATA = 3,      // bad data file (shard, fixture)
};

// An internal invariant; failing it is a bug in pebble, not bad input.
#define PB_ASSERT(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "pebble: internal error: %s at %s:%d\n", #cond, __FILE__,     \
                    __LINE__);                                                            \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

void *pb_malloc(size_t bytes);           // exits with a clear message on failure
void *pb_calloc(size_t n, size_t size);  // idem, zeroed
// 64-byte aligned (cache lines, AVX); free with free().
void *pb_aligned_alloc(size_t bytes);
FILE *pb_fopen(const char *path, const char *mode);  // exits naming the path on failure

// Writes one formatted line into err (if err is non-NULL): the error-reporting convention of
// every function that returns -1 and lets its caller decide how to die.
void pb_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// mkdir -p path (mode 0755). Returns 0, or -1 with err naming the directory that failed.
int pb_make_dirs(const char *path, char *err, size_t errlen);

// write(2) until all len bytes are out (short writes, EINTR). Returns 0, or -1 with errno.
int pb_write_all(int fd, const void *buf, size_t len);
// fsync the directory holding path, so a file renamed into it survives a crash (best
// effort: some filesystems refuse fsync on directories).
void pb_fsync_parent_dir(const char *path);

// Wall clock in seconds (monotonic).
double pb_now(void);


// --- a small deterministic RNG (xoshiro256**), seeded through splitmix64. Used for weight
// init, data shuffling and sampling: never rand(), so runs repeat to the bit everywhere.
typedef struct pb_rng {
    uint64_t s[4];
} pb_rng;

void pb_rng_seed(pb_rng *r, uint64_t seed);
uint64_t pb_rng_u64(pb_rng *r);
double pb_rng_uniform(pb_rng *r);  // [0, 1), 53 bits
double pb_rng_normal(pb_rng *r);   // N(0, 1), Box-Muller

#endif
