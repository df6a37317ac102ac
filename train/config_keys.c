// config_keys.c: every key of a run configuration: section, name, type, field, default, help,
// choices and bounds (config_keys.h). The comment after a row says why its bound is what it is.
#include "train/config_keys.h"

#include <stddef.h>

#include "data/tokenizer.h"
#include "train/config.h"

#define KEY(sec, name, ty, field, dflt, text)                                                  \
    .section = (sec), .key = (name), .type = CONFIG_##ty,                                      \
    .offset = offsetof(pb_config, field), .size = sizeof(((pb_config *)0)->field),             \
    .def = (dflt), .help = (text)
#define GE(x) .has_min = 1, .min = (x)
#define GT(x) .has_min = 1, .min_open = 1, .min = (x)
#define LE(x) .has_max = 1, .max = (x)
#define LT(x) .has_max = 1, .max_open = 1, .max = (x)

const config_key config_keys[] = {
    // [model]
    {KEY("model", "family", STRING, model_family, "gpt2",
         "model architecture: gpt2 (causal LM) or bert (encoder: masked LM or classifier)"),
     .choices = "gpt2|bert"},
    {KEY("model", "n_layer", INT, n_layer, "4", "transformer blocks"),
     GE(1)},  // a model has at least one block
    {KEY("model", "n_head", INT, n_head, "4", "attention heads per block"),
     GE(1)},  // and one head; n_embd % n_head is checked in config_validate
    {KEY("model", "n_embd", INT, n_embd, "128", "channels C, a multiple of n_head"),
     GE(1)},
    {KEY("model", "seq_len", INT, seq_len, "128",
         "T of training, and the number of learned positions"),
     GE(1)},
    {KEY("model", "vocab_size", INT, vocab_size, "50257",
         "V, padded internally to a multiple of 128"),
     GE(1)},
    {KEY("model", "max_positions", INT, max_positions, "0",
         "bert: learned positions (max_position_embeddings), >= seq_len (0 = seq_len); T = "
         "128 batches of a 512-position BERT set 512 here"),
     GE(0)},
    {KEY("model", "norm", STRING, norm, "auto",
         "where the blocks' LayerNorms sit: post (BERT's, after each residual add), pre (before "
         "each branch, one more at the end: GPT-2's, and an option for bert), auto (the family's)"),
     .choices = "auto|post|pre"},
    {KEY("model", "ffn", INT, ffn, "0",
         "hidden width of each block's MLP (BERT's intermediate_size; 0 = 4 * n_embd)"),
     GE(0)},  // gpt2 takes only 4C (config_validate): its table is Hugging Face's
    {KEY("model", "ln_eps", DOUBLE, ln_eps, "0",
         "LayerNorm epsilon (0 = the family's: 1e-5 gpt2, 1e-12 bert)"),
     GE(0)},
    {KEY("model", "dropout", DOUBLE, dropout, "0",
         "dropout probability of the embeddings and of each block's attention and MLP outputs "
         "before their residual adds, in training steps only (BERT's hidden_dropout_prob, "
         "GPT-2's embd_pdrop and resid_pdrop); 0: none"),
     GE(0), LT(1)},
    {KEY("model", "attn_dropout", DOUBLE, attn_dropout, "0",
         "dropout probability of the attention probabilities after the softmax, in training "
         "steps only (BERT's attention_probs_dropout_prob, GPT-2's attn_pdrop); the CPU's "
         "naive, flash and blocksparse attention drop, on CUDA dense wgmma (bf16); 0: none"),
     GE(0), LT(1)},
    {KEY("model", "init", STRING, init, "auto",
         "a fresh model's weights: auto (the family's: every matrix N(0, 0.02), biases 0) or "
         "fan_in (bert: PyTorch's default Linear, U(+-1/sqrt(fan_in)) weights and biases, "
         "embeddings N(0, 0.02): the LRA reproductions' models)"),
     .choices = "auto|fan_in"},
    {KEY("model", "type_vocab_size", INT, type_vocab_size, "2",
         "bert: token types (segments) in the embedding table; pebble feeds type 0"),
     GE(1)},
    {KEY("model", "head", STRING, head, "mlm",
         "bert: the head, mlm (masked LM, tied decoder) or classify (pooler + classifier)"),
     .choices = "mlm|classify"},
    {KEY("model", "num_labels", INT, num_labels, "2", "bert classify: classes"),
     GE(2)},
    {KEY("model", "pool", STRING, pool, "cls",
         "bert classify: what the pooler reads, cls (the first token, as Hugging Face) or "
         "mean (the mean of the unpadded tokens)"),
     .choices = "cls|mean"},
    {KEY("model", "pooler", STRING, pooler, "tanh",
         "bert classify: the layer between the pool and the classifier, tanh (BERT's pooler, "
         "dense n_embd -> n_embd, tanh) or relu (LRA's classifier head, as Tay et al.'s and "
         "Nystromformer's models: dense n_embd -> ffn, ReLU)"),
     .choices = "tanh|relu"},
    {KEY("model", "embed_norm", BOOL, embed_norm, "true",
         "bert: the LayerNorm of the embeddings (BERT's); false feeds the summed embeddings to "
         "the blocks as they are, as Nystromformer's LRA models do (pre-LN only)")},
    {KEY("model", "pad_token", INT, pad_token, "-1",
         "bert classify with pool = mean: a token id that is padding wherever it stands (-1: "
         "none): those positions are dropped before the embedding (the others keep their "
         "positions), no attention reads them, and the mean pool counts them as zeros. LRA's "
         "and Nystromformer's models treat token 0 so: on Pathfinder, the black pixels"),
     GE(-1)},  // below the vocabulary: config_check
    // Which implementations exist, and what each runs, is the backend's to say: the model
    // checks the name against its table at startup (pb_attn_choose), one line if it cannot.
    {KEY("model", "attention", STRING, attention, "auto",
         "attention kernel: auto (the fastest that runs the model), or by name: naive, flash, "
         "blocksparse (the [attention] pattern, CPU and CUDA), smallcache (CPU; CUDA: head dims "
         "above 128); flash (CUDA fp32); wgmma, flash (CUDA bf16)"),
     .choices = "auto|flash|naive|wgmma|blocksparse|smallcache"},
    // [attention]: the block-sparse pattern (kernels/attention/blocksparse.h), read only with
    // model.attention = blocksparse (config_validate refuses a pattern that would be ignored)
    {KEY("attention", "sparsity", STRING, attn_sparsity, "dense",
         "model.attention = blocksparse: the block pattern: dense, local+global+random "
         "(window, global, random), butterfly (global)"),
     .choices = "dense|local+global+random|butterfly"},
    {KEY("attention", "block", INT, attn_block, "128",
         "block size of the pattern, queries and keys: the kernel's tile (CPU: 16, 32, 64, "
         "128; CUDA: 128)"),
     GE(1)},
    {KEY("attention", "window", INT, attn_window, "1",
         "local+global+random: key blocks kept on each side of the diagonal"),
     GE(0)},
    {KEY("attention", "global", INT, attn_global, "1",
         "leading blocks that see and are seen by every block"),
     GE(0)},
    {KEY("attention", "random", INT, attn_random, "1",
         "local+global+random: random key blocks per query block (per head)"),
     GE(0)},
    {KEY("attention", "seed", U64, attn_seed, "1", "seed of the random blocks")},
    // [data]
    {KEY("data", "train", STRING, train_data, NULL, "glob pattern of the training data: token shards (lm, mlm) or labelled-sequence files "
         "(classify)"),
     .metavar = "PATTERN"},  // required (config_validate): nothing to train on without it
    {KEY("data", "val", STRING, val_data, "",
         "glob pattern of the validation data, as data.train (empty = no validation)")},
    {KEY("data", "test", STRING, test_data, "",
         "glob pattern of the test data, as data.train: evaluated once, whole, after the last "
         "step (empty = none)")},
    // [train]
    {KEY("train", "task", STRING, task, "auto",
         "what is learned: lm (next token, gpt2), mlm (masked LM, bert head mlm), classify "
         "(labelled sequences, bert head classify), or auto (the model's)"),
     .choices = "auto|lm|mlm|classify"},
    {KEY("train", "mlm_prob", DOUBLE, mlm_prob, "0.15",
         "mlm: share of the maskable positions chosen (80% [MASK], 10% random, 10% kept)"),
     GT(0), LT(1)},
    {KEY("train", "batch_size", INT, batch_size, "8", "B, sequences per micro-batch"),
     GE(1)},
    {KEY("train", "total_batch_tokens", LONG, total_batch_tokens, "0",
         "tokens per optimizer step over all ranks, a multiple of B*T (0 = B*T per rank)"),
     GE(0)},  // the multiple of B*T is checked in config_validate
    {KEY("train", "steps", INT, steps, "500", "optimizer steps"),
     GE(1)},  // a warmup_steps > steps is clamped by the trainer
    {KEY("train", "lr", DOUBLE, lr, "1e-3", "peak learning rate"),
     GT(0)},  // a zero peak never moves the weights
    {KEY("train", "min_lr_frac", DOUBLE, min_lr_frac, "0.1",
         "the cosine decays to lr * min_lr_frac"),
     GE(0), LE(1)},  // 0 decays to zero; above 1 the "decay" would climb
    {KEY("train", "warmup_steps", INT, warmup_steps, "20", "steps of linear warmup to lr"),
     GE(0)},
    {KEY("train", "weight_decay", DOUBLE, weight_decay, "0.1", "AdamW decay, on 2-D weights only"),
     GE(0)},  // negative decay would grow the weights
    {KEY("train", "beta1", DOUBLE, beta1, "0.9", "AdamW first-moment decay"),
     GE(0), LT(1)},  // at 1 the moment never updates and bias correction divides by zero
    {KEY("train", "beta2", DOUBLE, beta2, "0.95", "AdamW second-moment decay"),
     GE(0), LT(1)},  // same as beta1
    {KEY("train", "eps", DOUBLE, eps, "1e-8", "AdamW epsilon in the denominator"),
     GT(0)},  // keeps the update finite where the second moment is zero
    {KEY("train", "grad_clip", DOUBLE, grad_clip, "1.0",
         "global gradient-norm clip (0 = off)"),
     GE(0)},
    // any seed is fine
    {KEY("train", "seed", U64, seed, "1337", "seed of initialization and data order")},
    {KEY("train", "val_every", INT, val_every, "50",
         "steps between validations (0 = only after the last step)"),
     GE(0)},
    {KEY("train", "val_batches", INT, val_batches, "8", "micro-batches per validation"),
     GE(1)},  // a validation of zero batches has no loss
    {KEY("train", "time_limit", DOUBLE, time_limit, "0",
         "wall-clock seconds for this run: it stops with a checkpoint before a step would end "
         "past them (0 = no limit); continue with --resume auto"),
     GE(0)},
    // [run]
    {KEY("run", "dir", STRING, run_dir, "runs/default", "run directory: log, config.ini, loss.png"),
     .nonempty = 1},  // "" is not a directory
    {KEY("run", "plot", BOOL, plot, "true", "write loss.png with gnuplot at the end")},
    // [checkpoint]
    {KEY("checkpoint", "every", INT, ckpt_every, "0",
         "steps between checkpoints in run.dir (0 = only at the end and on SIGINT/SIGTERM)"),
     GE(0)},
    {KEY("checkpoint", "keep_last", INT, ckpt_keep_last, "3",
         "checkpoints kept in run.dir, the newest (0 = all)"),
     GE(0)},  // negative would mean nothing
    // [sample]: text printed during training, as `pebble sample` would print it
    {KEY("sample", "every", INT, sample_every, "0",
         "steps between text samples printed during training (0 = off)"),
     GE(0)},
    {KEY("sample", "tokens", INT, sample_tokens, "64", "new tokens per sample"),
     GE(1)},  // a sample of no tokens says nothing
    {KEY("sample", "min_tokens", INT, sample_min_tokens, "16",
         "tokens before <|endoftext|> ends a sample (one earlier is printed, and it goes on)"),
     GE(0)},
    {KEY("sample", "prompt", STRING, sample_prompt, "",
         "text the samples start from (empty = <|endoftext|>)")},
    {KEY("sample", "temperature", DOUBLE, sample_temperature, "1.0",
         "softmax temperature of the samples (0 = greedy)"),
     GE(0)},  // a negative temperature would favour the least likely tokens
    {KEY("sample", "top_k", INT, sample_top_k, "50",
         "sample among the k likeliest tokens (0 = all)"),
     GE(0)},
    // In [sample], not [data]: training reads token shards, and only the samples decode
    // text, so the file is needed (and checked at startup) only when sample.every > 0.
    {KEY("sample", "tokenizer", STRING, sample_tokenizer, TOK_DEFAULT_PATH,
         "GPT-2 tokenizer file the samples are printed with (make tokenizer builds it)"),
     .nonempty = 1},  // "" is not a file
    // [system]
    {KEY("system", "device", STRING, device, "cpu",
         "where to train: cpu, cuda, or auto (cuda when a GPU is usable, else cpu)"),
     .choices = "auto|cpu|cuda"},
    // auto: bf16 where it exists (the GPU), fp32 elsewhere; fp32 on the GPU is the parity mode
    {KEY("system", "precision", STRING, precision, "auto",
         "arithmetic: bf16 (activations and matmuls in bf16, fp32 master weights and "
         "optimizer; GPU only), fp32 (exact), or auto (bf16 on cuda, fp32 on cpu)"),
     .choices = "auto|fp32|bf16"},
    {KEY("system", "threads", INT, threads, "0", "OpenMP threads (0 = all cores)"),
     GE(0)},
    // [dist]: read by every rank; the ranks compare their effective configs at start
    {KEY("dist", "zero", INT, dist_zero, "0",
         "ZeRO stage: 0 (every rank updates every weight) or 1 (each rank runs AdamW on its "
         "shard of the weights and moments, then the weights are gathered)"),
     GE(0), LE(1)},
    {KEY("dist", "reduce", STRING, dist_reduce, "auto",
         "how micro-batch gradients are summed: tree (each into its own buffer, added in a "
         "fixed binary tree: the same bits for any number of ranks; log2(micro-batches per "
         "rank) extra gradient buffers), sum (accumulated in place: the same bits for a fixed "
         "number of ranks), nccl (the GPU: accumulated in place, then all-reduced over NCCL "
         "per block during the backward; the same bits for a fixed number of GPUs; also on "
         "one GPU, where it gives the plain run's bits), auto (tree on the CPU; on the GPU "
         "sum with one rank, nccl with several)"),
     .choices = "auto|tree|sum|nccl"},
    {KEY("dist", "timeout", DOUBLE, dist_timeout, "300",
         "seconds a rank waits for another before it ends the run with an error"),
     GT(0)},
};


const size_t config_nkeys = sizeof config_keys / sizeof config_keys[0];
