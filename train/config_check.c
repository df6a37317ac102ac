// config_check.c: the checks of a run configuration that involve several keys (the single
// keys' types and bounds are config_keys.c's table): heads and channels, the task and the model,
// each family's fixed choices, the attention pattern's keys, the batch and the step.
#include <stdio.h>
#include <string.h>

#include "train/config.h"

int config_check_combinations(const pb_config *c, char *err, size_t errlen) {
    // Attention splits the C channels evenly over the heads.
    if (c->n_embd % c->n_head != 0) {
        snprintf(err, errlen, "model.n_embd (%d) must be divisible by model.n_head (%d)", c->n_embd,
                 c->n_head);
        return -1;
    }
    // The task goes with the model: next-token prediction needs the causal model, masked LM
    // and classification need BERT with that head.
    int bert = strcmp(c->model_family, "bert") == 0;
    const char *want = !bert ? "lm" : strcmp(c->head, "mlm") == 0 ? "mlm" : "classify";
    if (strcmp(c->task, "auto") != 0 && strcmp(c->task, want) != 0) {
        snprintf(err, errlen, "train.task = %s does not go with model.family = %s%s%s (it "
                 "trains %s)", c->task, c->model_family, bert ? ", model.head = " : "",
                 bert ? c->head : "", want);
        return -1;
    }
    if (c->max_positions && (!bert || c->max_positions < c->seq_len)) {
        snprintf(err, errlen, !bert ? "model.max_positions = %d: gpt2 learns model.seq_len "
                 "positions (set 0)" : "model.max_positions = %d is below model.seq_len = %d",
                 c->max_positions, c->seq_len);
        return -1;
    }
    if (!bert && strcmp(c->init, "auto") != 0) {
        snprintf(err, errlen, "model.init = %s: gpt2 draws GPT-2's init (set auto)", c->init);
        return -1;
    }
    if (c->pad_token >= 0) {  // dropped positions: only the mean pool's sum can skip them
        const char *why = !bert ? "gpt2 attends to every token"
                          : strcmp(c->head, "classify") != 0 ? "the MLM head predicts positions"
                          : strcmp(c->pool, "mean") != 0 ? "model.pool = cls reads the first token"
                          : strcmp(c->attention, "blocksparse") == 0
                              ? "a block-sparse pattern is of positions, which the drop moves"
                          : c->pad_token >= c->vocab_size ? "it is outside the vocabulary"
                                                          : NULL;
        if (why) {
            snprintf(err, errlen, "model.pad_token = %d: %s (set -1)", c->pad_token, why);
            return -1;
        }
    }
    if (strcmp(c->pooler, "tanh") != 0 && (!bert || strcmp(c->head, "classify") != 0)) {
        snprintf(err, errlen, "model.pooler = %s: %s (set tanh)", c->pooler,
                 !bert ? "gpt2 has no classifier head" : "only model.head = classify has a pooler");
        return -1;
    }
    if (!c->embed_norm && (!bert || strcmp(c->norm, "pre") != 0)) {
        snprintf(err, errlen, "model.embed_norm = false: %s (set true)",
                 !bert ? "gpt2 has no embedding LayerNorm to leave out"
                       : "a post-LN encoder would feed unnormalised embeddings to its first "
                         "residual add and LayerNorm only after it; only model.norm = pre leaves "
                         "it out");
        return -1;
    }
    if (!bert && strcmp(c->norm, "post") == 0) {
        snprintf(err, errlen, "model.norm = post: gpt2's blocks are pre-LN (set auto or pre)");
        return -1;
    }
    if (!bert && c->ffn != 0 && c->ffn != 4 * c->n_embd) {
        snprintf(err, errlen, "model.ffn = %d: gpt2's MLP is 4 * n_embd = %d wide (set 0)",
                 c->ffn, 4 * c->n_embd);
        return -1;
    }
    // A sparsity pattern only the block-sparse kernel reads: set for another one, it would be
    // silently dense.
    if (strcmp(c->attn_sparsity, "dense") != 0 && strcmp(c->attention, "blocksparse") != 0) {
        snprintf(err, errlen, "attention.sparsity = %s needs model.attention = blocksparse "
                 "(model.attention is %s)", c->attn_sparsity, c->attention);
        return -1;
    }
    // The pattern's other keys, set where nothing reads them, would be silently ignored too.
    {
        pb_config d;
        config_defaults(&d);
        int bs = strcmp(c->attention, "blocksparse") == 0;
        int lgr = strcmp(c->attn_sparsity, "local+global+random") == 0;
        int dense = strcmp(c->attn_sparsity, "dense") == 0;
        const struct {
            const char *key;
            int set, read;
            const char *reader;
        } k[] = {
            {"block", c->attn_block != d.attn_block, bs, "model.attention = blocksparse"},
            {"window", c->attn_window != d.attn_window, bs && lgr,
             "attention.sparsity = local+global+random"},
            {"random", c->attn_random != d.attn_random, bs && lgr,
             "attention.sparsity = local+global+random"},
            {"global", c->attn_global != d.attn_global, bs && !dense,
             "attention.sparsity = local+global+random or butterfly"},
            {"seed", c->attn_seed != d.attn_seed, bs && lgr,
             "attention.sparsity = local+global+random"},
        };
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
            if (k[i].set && !k[i].read) {
                snprintf(err, errlen, "attention.%s is set, but only %s reads it (model.attention "
                         "= %s, attention.sparsity = %s)", k[i].key, k[i].reader, c->attention,
                         c->attn_sparsity);
                return -1;
            }
    }
    // An optimizer step accumulates whole micro-batches of B*T tokens.
    long long bt = (long long)c->batch_size * c->seq_len;
    if (c->total_batch_tokens % bt != 0) {
        snprintf(err, errlen,
                 "train.total_batch_tokens (%ld) must be a multiple of train.batch_size * "
                 "model.seq_len (%d * %d = %lld)",
                 c->total_batch_tokens, c->batch_size, c->seq_len, bt);
        return -1;
    }
    // NCCL exchanges GPU memory: a CPU run cannot use it (auto is decided where the run
    // starts, and refused there when it lands on the CPU).
    if (strcmp(c->dist_reduce, "nccl") == 0 && strcmp(c->device, "cpu") == 0) {
        snprintf(err, errlen, "dist.reduce = nccl needs the GPU (system.device = cuda or auto), "
                 "and system.device = cpu: the CPU's exact exchange is dist.reduce = tree");
        return -1;
    }
    // A warmup longer than the run (train.steps = 5 with the default 20) is not an error:
    // the trainer clamps it to the run, with a note.
    return 0;
}
