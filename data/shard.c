// shard.c: llm.c token shards (see shard.h): atomic write, mmap + validation on open.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"

// The file holds the host's int32/uint16 as they are; llm.c shards are little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pebble's shard reader assumes a little-endian host"
#endif

// ---------------------------------------------------------------------------------------
// writing

int shard_write(const char *path, const uint16_t *tokens, size_t n, char *err, size_t errlen) {
    if (n > SHARD_MAX_TOKENS) {
        pb_seterr(err, errlen, "%s: %zu tokens do not fit one shard (at most %u)", path, n,
               SHARD_MAX_TOKENS);
        return -1;
    }
    size_t plen = strlen(path);
    char *tmp = pb_malloc(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        pb_seterr(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int32_t header[SHARD_HEADER_INTS] = {0};
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = (int32_t)n;
    const char *what = NULL;
    if (pb_write_all(fd, header, sizeof header) != 0 ||
        (n > 0 && pb_write_all(fd, tokens, n * sizeof(uint16_t)) != 0))
        what = "write";
    else if (fsync(fd) != 0)
        what = "fsync";
    int saved = errno;
    if (close(fd) != 0 && !what) {
        what = "close";
        saved = errno;
    }
    if (!what && rename(tmp, path) != 0) {
        what = "rename";
        saved = errno;
    }
    if (what) {
        pb_seterr(err, errlen, "%s: %s failed: %s", tmp, what, strerror(saved));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    pb_fsync_parent_dir(path);
    return 0;
}

// ---------------------------------------------------------------------------------------
// reading

int shard_open(pb_shard *s, const char *path, int vocab_size, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        pb_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pb_seterr(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        pb_seterr(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < SHARD_HEADER_BYTES) {
        pb_seterr(err, errlen, "%s: truncated header (%llu bytes, need %d)", path,
               (unsigned long long)size, SHARD_HEADER_BYTES);
        close(fd);
        return -1;
    }

    int32_t header[SHARD_HEADER_INTS];
    size_t got = 0;
    while (got < sizeof header) {
        ssize_t r = pread(fd, (char *)header + got, sizeof header - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            pb_seterr(err, errlen, "%s: cannot read header: %s", path,
                   r < 0 ? strerror(errno) : "file shrank while reading");
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    if (header[0] != SHARD_MAGIC) {
        pb_seterr(err, errlen, "%s: bad magic %d (expected %d: not an llm.c token shard)", path,
               (int)header[0], SHARD_MAGIC);
        close(fd);
        return -1;
    }
    if (header[1] != SHARD_VERSION) {
        pb_seterr(err, errlen, "%s: unsupported version %d (expected %d)", path, (int)header[1],
               SHARD_VERSION);
        close(fd);
        return -1;
    }
    if (header[2] < 0) {
        pb_seterr(err, errlen, "%s: header says %d tokens (negative)", path, (int)header[2]);
        close(fd);
        return -1;
    }
    uint64_t n = (uint64_t)header[2];
    uint64_t body = size - SHARD_HEADER_BYTES;
    if (body != 2 * n) {
        pb_seterr(err, errlen, "%s: header says %llu tokens but the file holds %llu%s", path,
               (unsigned long long)n, (unsigned long long)(body / 2),
               body % 2 ? " and an odd byte" : "");
        close(fd);
        return -1;
    }
    if (n == 0) {  // a valid, empty shard: nothing to map
        close(fd);
        return 0;
    }

    // Map the whole file (offset 0 is page aligned); the tokens start 1024 bytes in, which
    // keeps them 2-byte aligned.
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);  // the mapping keeps the file alive
    if (map == MAP_FAILED) {
        pb_seterr(err, errlen, "%s: mmap failed: %s", path, strerror(saved));
        return -1;
    }
    const uint16_t *tok = (const uint16_t *)((const char *)map + SHARD_HEADER_BYTES);
    if (vocab_size > 0 && vocab_size <= 65535) {
        uint16_t v = (uint16_t)vocab_size;
        for (uint64_t i = 0; i < n; i++) {
            if (tok[i] >= v) {
                pb_seterr(err, errlen, "%s: token %u at position %llu is out of the vocabulary (%d)",
                       path, (unsigned)tok[i], (unsigned long long)i, vocab_size);
                munmap(map, (size_t)size);
                return -1;
            }
        }
    }
    s->tokens = tok;
    s->n = (size_t)n;
    s->map = map;
    s->map_len = (size_t)size;
    return 0;
}

void shard_close(pb_shard *s) {
    if (!s) return;
    if (s->map) munmap(s->map, s->map_len);
    memset(s, 0, sizeof *s);
}

// ---------------------------------------------------------------------------------------
// sets of shards

int shard_glob(const char *pattern, glob_t *g, char *err, size_t errlen) {
    int rc = glob(pattern, 0, NULL, g);  // glob sorts the paths (no GLOB_NOSORT)
    if (rc == GLOB_NOMATCH || (rc == 0 && g->gl_pathc == 0)) {
        if (rc == 0) globfree(g);
        pb_seterr(err, errlen, "no files match data pattern '%s'", pattern);
        return -1;
    }
    if (rc != 0) {
        pb_seterr(err, errlen, "data pattern '%s': glob failed (%s)", pattern,
                  rc == GLOB_NOSPACE ? "out of memory" : "read error");
        return -1;
    }
    return 0;
}

int shard_set_open(shard_set *set, const char *pattern, int vocab_size, char *err,
                   size_t errlen) {
    memset(set, 0, sizeof *set);
    glob_t g;
    if (shard_glob(pattern, &g, err, errlen) != 0) return -1;
    set->shards = pb_calloc(g.gl_pathc, sizeof *set->shards);
    set->paths = pb_calloc(g.gl_pathc, sizeof *set->paths);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (shard_open(&set->shards[i], g.gl_pathv[i], vocab_size, err, errlen) != 0) {
            globfree(&g);
            shard_set_close(set);
            return -1;
        }
        set->paths[i] = pb_malloc(strlen(g.gl_pathv[i]) + 1);
        strcpy(set->paths[i], g.gl_pathv[i]);
        set->n = i + 1;  // opened so far, for shard_set_close on a later failure
    }
    globfree(&g);
    return 0;
}

void shard_set_close(shard_set *set) {
    if (!set) return;
    for (size_t i = 0; i < set->n; i++) {
        shard_close(&set->shards[i]);
        free(set->paths[i]);
    }
    free(set->shards);
    free(set->paths);
    memset(set, 0, sizeof *set);
}
