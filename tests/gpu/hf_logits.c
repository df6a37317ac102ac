// hf_logits.c: the logits pebble computes for a token sequence, for check_hf_import.py to
// compare with Hugging Face's: `hf_logits CKPT TOKENS N OUT` loads the checkpoint (any
// GPT-2 shape) on the CPU, reads N int32 tokens from TOKENS, runs one forward (B=1, T=N)
// and writes the (N, V) float32 logits to OUT. A tool, not a test: the script asserts.
#include <stdio.h>
#include <stdlib.h>

#include "kernels/common.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

int main(int argc, char **argv) {
    if (argc != 5) pb_die(PB_EXIT_USAGE, "usage: hf_logits CKPT TOKENS N OUT");
    char err[1024];
    gpt2_config mc;
    if (trainer_model_from_ckpt(argv[1], &mc, err, sizeof err) != 0) pb_die(PB_EXIT_DATA, "%s", err);
    gpt2 m;
    gpt2_build(&m, &mc, pb_ops_cpu());
    if (ckpt_load(argv[1], &m.p, 0, NULL, err, sizeof err) != 0) pb_die(PB_EXIT_DATA, "%s", err);
    int n = atoi(argv[3]);
    int32_t *tok = pb_malloc((size_t)n * sizeof(int32_t));
    FILE *f = pb_fopen(argv[2], "rb");
    if (fread(tok, sizeof(int32_t), (size_t)n, f) != (size_t)n)
        pb_die(PB_EXIT_DATA, "%s: fewer than %d tokens", argv[2], n);
    fclose(f);
    gpt2_forward(&m, tok, NULL, 1, n);
    FILE *o = pb_fopen(argv[4], "wb");
    int Vp = m.cfg.padded_vocab, V = m.cfg.vocab_size;
    for (int t = 0; t < n; t++)
        if (fwrite(m.acts.logits + (size_t)t * Vp, sizeof(float), (size_t)V, o) != (size_t)V)
            pb_die(PB_EXIT_RUNTIME, "%s: write failed", argv[4]);
    fclose(o);
    free(tok);
    gpt2_free(&m);
    return 0;
}
