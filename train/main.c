// main.c: the pebble program: one binary, one subcommand per job.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "data/lra/lra.h"
#include "train/lra_pos.h"
#include "train/iomodel.h"
#include "data/prep.h"
#include "kernels/common.h"
#include "train/bench.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/eval.h"
#include "train/import.h"
#include "train/export.h"
#include "train/plot.h"
#include "train/sample.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "pebble %s: a minimal Transformer training framework\n"
            "\n"
            "usage: pebble <command> [options]\n"
            "\n"
            "commands:\n"
            "  train  -c FILE [--set section.key=value ...]   train a model (train --help: every key)\n"
            "         [--resume auto|CKPT] [--init CKPT]       continue a run / start from weights\n"
            "         [--force]                                archive run.dir's old run first\n"
            "         [--nproc N]                              N data-parallel ranks here\n"
            "  eval   --ckpt CKPT|RUN_DIR --data PATTERN       validation loss of a checkpoint\n"
            "  sample --ckpt CKPT|RUN_DIR [--prompt TEXT]      generate text (sample --help)\n"
            "  export --ckpt CKPT --out DIR                    weights for HF transformers\n"
            "  import --hf DIR --out CKPT.h5                   HF GPT-2 weights -> a checkpoint\n"
            "  prep   --out DIR [options] FILES...             text files -> GPT-2 token shards\n"
            "  bench  [--iters N]                              CPU forward+backward throughput\n"
            "  plot   RUN_DIR                                  loss.png from RUN_DIR/metrics.jsonl\n"
            "  lra    gen listops|pathfinder|text|retrieval ...  Long Range Arena data (lra --help)\n"
            "  lra    upsample-pos --from CKPT --to T --out F  positions onto a larger image grid\n"
            "  iomodel [--algo ..] [--d ..] [--M 2^8..2^20]    attention's I/O vs the bounds\n"
            "\n"
            "  pebble --version | --help\n",
            PEBBLE_VERSION);
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: pebble train -c FILE [--set section.key=value ...] [--resume auto|CKPT]\n"
            "                    [--init CKPT] [--force] [--nproc N]\n"
            "\n"
            "Trains as the INI file says; each --set overrides one key after the file is read.\n"
            "  --resume auto   continue from the newest checkpoint in run.dir that loads and\n"
            "                  verifies (damaged ones are skipped, each named; none: start)\n"
            "  --resume CKPT   continue from that checkpoint: weights, AdamW state, step, data\n"
            "  --init CKPT     start a new run from that checkpoint's (or run directory's) weights\n"
            "  --force         a new run into a run.dir holding checkpoints: move the old run's\n"
            "                  files into run.dir/archive-N first (refused without it)\n"
            "  --nproc N       N data-parallel ranks on this machine (under OpenMPI's mpirun,\n"
            "                  which must be on PATH); also: mpirun -np N pebble train ..., srun\n"
            "A second run into a run.dir in use (run.dir/.lock) is refused.\n"
            "Without -c, --resume and --init take the checkpoint's own config (then --set).\n"
            "SIGINT/SIGTERM: after the current micro-batch, the last finished step is\n"
            "checkpointed (an unfinished one is dropped), exit 0.\n"
            "Keys (type, default, meaning):\n\n");
    config_print_help(f);
}

// --resume auto without -c: the stored config of a candidate checkpoint, into a scratch
// copy of the config: a failed load may have applied some of its keys.
static int try_config(const char *path, void *user, char *err, size_t errlen) {
    pb_config *scratch = user, c = *scratch;
    if (ckpt_load_config(path, &c, err, errlen) != 0) return -1;
    *scratch = c;
    return 0;
}

// `-c ckpt_00000100.h5` is an easy slip; libinih would call it a syntax error on line 1.
static void refuse_hdf5_config(const char *file) {
    static const unsigned char hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f = fopen(file, "rb");
    if (!f) return;  // config_load_file names the open error
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n == sizeof head && memcmp(head, hdf5_sig, sizeof head) == 0)
        pb_die(PB_EXIT_USAGE, "%s: an HDF5 file (a checkpoint?), not an INI config: continue "
               "its run with --resume %s, or start a new run from its weights with --init %s",
               file, file, file);
}

// --nproc N: the ranks are started under mpirun (train/dist.h) with the other arguments.
// Returns -1 when there is no --nproc (or N = 1, or this is already a launched rank).
static int launch_nproc(int argc, char **argv) {
    int nproc = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int k = 0;
    rest[k++] = "train";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nproc") == 0) {
            char *end = NULL;
            long n = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (!end || *end || n < 1 || n > 4096)
                pb_die(PB_EXIT_USAGE, "train: --nproc needs a number of ranks from 1 to 4096");
            nproc = (int)n;
            i++;
        } else {
            rest[k++] = argv[i];
        }
    }
    int rc = -1;
    if (nproc > 1 && getenv("OMPI_COMM_WORLD_SIZE"))
        pb_die(PB_EXIT_USAGE, "train: --nproc %d inside an mpirun launch: give one or the other",
               nproc);
    if (nproc > 1) rc = dist_launch_nproc(nproc, k, rest);
    free(rest);
    return rc;
}

static int train_cmd(int argc, char **argv) {
    int launched = launch_nproc(argc, argv);
    if (launched >= 0) return launched;
    pb_config cfg;
    config_defaults(&cfg);
    char err[1024];
    const char *file = NULL;
    pb_train_start start = {NULL, NULL, 0};
    // Files first, then overrides in order, whatever their place on the command line.
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            train_usage(stdout);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "train: %s needs a file", a);
            if (file) pb_die(PB_EXIT_USAGE, "train: only one config file (-c) may be given");
            file = argv[++i];
        } else if (strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "train: --set needs section.key=value");
            i++;
        } else if (strcmp(a, "--force") == 0) {
            start.force = 1;
        } else if (strcmp(a, "--nproc") == 0) {
            i++;  // launch_nproc took it (N = 1: this process is the one rank)
        } else if (strcmp(a, "--resume") == 0 || strcmp(a, "--init") == 0) {
            if (i + 1 >= argc)
                pb_die(PB_EXIT_USAGE, "train: %s needs %s", a,
                       a[2] == 'r' ? "'auto' or a checkpoint file" : "a checkpoint file");
            const char **slot = a[2] == 'r' ? &start.resume : &start.init;
            if (*slot) pb_die(PB_EXIT_USAGE, "train: %s given twice", a);
            *slot = argv[++i];
        } else {
            pb_die(PB_EXIT_USAGE, "train: unknown option '%s' (see pebble train --help)", a);
        }
    }
    if (start.force && start.resume)
        pb_die(PB_EXIT_USAGE, "train: --force is for a new run (it archives run.dir's old run); "
               "--resume continues the run in run.dir");
    if (start.resume && start.init)
        pb_die(PB_EXIT_USAGE, "train: --resume and --init exclude each other (--init starts a "
               "new run from weights; --resume continues one)");
    if (file) refuse_hdf5_config(file);
    if (file && config_load_file(&cfg, file, err, sizeof err) != 0)
        pb_die(PB_EXIT_USAGE, "%s", err);
    if (!file && (start.resume || start.init)) {
        // No config file: the checkpoint's own configuration is the base. For --resume auto
        // the checkpoint is found in run.dir as the --set overrides name it.
        const char *ck = start.init ? start.init : start.resume;
        char found[PB_PATH_MAX + 300];
        if (strcmp(ck, "auto") == 0 && !start.init) {
            pb_config probe = cfg;
            for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--set") == 0) config_set(&probe, argv[++i], err, sizeof err);
                else if (strcmp(argv[i], "--resume") == 0 || strcmp(argv[i], "--init") == 0) i++;
            // The first checkpoint whose config reads; the trainer then loads the newest
            // one that verifies whole, reporting each one it skips.
            pb_config scratch = cfg;
            int rc = ckpt_resume_auto(probe.run_dir, try_config, &scratch, NULL, found,
                                      sizeof found, err, sizeof err);
            if (rc == -2) pb_die(PB_EXIT_RUNTIME, "%s", err);
            if (rc == -1) pb_die(PB_EXIT_DATA, "%s", err);
            if (rc == 0) cfg = scratch;
        } else {
            int rc = ckpt_pick(ck, NULL, found, sizeof found, err, sizeof err);  // file or run dir
            if (rc != 0) pb_die(rc, "%s", err);
            if (ckpt_load_config(found, &cfg, err, sizeof err) != 0) pb_die(PB_EXIT_DATA, "%s", err);
        }
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0 ||
            strcmp(argv[i], "--resume") == 0 || strcmp(argv[i], "--init") == 0)
            i++;
        else if (strcmp(argv[i], "--set") == 0 && config_set(&cfg, argv[++i], err, sizeof err) != 0)
            pb_die(PB_EXIT_USAGE, "%s", err);
    }
    if (config_validate(&cfg, err, sizeof err) != 0) pb_die(PB_EXIT_USAGE, "%s", err);
    return trainer_run_from(&cfg, &start);
}

static int plot_cmd(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(argc == 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr,
                "usage: pebble plot RUN_DIR\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : PB_EXIT_USAGE;
    }
    char err[1024];
    if (plot_run(argv[1], err, sizeof err) != 0) pb_die(PB_EXIT_RUNTIME, "%s", err);
    printf("plot: %s/loss.png\n", argv[1]);
    return 0;
}

// libgomp's threads spin while they wait at a barrier, which is fastest on an idle machine
// and ruinous on a shared one: on a loaded 2-core machine a gpt2-tiny step measured 10x
// slower spinning than sleeping. libgomp reads OMP_WAIT_POLICY once, before main, so when
// the user has not chosen, pebble sets "passive" and runs itself again.
static void prefer_passive_omp_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    // The binary's own path, not /proc/self/exe: the kernel names the process (ps, top,
    // /proc/PID/comm) after the file executed, which would make it "exe".
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        execv(self, argv);
    }
    execv("/proc/self/exe", argv);  // the file was replaced or removed since it started
    // Without /proc: carry on, spinning.
}

// After the fallback exec of /proc/self/exe the process would be called "exe".
static void keep_process_name(const char *argv0) {
    char comm[17] = "";
    if (prctl(PR_GET_NAME, comm) != 0 || strcmp(comm, "exe") != 0) return;
    const char *base = strrchr(argv0, '/');
    prctl(PR_SET_NAME, base ? base + 1 : argv0);
}

int main(int argc, char **argv) {
    prefer_passive_omp_wait(argv);
    keep_process_name(argv[0]);
    if (argc < 2) {
        usage(stderr);
        return PB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("pebble %s\n", PEBBLE_VERSION);
        return 0;
    }
    // Each subcommand sees argv starting at its own name.
    if (strcmp(cmd, "train") == 0) return train_cmd(argc - 1, argv + 1);
    if (strcmp(cmd, "prep") == 0) return prep_main(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return bench_main(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0) return plot_cmd(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return export_main(argc - 1, argv + 1);
    if (strcmp(cmd, "sample") == 0) return sample_main(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return eval_main(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0) return import_main(argc - 1, argv + 1);
    if (strcmp(cmd, "lra") == 0 && argc > 2 && strcmp(argv[2], "upsample-pos") == 0)
        return lra_upsample_pos_main(argc - 2, argv + 2);
    if (strcmp(cmd, "lra") == 0) return lra_main(argc - 1, argv + 1);
    if (strcmp(cmd, "iomodel") == 0) return iomodel_main(argc - 1, argv + 1);
    pb_die(PB_EXIT_USAGE, "unknown command '%s' (see pebble --help)", cmd);
}
