// config.c: the table of config keys, and the INI and --set parsing, checks, help and writer.
#include "train/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/tokenizer.h"
#include "kernels/common.h"

// ----------------------------------------------------------------------------
// The table of keys. Defaults, parsing (file and --set), checks, help and the written INI
// all read it; adding a key means adding a field to pb_config and one row here.

typedef enum {
    CONFIG_INT,     // int
    CONFIG_LONG,    // long
    CONFIG_U64,     // unsigned long long
    CONFIG_DOUBLE,  // double, finite
    CONFIG_BOOL,    // int 0/1; true/false/1/0/yes/no/on/off in text
    CONFIG_STRING,  // char[size], NUL-terminated
} config_type;

typedef struct {
    const char *section, *key;
    config_type type;
    size_t offset;        // of the field in pb_config
    size_t size;          // sizeof the field: a string's capacity, and a check on the type
    const char *def;      // default as text; NULL = required (no default)
    const char *help;
    const char *choices;  // strings: allowed values, "a|b|c" (NULL = any)
    const char *metavar;  // required keys: what to write in the "--set key=..." hint
    int nonempty;         // strings: "" is not a valid value
    // Numbers: bounds, inclusive unless *_open.
    int has_min, has_max, min_open, max_open;
    double min, max;
} config_key;

#define KEY(sec, name, ty, field, dflt, text)                                                  \
    .section = (sec), .key = (name), .type = CONFIG_##ty,                                      \
    .offset = offsetof(pb_config, field), .size = sizeof(((pb_config *)0)->field),             \
    .def = (dflt), .help = (text)
#define GE(x) .has_min = 1, .min = (x)
#define GT(x) .has_min = 1, .min_open = 1, .min = (x)
#define LE(x) .has_max = 1, .max = (x)
#define LT(x) .has_max = 1, .max_open = 1, .max = (x)

static const config_key config_keys[] = {
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
    // Which implementations exist, and what each runs, is the backend's to say: the model
    // checks the name against its table at startup (pb_attn_choose), one line if it cannot.
    {KEY("model", "attention", STRING, attention, "auto",
         "attention kernel: auto (the fastest that runs the model), or by name: naive, flash, "
         "blocksparse (the [attention] pattern), smallcache (CPU); flash (CUDA fp32); wgmma, "
         "flash (CUDA bf16)"),
     .choices = "auto|flash|naive|wgmma|blocksparse|smallcache"},
    // [attention]: the block-sparse pattern (kernels/attention/blocksparse.h), read only with
    // model.attention = blocksparse (config_validate refuses a pattern that would be ignored)
    {KEY("attention", "sparsity", STRING, attn_sparsity, "dense",
         "model.attention = blocksparse: the block pattern: dense, local+global+random "
         "(window, global, random), butterfly (global)"),
     .choices = "dense|local+global+random|butterfly"},
    {KEY("attention", "block", INT, attn_block, "64",
         "block size of the pattern, queries and keys: the kernel's tile (CPU: 16, 32, 64, 128)"),
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
         "number of ranks), auto (tree on the CPU, sum on the GPU)"),
     .choices = "auto|tree|sum"},
    {KEY("dist", "timeout", DOUBLE, dist_timeout, "300",
         "seconds a rank waits for another before it ends the run with an error"),
     GT(0)},
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

// The longest line config_load_file accepts: room for "key = " and a PB_PATH_MAX value.
#define CONFIG_MAX_LINE (PB_PATH_MAX + 512)

// ----------------------------------------------------------------------------
// Looking keys up, and suggesting one for a typo.

static int section_known(const char *section) {
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0) return 1;
    return 0;
}

static const config_key *find_key(const char *section, const char *key) {
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].key, key) == 0)
            return &config_keys[i];
    return NULL;
}

// Levenshtein distance; names longer than 63 bytes count as far from everything.
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return INT_MAX;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

// The known key the user most likely meant by section.key, or NULL: the nearest full name
// within edit distance 2, else the same key name in another section, else a key of the same
// section that one name is a prefix of ("train.warmup" -> "train.warmup_steps").
static const config_key *suggest_key(const char *section, const char *key) {
    char want[160], have[160];
    snprintf(want, sizeof want, "%s.%s", section, key);
    const config_key *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        snprintf(have, sizeof have, "%s.%s", config_keys[i].section, config_keys[i].key);
        int d = edit_distance(want, have);
        if (d < best_d) best_d = d, best = &config_keys[i];
    }
    if (best) return best;
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].key, key) == 0) return &config_keys[i];
    size_t lk = strlen(key);
    for (size_t i = 0; i < CONFIG_NKEYS && lk > 0; i++) {
        const config_key *k = &config_keys[i];
        size_t lc = strlen(k->key);
        if (strcmp(k->section, section) == 0 && strncmp(k->key, key, lk < lc ? lk : lc) == 0)
            return k;
    }
    return NULL;
}

static const char *suggest_section(const char *section) {
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        int d = edit_distance(section, config_keys[i].section);
        if (d < best_d) best_d = d, best = config_keys[i].section;
    }
    return best;
}

// " (did you mean 'train.lr'?)", or "" when nothing is close.
static void key_hint(const char *section, const char *key, char *hint, size_t n) {
    const config_key *k = suggest_key(section, key);
    if (k) snprintf(hint, n, " (did you mean '%s.%s'?)", k->section, k->key);
    else hint[0] = '\0';
}

static void section_hint(const char *section, char *hint, size_t n) {
    const char *s = suggest_section(section);
    if (s) snprintf(hint, n, " (did you mean [%s]?)", s);
    else hint[0] = '\0';
}

// ----------------------------------------------------------------------------
// Values: text -> field, with every check of one key. Each failure writes the problem
// after the key, e.g. "'abc' is not a number", for the caller to prefix.

static void *field_of(const config_key *k, pb_config *c) { return (char *)c + k->offset; }
static const void *cfield_of(const config_key *k, const pb_config *c) {
    return (const char *)c + k->offset;
}

static void format_bound(double v, char *buf, size_t n) { snprintf(buf, n, "%.17g", v); }

// "must be >= 1" if v is outside the key's bounds, else 0 and nothing written.
static int out_of_bounds(const config_key *k, double v, char *why, size_t n) {
    char b[32];
    if (k->has_min && (k->min_open ? !(v > k->min) : !(v >= k->min))) {
        format_bound(k->min, b, sizeof b);
        snprintf(why, n, "must be %s %s", k->min_open ? ">" : ">=", b);
        return 1;
    }
    if (k->has_max && (k->max_open ? !(v < k->max) : !(v <= k->max))) {
        format_bound(k->max, b, sizeof b);
        snprintf(why, n, "must be %s %s", k->max_open ? "<" : "<=", b);
        return 1;
    }
    return 0;
}

static int is_choice(const config_key *k, const char *s) {
    size_t ls = strlen(s);
    for (const char *p = k->choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t lp = bar ? (size_t)(bar - p) : strlen(p);
        if (lp == ls && strncmp(p, s, lp) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

// Shortest "%g" text that reads back as exactly v, so written configs round-trip.
static void format_double(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

// The value as INI text; strings point into c, numbers are written into buf.
static const char *format_value(const config_key *k, const pb_config *c, char *buf, size_t n) {
    const void *p = cfield_of(k, c);
    switch (k->type) {
    case CONFIG_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case CONFIG_LONG: snprintf(buf, n, "%ld", *(const long *)p); break;
    case CONFIG_U64: snprintf(buf, n, "%llu", *(const unsigned long long *)p); break;
    case CONFIG_DOUBLE: format_double(*(const double *)p, buf, n); break;
    case CONFIG_BOOL: snprintf(buf, n, "%s", *(const int *)p ? "true" : "false"); break;
    case CONFIG_STRING: return (const char *)p;
    }
    return buf;
}

// Quote a value for a message, cut short when long so the message stays one readable line.
static void quote(const char *s, char *buf, size_t n) {
    if (strlen(s) > 40) snprintf(buf, n, "'%.32s...'", s);
    else snprintf(buf, n, "'%s'", s);
}

// Parse text into k's field of c. Returns 0, or -1 with the problem in why; c is written
// only on success.
static int set_value(const config_key *k, pb_config *c, const char *text, char *why, size_t n) {
    char q[64], b[96];
    quote(text, q, sizeof q);
    void *p = field_of(k, c);
    char *end;
    errno = 0;
    switch (k->type) {
    case CONFIG_INT:
    case CONFIG_LONG: {
        long v = strtol(text, &end, 10);
        if (end == text || *end != '\0') return snprintf(why, n, "%s is not an integer", q), -1;
        if (errno == ERANGE || (k->type == CONFIG_INT && (v < INT_MIN || v > INT_MAX)))
            return snprintf(why, n, "%s is out of range", q), -1;
        if (out_of_bounds(k, (double)v, b, sizeof b)) return snprintf(why, n, "%s %s", q, b), -1;
        if (k->type == CONFIG_INT) *(int *)p = (int)v;
        else *(long *)p = v;
        return 0;
    }
    case CONFIG_U64: {
        // strtoull would wrap "-1" to 2^64-1; only digits are an unsigned integer.
        if (!isdigit((unsigned char)text[0]))
            return snprintf(why, n, "%s is not a non-negative integer", q), -1;
        unsigned long long v = strtoull(text, &end, 10);
        if (*end != '\0') return snprintf(why, n, "%s is not a non-negative integer", q), -1;
        if (errno == ERANGE) return snprintf(why, n, "%s is out of range", q), -1;
        if (out_of_bounds(k, (double)v, b, sizeof b)) return snprintf(why, n, "%s %s", q, b), -1;
        *(unsigned long long *)p = v;
        return 0;
    }
    case CONFIG_DOUBLE: {
        double v = strtod(text, &end);
        if (end == text || *end != '\0') return snprintf(why, n, "%s is not a number", q), -1;
        // inf, nan and overflow ("1e999") would poison the run long after startup.
        if (!isfinite(v)) return snprintf(why, n, "%s is not a finite number", q), -1;
        if (out_of_bounds(k, v, b, sizeof b)) return snprintf(why, n, "%s %s", q, b), -1;
        *(double *)p = v;
        return 0;
    }
    case CONFIG_BOOL: {
        static const char *const yes[] = {"true", "1", "yes", "on"};
        static const char *const no[] = {"false", "0", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(text, yes[i]) == 0) return *(int *)p = 1, 0;
            if (strcasecmp(text, no[i]) == 0) return *(int *)p = 0, 0;
        }
        return snprintf(why, n, "%s is not true or false", q), -1;
    }
    case CONFIG_STRING: {
        size_t len = strlen(text);
        if (len >= k->size)
            return snprintf(why, n, "%s is too long (max %zu characters)", q, k->size - 1), -1;
        if (k->nonempty && len == 0) return snprintf(why, n, "must not be empty"), -1;
        if (k->choices && !is_choice(k, text))
            return snprintf(why, n, "%s must be one of %s", q, k->choices), -1;
        // Only --set can bring these in; refuse what config_write_ini could not write back.
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)text[i];
            if (iscntrl(ch)) return snprintf(why, n, "%s contains a control character", q), -1;
            if (ch == ';' && (i == 0 || isspace((unsigned char)text[i - 1])))
                return snprintf(why, n, "%s has a ';' that an INI file reads as a comment", q), -1;
        }
        memset(p, 0, k->size);  // a zeroed tail keeps memcmp of two configs meaningful
        memcpy(p, text, len);
        return 0;
    }
    }
    PB_ASSERT(0);
    return -1;
}

// ----------------------------------------------------------------------------
// Defaults

void config_defaults(pb_config *c) {
    // Zero the padding and string tails too, so equal configs are equal bytes.
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        // The row's type must match its field; a mismatch is a bug in the table.
        switch (k->type) {
        case CONFIG_INT:
        case CONFIG_BOOL: PB_ASSERT(k->size == sizeof(int)); break;
        case CONFIG_LONG: PB_ASSERT(k->size == sizeof(long)); break;
        case CONFIG_U64: PB_ASSERT(k->size == sizeof(unsigned long long)); break;
        case CONFIG_DOUBLE: PB_ASSERT(k->size == sizeof(double)); break;
        case CONFIG_STRING: PB_ASSERT(k->size > 1); break;
        }
        if (!k->def) continue;  // required: stays empty until the user sets it
        char why[256];
        int rc = set_value(k, c, k->def, why, sizeof why);
        PB_ASSERT(rc == 0);  // every default passes its own key's checks
    }
}

// ----------------------------------------------------------------------------
// INI files. libinih does the parsing; we hand it lines through our own reader, which
// counts them (Debian's inih is built without INI_HANDLER_LINENO, so the handler is not
// told the line) and remembers where the last [section] header was.

typedef struct {
    FILE *f;
    const char *path;
    pb_config *c;
    char *buf;            // getline's buffer
    size_t bufcap;
    int lineno;           // the line inih is working on
    int section_lineno;   // line of the last "[section]" header
    int err_line;         // line of the first error we found (0 = none yet)
    char *err;
    size_t errlen;
} config_parser;

static void parser_fail(config_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void parser_fail(config_parser *p, int line, const char *fmt, ...) {
    if (p->err_line) return;  // the first error is the one reported
    int off = snprintf(p->err, p->errlen, "%s:%d: ", p->path, line);
    if (off < 0 || (size_t)off >= p->errlen) off = (int)(p->errlen ? p->errlen - 1 : 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + off, p->errlen - (size_t)off, fmt, ap);
    va_end(ap);
    p->err_line = line;
}

// inih's fgets-style reader: one physical line per call.
static char *config_reader(char *str, int num, void *stream) {
    config_parser *p = stream;
    errno = 0;
    ssize_t n = getline(&p->buf, &p->bufcap, p->f);
    if (n < 0) {
        // A directory opens fine and fails here with EISDIR.
        if (ferror(p->f) && !p->err_line) {
            snprintf(p->err, p->errlen, "%s: cannot read: %s", p->path, strerror(errno));
            p->err_line = p->lineno + 1;
        }
        return NULL;
    }
    p->lineno++;
    char *s = p->buf;
    if (p->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;  // UTF-8 byte order mark
    // inih would read an indented line as the continuation of the previous value; here an
    // indented line is an ordinary line, as most INI readers take it.
    while (*s == ' ' || *s == '\t') s++;
    size_t len = strlen(s), content = len;
    while (content > 0 && (s[content - 1] == '\n' || s[content - 1] == '\r')) content--;
    // inih needs 3 bytes beyond the text ("\r\n" and the NUL); we copy all of len.
    if (content + 3 > (size_t)num || len + 1 > (size_t)num) {
        parser_fail(p, p->lineno, "line is too long (max %d characters)", num - 3);
        return NULL;
    }
    if (*s == '[') p->section_lineno = p->lineno;
    memcpy(str, s, len + 1);
    return str;
}

static int config_handler(void *user, const char *section, const char *name, const char *value) {
    config_parser *p = user;
    if (p->err_line) return 1;  // inih keeps going after an error; we report the first
    char hint[160], why[256];
    if (section[0] == '\0') {
        key_hint(section, name, hint, sizeof hint);
        parser_fail(p, p->lineno, "key '%s' is outside any [section]%s", name, hint);
        return 0;
    }
    if (!section_known(section)) {
        section_hint(section, hint, sizeof hint);
        parser_fail(p, p->section_lineno, "unknown section [%s]%s", section, hint);
        return 0;
    }
    const config_key *k = find_key(section, name);
    if (!k) {
        key_hint(section, name, hint, sizeof hint);
        parser_fail(p, p->lineno, "unknown key '%s.%s'%s", section, name, hint);
        return 0;
    }
    // A key given twice: the later line wins, as each line simply sets the field again.
    if (set_value(k, p->c, value, why, sizeof why) != 0) {
        parser_fail(p, p->lineno, "%s.%s: %s", k->section, k->key, why);
        return 0;
    }
    return 1;
}

int config_load_file(pb_config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    // Work on a copy, so that a file with an error changes nothing.
    pb_config tmp;
    memcpy(&tmp, c, sizeof tmp);
    config_parser p = {.f = f, .path = path, .c = &tmp, .err = err, .errlen = errlen};
    // Debian's libinih takes its line limit at run time (its INI_RUNTIME_OPTIONS); the
    // built-in 200 bytes is too short for a PB_PATH_MAX glob.
    int saved_max_line = ini_max_line;
    ini_max_line = CONFIG_MAX_LINE;
    int rc = ini_parse_stream(config_reader, &p, config_handler, &p);
    ini_max_line = saved_max_line;
    free(p.buf);
    fclose(f);
    // rc is the first line inih saw an error on: ours (handler) or its own (syntax).
    if (rc > 0 && (p.err_line == 0 || rc < p.err_line)) {
        snprintf(err, errlen, "%s:%d: syntax error", path, rc);
        return -1;
    }
    if (rc < 0 && !p.err_line) {
        snprintf(err, errlen, "%s: out of memory while parsing", path);
        return -1;
    }
    if (p.err_line) return -1;
    memcpy(c, &tmp, sizeof tmp);
    return 0;
}

// ----------------------------------------------------------------------------
// --set section.key=value

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int config_set(pb_config *c, const char *assignment, char *err, size_t errlen) {
    size_t len = strlen(assignment);
    char *copy = pb_malloc(len + 1);
    memcpy(copy, assignment, len + 1);
    int rc = -1;
    char hint[160], why[256];
    // Split at the first '=' (values may contain '='), then the name at its first '.'.
    char *eq = strchr(copy, '=');
    char *dot = eq ? memchr(copy, '.', (size_t)(eq - copy)) : NULL;
    if (!eq || !dot) {
        snprintf(err, errlen, "--set %s: expected section.key=value", assignment);
        goto done;
    }
    *eq = '\0';
    *dot = '\0';
    // Whitespace around the parts is dropped, as in a file.
    char *section = trim(copy), *key = trim(dot + 1), *value = trim(eq + 1);
    if (!*section || !*key) {
        snprintf(err, errlen, "--set %s: expected section.key=value", assignment);
        goto done;
    }
    if (!section_known(section)) {
        section_hint(section, hint, sizeof hint);
        snprintf(err, errlen, "--set %s: unknown section [%s]%s", assignment, section, hint);
        goto done;
    }
    const config_key *k = find_key(section, key);
    if (!k) {
        key_hint(section, key, hint, sizeof hint);
        snprintf(err, errlen, "--set %s: unknown key '%s.%s'%s", assignment, section, key, hint);
        goto done;
    }
    if (set_value(k, c, value, why, sizeof why) != 0) {
        snprintf(err, errlen, "--set %s: %s.%s: %s", assignment, k->section, k->key, why);
        goto done;
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

// ----------------------------------------------------------------------------
// Validation: every key within its own limits (the struct may have been filled by code,
// not the parser), then the checks that involve several keys.

int config_validate(const pb_config *c, char *err, size_t errlen) {
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (!k->def && ((const char *)cfield_of(k, c))[0] == '\0') {
            snprintf(err, errlen,
                     "missing required key %s.%s "
                     "(set it in the config file or with --set %s.%s=%s)",
                     k->section, k->key, k->section, k->key, k->metavar ? k->metavar : "VALUE");
            return -1;
        }
    }
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        const void *p = cfield_of(k, c);
        char buf[64], why[96];
        double v = 0;
        switch (k->type) {
        case CONFIG_INT: v = *(const int *)p; break;
        case CONFIG_LONG: v = (double)*(const long *)p; break;
        case CONFIG_U64: v = (double)*(const unsigned long long *)p; break;
        case CONFIG_DOUBLE:
            v = *(const double *)p;
            if (!isfinite(v)) {
                snprintf(err, errlen, "%s.%s (%g) must be a finite number", k->section, k->key, v);
                return -1;
            }
            break;
        case CONFIG_BOOL:
            if (*(const int *)p != 0 && *(const int *)p != 1) {
                snprintf(err, errlen, "%s.%s (%d) must be 0 or 1", k->section, k->key,
                         *(const int *)p);
                return -1;
            }
            continue;
        case CONFIG_STRING: {
            const char *s = p;
            if (!memchr(s, '\0', k->size)) {
                snprintf(err, errlen, "%s.%s is longer than %zu characters", k->section, k->key,
                         k->size - 1);
                return -1;
            }
            if (k->nonempty && !*s) {
                snprintf(err, errlen, "%s.%s must not be empty", k->section, k->key);
                return -1;
            }
            if (k->choices && !is_choice(k, s)) {
                snprintf(err, errlen, "%s.%s (%s) must be one of %s", k->section, k->key, s,
                         k->choices);
                return -1;
            }
            continue;
        }
        }
        if (out_of_bounds(k, v, why, sizeof why)) {
            snprintf(err, errlen, "%s.%s (%s) %s", k->section, k->key,
                     format_value(k, c, buf, sizeof buf), why);
            return -1;
        }
    }

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
    // A warmup longer than the run (train.steps = 5 with the default 20) is not an error:
    // the trainer clamps it to the run, with a note.
    return 0;
}

// ----------------------------------------------------------------------------
// Help and the written INI

static const char *type_name(const config_key *k) {
    switch (k->type) {
    case CONFIG_INT:
    case CONFIG_LONG: return "int";
    case CONFIG_U64: return "uint";
    case CONFIG_DOUBLE: return "float";
    case CONFIG_BOOL: return "bool";
    case CONFIG_STRING: return k->choices ? k->choices : "string";
    }
    return "?";
}

static const char *default_text(const config_key *k) {
    if (!k->def) return "(required)";
    if (!k->def[0]) return "\"\"";
    return k->def;
}

void config_print_help(FILE *f) {
    int wname = 0, wtype = 0, wdef = 0;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        int ln = (int)(strlen(k->section) + 1 + strlen(k->key));
        int lt = (int)strlen(type_name(k)), ld = (int)strlen(default_text(k));
        if (ln > wname) wname = ln;
        if (lt > wtype) wtype = lt;
        if (ld > wdef) wdef = ld;
    }
    fprintf(f, "Config keys (set in an INI file's [section], or with --set section.key=value):\n");
    const char *section = "";
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(f, "\n[%s]\n", section);
        }
        char name[160], bounds[96] = "", lo[32], hi[32];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        if (k->has_min) format_bound(k->min, lo, sizeof lo);
        if (k->has_max) format_bound(k->max, hi, sizeof hi);
        if (k->has_min && k->has_max)
            snprintf(bounds, sizeof bounds, " [%s %s, %s %s]", k->min_open ? ">" : ">=", lo,
                     k->max_open ? "<" : "<=", hi);
        else if (k->has_min)
            snprintf(bounds, sizeof bounds, " [%s %s]", k->min_open ? ">" : ">=", lo);
        else if (k->has_max)
            snprintf(bounds, sizeof bounds, " [%s %s]", k->max_open ? "<" : "<=", hi);
        fprintf(f, "  %-*s  %-*s  default: %-*s  %s%s\n", wname, name, wtype, type_name(k), wdef,
                default_text(k), k->help, bounds);
    }
    fprintf(f, "\nRequired (no default):");
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (!config_keys[i].def) fprintf(f, " %s.%s", config_keys[i].section, config_keys[i].key);
    fprintf(f, "\n");
}

void config_write_ini(const pb_config *c, FILE *f) {
    fprintf(f, "; pebble %s: the effective configuration of this run\n", PEBBLE_VERSION);
    const char *section = "";
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(f, "\n[%s]\n", section);
        }
        char buf[64];
        const char *v = format_value(k, c, buf, sizeof buf);
        fprintf(f, "%s =%s%s\n", k->key, v[0] ? " " : "", v);
    }
}

char *config_ini_text(const pb_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) pb_die(PB_EXIT_RUNTIME, "out of memory");
    config_write_ini(c, f);
    if (fclose(f) != 0) pb_die(PB_EXIT_RUNTIME, "out of memory");
    return text;
}
