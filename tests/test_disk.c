// test_disk.c: `pebble train` on a real full filesystem: a small tmpfs mounted for the test
// (root only; skipped, saying so, where mounting is not allowed). The save that runs out of
// space must end the run with its one line and exit 1 (HDF5 once crashed in its exit-time
// cleanup here: exit 139), leave no temporary file, and leave the earlier checkpoint and
// `latest` as they were, loadable.
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/cli.h"

static char mnt[300];

static void unmount_and_clean(void) {
    if (mnt[0]) umount2(mnt, MNT_DETACH);
    cleanup();
}

Test(disk, full_filesystem_during_a_save_exits_1_and_keeps_the_last_checkpoint,
     .fini = unmount_and_clean) {
    make_data("disk");
    snprintf(mnt, sizeof mnt, "%s/small", tmp);
    cr_assert(mkdir(mnt, 0755) == 0);
    // A checkpoint of this model is ~1.3 MB (weights, m, v of 110K floats): the first fits in
    // 2 MB, the second (while the first is kept) does not.
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
        mnt[0] = '\0';
        cr_skip_test("cannot mount a tmpfs here (needs root): the file-size-limit test in "
                     "test_checkpoint covers the write path");
    }
    const char *bin = pebble_bin();
    int rc = run("%s train --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=64 "
                 "--set model.seq_len=32 --set model.vocab_size=64 --set train.batch_size=2 "
                 "--set train.warmup_steps=1 --set train.steps=6 --set checkpoint.every=2 "
                 "--set run.plot=false --set data.train=%s/train_*.bin --set run.dir=%s/run",
                 bin, tmp, mnt);
    cr_assert_eq(rc, 1, "exit %d (139: a crash after the error): %s", rc, output());
    cr_assert(strstr(run_stderr(), "pebble: ") && strstr(run_stderr(), "No space left on device") &&
              strstr(run_stderr(), "training stopped"), "%s", output());
    char p[400];
    snprintf(p, sizeof p, "%s/run/ckpt_00000002.h5", mnt);
    cr_assert(access(p, F_OK) == 0, "the earlier checkpoint is gone: %s", output());
    snprintf(p, sizeof p, "%s/run/ckpt_00000004.h5", mnt);
    cr_assert(access(p, F_OK) != 0, "a half-written checkpoint was left: %s", p);
    cr_assert_eq(run("ls -a %s/run | grep -c tmp", mnt), 1, "a temporary file was left");
    snprintf(p, sizeof p, "%s/run/latest", mnt);
    cr_assert(strstr(slurp(p), "ckpt_00000002.h5"), "latest: %s", slurp(p));
    // and it loads whole
    cr_assert_eq(run("%s eval --ckpt %s/run --data '%s/val_*.bin' --batches 1", bin, mnt, tmp),
                 0, "%s", output());
    cr_assert(strstr(run_stdout(), "loss "), "%s", run_stdout());
}
