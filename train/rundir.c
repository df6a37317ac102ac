// rundir.c: a run directory's guards (see rundir.h): the lock, and a new run never over an
// old one.
#include "train/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"
#include "train/config.h"

// the run directory: one writer at a time, and never a fresh run over an old one

// flock() on <run.dir>/.lock for the whole run (the descriptor stays open until exit; the
// kernel drops the lock when the process ends, however it ends). The file holds the pid of
// the holder, so that a second writer can name it.
void rundir_lock(const char *dir) {
    char path[PB_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) pb_die(PB_EXIT_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            pb_die(PB_EXIT_RUNTIME, "%s: cannot lock: %s", path, strerror(errno));
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        pb_die(PB_EXIT_RUNTIME, "run.dir %s is in use by another pebble run (pid %s holds %s); "
               "wait for it, stop it, or use another run.dir", dir, pid[0] ? pid : "unknown",
               path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        pb_die(PB_EXIT_RUNTIME, "%s: cannot write: %s", path, strerror(errno));
}

// The files a run leaves in its directory: checkpoints, `latest`, the log, config, plot
// (regular files only: a directory of that name is not a run's).
static int run_file(const char *dir, const char *name, int *is_ckpt) {
    char path[PB_PATH_MAX + 300];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *is_ckpt = 0;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    size_t n = strlen(name);
    *is_ckpt = strcmp(name, "latest") == 0 ||
               (strncmp(name, "ckpt_", 5) == 0 && n > 8 && strcmp(name + n - 3, ".h5") == 0);
    return *is_ckpt || strncmp(name, "metrics.jsonl", 13) == 0 ||
           strcmp(name, "config.ini") == 0 || strcmp(name, "loss.png") == 0;
}

// A new run (no --resume) into dir. Checkpoints there belong to another run: refused unless
// force, which moves that run's files into a new dir/archive-N. An earlier run's files
// without checkpoints (a log, a config) are archived the same way without asking: nothing
// is overwritten either way.
void rundir_claim_fresh(const char *dir, int force) {
    DIR *d = opendir(dir);
    if (!d) pb_die(PB_EXIT_RUNTIME, "%s: cannot list: %s", dir, strerror(errno));
    int files = 0, ckpts = 0, is_ckpt;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (run_file(dir, de->d_name, &is_ckpt)) files++, ckpts += is_ckpt;
    closedir(d);
    if (files == 0) return;
    if (ckpts && !force)
        pb_die(PB_EXIT_USAGE, "run.dir %s already holds a run's checkpoints: continue it with "
               "--resume auto, use another run.dir, or --force to archive that run and start "
               "a new one", dir);
    char arch[PB_PATH_MAX + 32];
    for (int i = 1;; i++) {  // mkdir is atomic: an existing archive is never reused
        snprintf(arch, sizeof arch, "%s/archive-%d", dir, i);
        if (mkdir(arch, 0755) == 0) break;
        if (errno != EEXIST) pb_die(PB_EXIT_RUNTIME, "%s: cannot create: %s", arch, strerror(errno));
    }
    d = opendir(dir);
    if (!d) pb_die(PB_EXIT_RUNTIME, "%s: cannot list: %s", dir, strerror(errno));
    int moved = 0;
    while ((de = readdir(d)) != NULL) {
        if (!run_file(dir, de->d_name, &is_ckpt)) continue;
        char from[PB_PATH_MAX + 300], to[PB_PATH_MAX + 340];
        snprintf(from, sizeof from, "%s/%s", dir, de->d_name);
        snprintf(to, sizeof to, "%s/%s", arch, de->d_name);
        if (rename(from, to) != 0)
            pb_die(PB_EXIT_RUNTIME, "cannot move %s to %s: %s", from, arch, strerror(errno));
        moved++;
    }
    closedir(d);
    printf("note: %s%s held an earlier run (%d files%s); moved to %s\n", ckpts ? "--force: " : "",
           dir, moved, ckpts ? "" : ", no checkpoint", arch);
}

