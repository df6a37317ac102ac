// ckpt_files.c: the files of a run directory for the checkpoint module: durable renames,
// the `latest` pointer, keep-last-K pruning, and finding the checkpoint to resume from.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"
#include "train/checkpoint.h"
#include "train/ckpt_h5.h"

// ----------------------------------------------------------------------------
// files and directories

int ck_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    // Some filesystems cannot fsync a directory; the rename is then as durable as it gets.
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP)) rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

// A test hook: PEBBLE_CKPT_TEST_DELAY_US pauses at the two moments a save is most exposed
// (file written but not renamed; renamed but `latest` not updated), so that the kill -9
// test lands there often.
void ck_test_delay(void) {
    const char *s = getenv("PEBBLE_CKPT_TEST_DELAY_US");
    if (s && *s) usleep((useconds_t)strtoul(s, NULL, 10));
}

// "ckpt_<digits>.h5" -> its step; -1 for any other name.
static long long ckpt_step_of(const char *name) {
    if (strncmp(name, "ckpt_", 5) != 0) return -1;
    const char *p = name + 5;
    long long step = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 18) step = step * 10 + (*p++ - '0'), digits++;
    if (digits < 8 || strcmp(p, ".h5") != 0) return -1;
    return step;
}

typedef struct {
    long long step;
    char name[256];
} ck_entry;

static int entry_newer_first(const void *a, const void *b) {
    long long sa = ((const ck_entry *)a)->step, sb = ((const ck_entry *)b)->step;
    return sa < sb ? 1 : sa > sb ? -1 : 0;
}

// The checkpoints in dir, newest first; *n of them. Returns NULL with errno on failure
// (ENOENT: no such directory).
static ck_entry *list_checkpoints(const char *dir, int *n) {
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) return NULL;
    int cap = 16;
    ck_entry *e = pb_malloc((size_t)cap * sizeof *e);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long long step = ckpt_step_of(de->d_name);
        if (step < 0 || strlen(de->d_name) >= sizeof e->name) continue;
        if (*n == cap) {
            cap *= 2;
            ck_entry *grown = realloc(e, (size_t)cap * sizeof *e);
            if (!grown) pb_die(PB_EXIT_RUNTIME, "out of memory");
            e = grown;
        }
        e[*n].step = step;
        snprintf(e[*n].name, sizeof e[*n].name, "%s", de->d_name);
        (*n)++;
    }
    closedir(d);
    qsort(e, (size_t)*n, sizeof *e, entry_newer_first);
    return e;
}

// Temp files of a save that was killed: one writer per run directory, so any found at the
// start of a save are garbage.
void ck_remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[PB_PATH_MAX + 300];
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        int ours = (strncmp(de->d_name, ".ckpt_", 6) == 0 && len > 10 &&
                    strcmp(de->d_name + len - 4, ".tmp") == 0) ||
                   strcmp(de->d_name, "latest.tmp") == 0;
        if (!ours) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

// <dir>/latest <- name, atomically (write latest.tmp, fsync, rename, fsync dir).
int ck_write_latest(ck_ctx *c, const char *dir, const char *name) {
    char tmp[PB_PATH_MAX + 32], dst[PB_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", dir);
    snprintf(dst, sizeof dst, "%s/latest", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        ck_fail(c, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    char line[300];
    int len = snprintf(line, sizeof line, "%s\n", name);
    ssize_t w = write(fd, line, (size_t)len);
    if (w != len || fsync(fd) != 0) {
        int e = w < 0 || w == len ? errno : ENOSPC;  // a short write means the disk is full
        close(fd);
        unlink(tmp);
        ck_fail(c, "cannot write %s: %s", tmp, strerror(e));
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        ck_fail(c, "cannot update %s: %s", dst, strerror(e));
        return -1;
    }
    if (ck_fsync_dir(dir) != 0) {
        ck_fail(c, "cannot sync directory %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

// Deletes all but the newest keep_last - 1 checkpoints older than `step` (the one just
// written makes K). Newer ones (an abandoned branch of the run) are left alone.
void ck_prune(const char *dir, long long step, int keep_last) {
    if (keep_last <= 0) return;
    int n;
    ck_entry *e = list_checkpoints(dir, &n);
    if (!e) return;
    int kept = 0;
    char path[PB_PATH_MAX + 300];
    for (int i = 0; i < n; i++) {
        if (e[i].step >= step) continue;
        if (++kept < keep_last) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        if (unlink(path) != 0)
            fprintf(stderr, "pebble: warning: cannot delete old checkpoint %s: %s\n", path,
                    strerror(errno));
    }
    free(e);
}


// ----------------------------------------------------------------------------
// finding the newest checkpoint

// Cheap validity: a pebble checkpoint with its groups. (Checksums are verified by the load.)
static int looks_valid(const char *path) {
    char ignored[512];
    ck_ctx c = {.path = path, .err = ignored, .errlen = sizeof ignored};
    hid_t f = ck_open_checkpoint(&c, path, NULL, 0);
    if (f < 0) return 0;
    int ok = ck_link_exists(&c, f, "config") == 1 && ck_link_exists(&c, f, "model") == 1 &&
             ck_link_exists(&c, f, "optimizer/m") == 1 && ck_link_exists(&c, f, "optimizer/v") == 1 &&
             ck_link_exists(&c, f, "trainer") == 1;
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

static char *dup_path(const char *s) {
    char *d = strdup(s);
    if (!d) pb_die(PB_EXIT_RUNTIME, "out of memory");
    return d;
}

int ckpt_candidates(const char *dir, char ***out, char *err, size_t errlen) {
    *out = NULL;
    int n;
    ck_entry *e = list_checkpoints(dir, &n);
    if (!e) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: cannot list checkpoints: %s", dir, strerror(errno));
        return -1;
    }
    // `latest` first: after a resume from an older file, newer ones of the abandoned
    // branch may still be in dir, and `latest` names the run's own newest.
    char name[256] = "", path[PB_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *fl = fopen(path, "r");
    if (fl) {
        if (fgets(name, sizeof name, fl)) name[strcspn(name, "\r\n")] = '\0';
        fclose(fl);
    }
    // Only a name listed in dir counts: `latest` never points outside its directory.
    int first = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) first = i;
    char **paths = pb_malloc((size_t)(n ? n : 1) * sizeof *paths);
    int k = 0;
    if (first >= 0) {
        snprintf(path, sizeof path, "%s/%s", dir, e[first].name);
        paths[k++] = dup_path(path);
    }
    for (int i = 0; i < n; i++) {
        if (i == first) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        paths[k++] = dup_path(path);
    }
    free(e);
    *out = paths;
    return n;
}

void ckpt_free_candidates(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

int ckpt_find_latest(const char *dir, char *out, size_t outlen, char *err, size_t errlen) {
    ck_h5_quiet();
    char **paths;
    int n = ckpt_candidates(dir, &paths, err, errlen);
    if (n < 0) return -1;
    int rc = 1;
    for (int i = 0; i < n && rc == 1; i++) {
        if (!looks_valid(paths[i])) continue;
        snprintf(out, outlen, "%s", paths[i]);
        rc = 0;
    }
    ckpt_free_candidates(paths, n);
    return rc;
}

int ckpt_resume_auto(const char *dir, ckpt_try_fn try_load, void *user, FILE *skipped,
                     char *out, size_t outlen, char *err, size_t errlen) {
    char **paths;
    int n = ckpt_candidates(dir, &paths, err, errlen);
    if (n < 0) return -2;
    if (n == 0) return 1;
    char why[1024], newest[1024] = "";
    for (int i = 0; i < n; i++) {
        if (try_load(paths[i], user, why, sizeof why) == 0) {
            snprintf(out, outlen, "%s", paths[i]);
            ckpt_free_candidates(paths, n);
            return 0;
        }
        if (!newest[0]) snprintf(newest, sizeof newest, "%s", why);
        // why names the file: "<path>: <what is wrong>"
        if (skipped) {
            fflush(stdout);
            fprintf(skipped, "pebble: skipping checkpoint %s\n", why);
            fflush(skipped);
        }
    }
    ckpt_free_candidates(paths, n);
    if (skipped)
        snprintf(err, errlen, "--resume auto: no checkpoint in %s loads (%d tried, each "
                 "skipped above)", dir, n);
    else
        snprintf(err, errlen, "--resume auto: no checkpoint in %s loads (%d tried; the "
                 "newest: %s)", dir, n, newest);
    return -1;
}

// A checkpoint whose config reads (its weights are verified whole when they are loaded).
static int try_config(const char *path, void *user, char *err, size_t errlen) {
    (void)user;
    return ckpt_read_config(path, NULL, NULL, err, errlen);
}

int ckpt_pick(const char *arg, FILE *skipped, char *out, size_t outlen, char *err,
              size_t errlen) {
    struct stat sb;
    if (stat(arg, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(out, outlen, "%s", arg);
        return 0;
    }
    int rc = ckpt_resume_auto(arg, try_config, NULL, skipped, out, outlen, err, errlen);
    if (rc == 1) pb_seterr(err, errlen, "no checkpoint in %s", arg);
    if (rc == -1 && strncmp(err, "--resume auto: ", 15) == 0)
        memmove(err, err + 15, strlen(err + 15) + 1);
    return rc == 0 ? 0 : rc == -2 ? PB_EXIT_RUNTIME : PB_EXIT_DATA;
}
