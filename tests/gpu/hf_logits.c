// hf_logits.c: the logits pebble computes, for the scripts that compare them with Hugging
// Face's (check_hf_import.py, check_hf_bert.py):
//     hf_logits CKPT|RUN_DIR TOKENS B T OUT [LENGTHS [TARGETS]]
// loads the checkpoint (any family: the model its /config describes) on the CPU, reads B*T
// int32 tokens from TOKENS (and B int32 lengths, B*T int32 MLM targets or B labels), runs one
// forward and writes the float32 logits to OUT: (B*T, V) for gpt2 and BERT's MLM head, (B,
// num_labels) for its classifier. With TARGETS it prints "loss L". A tool, not a test: the
// scripts assert.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/model.h"

static int32_t *read_ints(const char *path, size_t n) {
    int32_t *x = pb_malloc(n * sizeof(int32_t));
    FILE *f = pb_fopen(path, "rb");
    if (fread(x, sizeof(int32_t), n, f) != n) pb_die(PB_EXIT_DATA, "%s: fewer than %zu ints", path, n);
    fclose(f);
    return x;
}

int main(int argc, char **argv) {
    if (argc < 6 || argc > 8)
        pb_die(PB_EXIT_USAGE, "usage: hf_logits CKPT TOKENS B T OUT [LENGTHS [TARGETS]]");
    char err[1024], path[PB_PATH_MAX + 300];
    int rc = ckpt_pick(argv[1], stderr, path, sizeof path, err, sizeof err);  // file or run dir
    if (rc != 0) pb_die(rc, "%s", err);
    pb_config cfg;
    config_defaults(&cfg);
    if (ckpt_load_config(path, &cfg, err, sizeof err) != 0 ||
        model_check_config(&cfg, err, sizeof err) != 0)
        pb_die(PB_EXIT_DATA, "%s: %s", argv[1], err);
    pb_model m;
    model_build(&m, &cfg, pb_ops_cpu());
    if (ckpt_load(path, m.p, 0, NULL, err, sizeof err) != 0) pb_die(PB_EXIT_DATA, "%s", err);
    int B = atoi(argv[3]), T = atoi(argv[4]);
    size_t N = (size_t)B * T;
    int32_t *tok = read_ints(argv[2], N);
    int32_t *len = argc > 6 ? read_ints(argv[6], (size_t)B) : NULL;
    int bert = m.family == MODEL_BERT, cls = bert && m.bert.cfg.head == BERT_HEAD_CLASSIFY;
    int32_t *tgt = argc > 7 ? read_ints(argv[7], cls ? (size_t)B : N) : NULL;
    double loss = model_forward(&m, tok, cls ? NULL : tgt, len, cls ? tgt : NULL, B, T);
    if (tgt) printf("loss %.9g\n", loss);
    // the rows the head ran on (every position when there are no targets)
    const float *logits = bert ? m.bert.acts.logits : m.gpt2.acts.logits;
    int rows = cls ? B : bert ? m.bert.M : (int)N;
    int V = cls ? m.bert.cfg.num_labels : bert ? m.bert.cfg.vocab_size : m.gpt2.cfg.vocab_size;
    int Vp = cls ? m.bert.Lp : bert ? m.bert.cfg.padded_vocab : m.gpt2.cfg.padded_vocab;
    FILE *o = pb_fopen(argv[5], "wb");
    for (int r = 0; r < rows; r++)
        if (fwrite(logits + (size_t)r * Vp, sizeof(float), (size_t)V, o) != (size_t)V)
            pb_die(PB_EXIT_RUNTIME, "%s: write failed", argv[5]);
    fclose(o);
    free(tok), free(len), free(tgt);
    model_free(&m);
    return 0;
}
