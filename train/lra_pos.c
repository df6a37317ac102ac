// lra_pos.c: `pebble lra upsample-pos --from CKPT --to T --out CKPT2`: the FlashAttention
// paper's recipe for Path-X and Path-256 (Dao et al. 2022, appendix E.3): a model trained on
// small images starts the large ones with its learned positions duplicated over the larger
// grid. Sequences are images in row-major order, so positions form an a x a grid (T_from =
// a^2); on the b x b grid (T = b^2, b a multiple of a), position (i, j) takes the embedding of
// (i * a / b, j * a / b): each learned position covers a (b/a) x (b/a) patch. Every other
// tensor is copied as it is; the result is a checkpoint to start from (step 0, zero AdamW
// moments) with model.seq_len = T, which `pebble train --init` then fine-tunes.
#include "train/lra_pos.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/model.h"

#define POS_NAME "bert.embeddings.position_embeddings.weight"

static int square_side(long n) {
    long s = lround(sqrt((double)n));
    return s * s == n ? (int)s : 0;
}

int lra_upsample_pos(const char *from, int T, const char *out, char *err, size_t errlen) {
    char path[PB_PATH_MAX + 300];
    int rc = ckpt_pick(from, stderr, path, sizeof path, err, errlen);
    if (rc != 0) return rc;
    pb_config cfg;
    config_defaults(&cfg);
    if (ckpt_load_config(path, &cfg, err, errlen) != 0) return PB_EXIT_DATA;
    if (model_check_config(&cfg, err, errlen) != 0) return PB_EXIT_DATA;
    if (strcmp(cfg.model_family, "bert") != 0) {
        pb_seterr(err, errlen, "lra upsample-pos: %s is a %s checkpoint; the LRA classifiers are "
                  "bert", path, cfg.model_family);
        return PB_EXIT_DATA;
    }
    int T0 = cfg.max_positions ? cfg.max_positions : cfg.seq_len;
    int a = square_side(T0), b = square_side(T);
    if (!a || !b || b < a || b % a != 0) {
        pb_seterr(err, errlen, "lra upsample-pos: %s learns %d positions and --to is %d: both "
                  "must be square grids (a^2 and b^2) with b a multiple of a", path, T0, T);
        return PB_EXIT_USAGE;
    }
    pb_model src, dst;
    model_build(&src, &cfg, pb_ops_cpu());
    if (ckpt_load(path, src.p, 0, NULL, err, errlen) != 0) {
        model_free(&src);
        return PB_EXIT_DATA;
    }
    pb_config big = cfg;
    big.seq_len = T;
    big.max_positions = 0;
    model_build(&dst, &big, pb_ops_cpu());
    int C = cfg.n_embd;
    for (int i = 0; i < dst.p->num; i++) {
        const pb_param *q = &dst.p->tab[i];
        const pb_param *p = params_find(src.p, q->name);
        PB_ASSERT(p);  // the same model but for its positions
        float *to = dst.p->mem + q->offset;
        const float *fr = src.p->mem + p->offset;
        if (strcmp(q->name, POS_NAME) != 0) {
            PB_ASSERT(p->numel == q->numel);
            memcpy(to, fr, q->numel * sizeof(float));
            continue;
        }
        for (int i2 = 0; i2 < b; i2++)
            for (int j2 = 0; j2 < b; j2++) {
                int i1 = i2 * a / b, j1 = j2 * a / b;
                memcpy(to + ((size_t)i2 * b + j2) * C, fr + ((size_t)i1 * a + j1) * C,
                       (size_t)C * sizeof(float));
            }
    }
    rc = ckpt_save_start(out, dst.p, &big, err, errlen) == 0 ? 0 : PB_EXIT_RUNTIME;
    if (rc == 0)
        printf("lra upsample-pos: %s (%d x %d positions) -> %s (%d x %d, model.seq_len = %d)\n",
               path, a, a, out, b, b, T);
    model_free(&src);
    model_free(&dst);
    return rc;
}

int lra_upsample_pos_main(int argc, char **argv) {
    const char *from = NULL, *out = NULL, *to = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: pebble lra upsample-pos --from CKPT|RUN_DIR --to T --out CKPT2.h5\n"
                   "\n"
                   "A bert checkpoint trained on a x a images (T = a^2 positions) as one for b x b\n"
                   "images (--to b^2, b a multiple of a): each learned position is duplicated over\n"
                   "its (b/a) x (b/a) patch of the larger grid (FlashAttention's Path-X recipe:\n"
                   "Path-64 to 128 x 128 is --to 16384). Step 0, fresh optimizer: continue with\n"
                   "pebble train --init CKPT2.h5 --set model.seq_len=T.\n");
            return 0;
        }
        const char **slot = !strcmp(a, "--from") ? &from : !strcmp(a, "--to") ? &to
                            : !strcmp(a, "--out") ? &out : NULL;
        if (!slot)
            pb_die(PB_EXIT_USAGE, "lra upsample-pos: unknown option '%s' (see --help)", a);
        if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "lra upsample-pos: %s needs a value", a);
        *slot = argv[++i];
    }
    if (!from || !to || !out)
        pb_die(PB_EXIT_USAGE, "lra upsample-pos: --from, --to and --out are required (see --help)");
    char *end;
    long T = strtol(to, &end, 10);
    if (*to == '\0' || *end || T < 1 || T > (1L << 26))
        pb_die(PB_EXIT_USAGE, "lra upsample-pos: --to '%s' is not a sequence length", to);
    char err[1024];
    int rc = lra_upsample_pos(from, (int)T, out, err, sizeof err);
    if (rc != 0) pb_die(rc, "%s", err);
    return 0;
}
