// common.c: see common.h.
#define _GNU_SOURCE
#include "kernels/common.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

void pb_die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fputs("pebble: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

void *pb_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) pb_die(PB_EXIT_RUNTIME, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *pb_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) pb_die(PB_EXIT_RUNTIME, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *pb_aligned_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        pb_die(PB_EXIT_RUNTIME, "out of memory allocating %zu bytes", bytes);
    return p;
}

FILE *pb_fopen(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (!f) pb_die(PB_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno));
    return f;
}

double pb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
