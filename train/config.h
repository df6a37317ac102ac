// config.h: the run configuration. INI files (configs/*.ini, parsed with libinih) set it,
// `--set section.key=value` overrides it, and every key has a default listed by
// `pebble train --help`. The one table of keys lives in config_keys.c.
#ifndef PEBBLE_CONFIG_H
#define PEBBLE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define PB_PATH_MAX 512

typedef struct pb_config {
    // [model]
    char model_family[32];   // "gpt2" | "bert"
    int n_layer;
    int n_head;
    int n_embd;
    int seq_len;             // T of training, and the number of learned positions
    int vocab_size;          // V; padded internally to a multiple of 128
    int max_positions;       // bert: learned positions (0 = seq_len)
    char norm[8];            // "auto" | "post" | "pre": the blocks' LayerNorm placement
    int ffn;                 // the MLP's hidden width (0 = 4 n_embd)
    double ln_eps;           // LayerNorm epsilon (0 = the family's)
    double dropout;          // dropout of the embeddings and each block's two branch outputs
    double attn_dropout;     // dropout of the attention probabilities (0: none)
    int embed_norm;          // bert: the embeddings' LayerNorm (0/1)
                             // while training
    char init[8];            // "auto" | "fan_in": how a fresh model's weights are drawn
    int type_vocab_size;     // bert: token types
    char head[16];           // bert: "mlm" | "classify"
    int num_labels;          // bert classify
    char pool[8];            // bert classify: "cls" | "mean"
    char pooler[8];          // bert classify: the pooler's activation, "tanh" | "relu"
    int pad_token;           // bert classify, mean pool: a token id dropped wherever it
                             // stands (-1: none)
    char attention[16];      // "auto" or an attention implementation's name (kernels/ops.h)
    // [attention]: the block-sparse pattern (model.attention = blocksparse)
    char attn_sparsity[32];  // "dense" | "local+global+random" | "butterfly"
    int attn_block;          // block size (the kernel's tile)
    int attn_window;         // key blocks each side of the diagonal
    int attn_global;         // leading global blocks
    int attn_random;         // random key blocks per query block
    unsigned long long attn_seed;
    // [data]
    char train_data[PB_PATH_MAX];  // glob pattern of token shards (required)
    char val_data[PB_PATH_MAX];    // glob pattern of validation shards ("" = none)
    char test_data[PB_PATH_MAX];   // glob pattern of the test data, evaluated after the run
    // [train]
    char task[16];           // "auto" | "lm" | "mlm" | "classify"
    double mlm_prob;         // mlm: share of maskable positions chosen
    int batch_size;          // B, sequences per micro-batch
    long total_batch_tokens; // tokens per optimizer step, all ranks; a multiple of B*T (0 = B*T a rank)
    int steps;               // optimizer steps
    double lr;               // peak learning rate
    double min_lr_frac;      // cosine decays to lr * min_lr_frac
    int warmup_steps;
    double weight_decay;     // AdamW, on 2-D weights only
    double beta1, beta2, eps;
    double grad_clip;        // global-norm clip (0 = off)
    unsigned long long seed;
    int val_every;           // steps between validations (0 = never; always after the last)
    int val_batches;         // micro-batches per validation
    double time_limit;       // wall-clock seconds for this run (0 = none): stop with a checkpoint
    // [run]
    char run_dir[PB_PATH_MAX];
    int plot;                // write loss.png with gnuplot at the end (0/1)
    // [checkpoint]
    int ckpt_every;          // steps between checkpoints (0 = only at the end and on a signal)
    int ckpt_keep_last;      // checkpoints kept in run_dir, the newest (0 = all)
    // [sample]
    int sample_every;        // steps between text samples printed during training (0 = off)
    int sample_tokens;       // new tokens per sample
    int sample_min_tokens;   // <|endoftext|> before this many tokens is no stop
    char sample_prompt[PB_PATH_MAX];  // text the samples start from ("" = <|endoftext|>)
    double sample_temperature;        // 0 = greedy
    int sample_top_k;        // sample among the k likeliest tokens (0 = all)
    char sample_tokenizer[PB_PATH_MAX];  // GPT-2 tokenizer file the samples are decoded with
    // [system]
    char device[16];         // "cpu" (later "cuda", "auto")
    char precision[8];       // "auto" | "fp32" | "bf16" (mixed precision, the GPU only)
    int threads;             // OpenMP threads (0 = all cores)
    // [dist]: data parallelism (train/dist.h)
    int dist_zero;           // 0: every rank runs AdamW on everything; 1: on its shard (ZeRO-1)
    char dist_reduce[8];     // "auto" | "tree" (exact for any world size) | "sum" | "nccl" (GPU)
    double dist_timeout;     // seconds a rank waits for a peer before ending the run
} pb_config;

void config_defaults(pb_config *c);

// Each returns 0 on success, or -1 with one line in err naming the file, line and key
// (or the --set argument) and what is wrong.
int config_load_file(pb_config *c, const char *path, char *err, size_t errlen);
int config_set(pb_config *c, const char *assignment, char *err, size_t errlen);  // "sec.key=value"
// Required keys present and values consistent with one another.
int config_validate(const pb_config *c, char *err, size_t errlen);
// The part of config_validate that relates keys to one another (config_check.c).
int config_check_combinations(const pb_config *c, char *err, size_t errlen);

// Every key, with its type, default and help, for `pebble train --help`.
void config_print_help(FILE *f);
// The effective configuration as a loadable INI file (written into each run directory).
void config_write_ini(const pb_config *c, FILE *f);
// The same as a string (free() it).
char *config_ini_text(const pb_config *c);

#endif
