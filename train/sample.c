// sample.c: `pebble sample` and the samples printed during training (see sample.h).
#include "train/sample.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/tokenizer.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

// ----------------------------------------------------------------------------
// picking one token

// The order of candidates: larger logit first, then smaller id, so that the top k are one
// well-defined set whatever the algorithm that finds them.
static int better(const float *logits, int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

// Min-heap of candidate ids with the worst (by `better`) at the root.
static void heap_sift_down(int32_t *h, int n, int i, const float *logits) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(logits, h[w], h[l])) w = l;
        if (r < n && better(logits, h[w], h[r])) w = r;
        if (w == i) return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

// ids (k) gets the k best ids, best first. O(V log k).
static void top_k_ids(const float *logits, int V, int k, int32_t *ids) {
    int n = 0;
    for (int32_t i = 0; i < V; i++) {
        if (n < k) {
            // push, then restore the heap from the new leaf up
            int j = n++;
            ids[j] = i;
            while (j > 0 && better(logits, ids[(j - 1) / 2], ids[j])) {
                int p = (j - 1) / 2;
                int32_t t = ids[p];
                ids[p] = ids[j];
                ids[j] = t;
                j = p;
            }
        } else if (better(logits, i, ids[0])) {
            ids[0] = i;
            heap_sift_down(ids, n, 0, logits);
        }
    }
    // heap sort: popping the worst into the back leaves the array best first
    for (int end = n - 1; end > 0; end--) {
        int32_t t = ids[0];
        ids[0] = ids[end];
        ids[end] = t;
        heap_sift_down(ids, end, 0, logits);
    }
}

int32_t sample_pick(const float *logits, int V, double temperature, int top_k, pb_rng *rng) {
    PB_ASSERT(V > 0 && temperature >= 0.0);
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature == 0.0) return best;

    int k = top_k <= 0 || top_k > V ? V : top_k;
    int32_t *ids = NULL;
    if (k < V) {
        ids = pb_malloc((size_t)k * sizeof(int32_t));
        top_k_ids(logits, V, k, ids);
    }
    // p_i proportional to exp((l_i - l_max) / temperature), in double: the largest weight is
    // 1, so the sum neither overflows nor vanishes. A smaller id comes first among all.
    double sum = 0.0, mx = logits[best];
    for (int j = 0; j < k; j++) sum += exp(((double)logits[ids ? ids[j] : j] - mx) / temperature);
    double u = pb_rng_uniform(rng) * sum, cum = 0.0;
    int32_t pick = ids ? ids[k - 1] : V - 1;  // if rounding leaves u past the last sum
    for (int j = 0; j < k; j++) {
        int32_t id = ids ? ids[j] : j;
        cum += exp(((double)logits[id] - mx) / temperature);
        if (u < cum) {
            pick = id;
            break;
        }
    }
    free(ids);
    return pick;
}

// ----------------------------------------------------------------------------
// generating

static int all_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int sample_generate(const gpt2 *m, gpt2_kv_cache *kv, const int32_t *prompt, int n_prompt,
                    const sample_opts *o, pb_rng *rng, sample_emit_fn emit, void *user,
                    sample_stop *why) {
    int maxT = m->cfg.seq_len, V = m->cfg.vocab_size;
    PB_ASSERT(n_prompt >= 1 && n_prompt <= maxT);
    float *logits = pb_malloc((size_t)m->cfg.padded_vocab * sizeof(float));
    gpt2_decode_prefill(m, kv, prompt, n_prompt, logits);
    // pos: the position of the token to pick, whose distribution the logits hold.
    int pos = n_prompt, made = 0;
    *why = SAMPLE_STOP_TOKENS;
    while (made < o->tokens) {
        if (!all_finite(logits, V)) {
            *why = SAMPLE_STOP_NAN;
            break;
        }
        int32_t t = sample_pick(logits, V, o->temperature, o->top_k, rng);
        if (o->stop_at_eot && t == o->eot && made >= o->min_tokens) {
            *why = SAMPLE_STOP_EOT;
            break;
        }
        emit(t, user);
        made++;
        if (made == o->tokens) break;
        // Position seq_len has no learned position embedding: t cannot be run.
        if (pos >= maxT) {
            *why = SAMPLE_STOP_SEQ_LEN;
            break;
        }
        gpt2_decode_step(m, kv, t, pos, logits);
        pos++;
    }
    free(logits);
    return made;
}

// ----------------------------------------------------------------------------
// pebble sample

static void usage(FILE *f) {
    fprintf(f,
            "usage: pebble sample --ckpt FILE|RUN_DIR [--prompt TEXT] [--tokens N]\n"
            "                     [--temperature T] [--top-k K] [--seed S] [--tokenizer FILE]\n"
            "                     [--stop-at-eot | --no-stop-at-eot]\n"
            "\n"
            "Generates text from a checkpoint (a RUN_DIR: its newest valid checkpoint), with a\n"
            "KV cache, printing each token as it comes. The text goes to stdout; a line before\n"
            "and after it, to stderr.\n"
            "  --prompt TEXT       text to continue (default \"\": start from <|endoftext|>;\n"
            "                      the text <|endoftext|> in it is that token)\n"
            "  --tokens N          new tokens at most (default 100); generation also stops at\n"
            "                      the model's seq_len\n"
            "  --temperature T     softmax temperature (default 1.0; 0 = greedy)\n"
            "  --top-k K           sample among the K likeliest tokens (default 50; 0 = all)\n"
            "  --seed S            seed of the draws (default 1337): one seed, one text\n"
            "  --tokenizer FILE    GPT-2 tokenizer file (default %s; make tokenizer)\n"
            "  --no-stop-at-eot    go on past <|endoftext|> (printed as such); by default it\n"
            "                      ends the text\n",
            TOK_DEFAULT_PATH);
}

static long parse_long(const char *flag, const char *s, long min, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > 1000000000L)
        pb_die(PB_EXIT_USAGE, "sample: %s wants %s, not '%s'", flag, what, s);
    return v;
}

typedef struct cli_out {
    const tok_tokenizer *tok;
} cli_out;

// Bytes of each token as they come: a token may end inside a UTF-8 character, whose other
// bytes follow with the next token; the terminal puts them together.
static void emit_stdout(int32_t token, void *user) {
    const cli_out *o = user;
    size_t len;
    const uint8_t *b = tok_token_bytes(o->tok, token, &len);
    PB_ASSERT(b);
    fwrite(b, 1, len, stdout);
    fflush(stdout);
}

// Encodes the prompt ("<|endoftext|>" in it is the special token); "" becomes <|endoftext|>
// alone, as every training document starts after one. Returns NULL with one line in err if
// the model cannot run it.
static int32_t *encode_prompt(const tok_tokenizer *tok, const char *prompt, const gpt2_config *mc,
                              const char *who, int *n_out, char *err, size_t errlen) {
    tok_ids ids = {0};
    if (prompt[0]) {
        tok_encoder *e = tok_encoder_new(tok);
        tok_encode(e, prompt, strlen(prompt), TOK_ALLOW_SPECIAL, &ids);
        tok_encoder_free(e);
    }
    if (ids.n == 0) {
        int32_t eot = tok_eot(tok);
        if (eot >= mc->vocab_size) {
            snprintf(err, errlen,
                     "%s: an empty prompt starts from <|endoftext|> (%d), which is outside the "
                     "model's vocabulary (%d): give a prompt",
                     who, eot, mc->vocab_size);
            tok_ids_free(&ids);
            return NULL;
        }
        ids.data = pb_malloc(sizeof(int32_t));
        ids.data[0] = eot;
        ids.n = 1;
    }
    if (ids.n > (size_t)mc->seq_len) {
        snprintf(err, errlen, "%s: the prompt is %zu tokens, longer than model.seq_len = %d",
                 who, ids.n, mc->seq_len);
        tok_ids_free(&ids);
        return NULL;
    }
    for (size_t i = 0; i < ids.n; i++) {
        if (ids.data[i] >= mc->vocab_size) {
            snprintf(err, errlen,
                     "%s: prompt token %zu is id %d, outside the model's vocabulary (%d)", who,
                     i, ids.data[i], mc->vocab_size);
            tok_ids_free(&ids);
            return NULL;
        }
    }
    *n_out = (int)ids.n;
    return ids.data;
}

// A checkpoint's model for `pebble sample`: its shape from /config, then its weights (every
// checksum verified). 0 with *m built, or -1 with "<path>: <why>" in err and nothing built.
static int try_sample_model(const char *path, void *user, char *err, size_t errlen) {
    gpt2 *m = user;
    gpt2_config mc;
    if (trainer_model_from_ckpt(path, &mc, err, errlen) != 0) return -1;
    gpt2_build(m, &mc, pb_ops_cpu());
    if (ckpt_load(path, &m->p, 0, NULL, err, errlen) != 0) {
        gpt2_free(m);
        return -1;
    }
    return 0;
}

int sample_main(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *tok_path = TOK_DEFAULT_PATH;
    sample_opts o = {.tokens = 100, .temperature = 1.0, .top_k = 50, .stop_at_eot = 1};
    unsigned long long seed = 1337;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--stop-at-eot") == 0) {
            o.stop_at_eot = 1;
            continue;
        }
        if (strcmp(a, "--no-stop-at-eot") == 0) {
            o.stop_at_eot = 0;
            continue;
        }
        int known = strcmp(a, "--ckpt") == 0 || strcmp(a, "--prompt") == 0 ||
                    strcmp(a, "--tokens") == 0 || strcmp(a, "--temperature") == 0 ||
                    strcmp(a, "--top-k") == 0 || strcmp(a, "--seed") == 0 ||
                    strcmp(a, "--tokenizer") == 0;
        if (!known)
            pb_die(PB_EXIT_USAGE, "sample: unknown option '%s' (see pebble sample --help)", a);
        if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "sample: %s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--ckpt") == 0) {
            ckpt = v;
        } else if (strcmp(a, "--prompt") == 0) {
            prompt = v;
        } else if (strcmp(a, "--tokenizer") == 0) {
            tok_path = v;
        } else if (strcmp(a, "--tokens") == 0) {
            o.tokens = (int)parse_long(a, v, 1, "a count of tokens >= 1");
        } else if (strcmp(a, "--top-k") == 0) {
            o.top_k = (int)parse_long(a, v, 0, "an integer >= 0 (0 = all tokens)");
        } else if (strcmp(a, "--temperature") == 0) {
            char *end;
            double t = strtod(v, &end);
            if (end == v || *end || !isfinite(t) || t < 0)
                pb_die(PB_EXIT_USAGE, "sample: --temperature wants a number >= 0, not '%s'", v);
            o.temperature = t;
        } else {  // --seed
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (v[0] < '0' || v[0] > '9' || *end || errno)
                pb_die(PB_EXIT_USAGE, "sample: --seed wants a non-negative integer, not '%s'", v);
            seed = s;
        }
    }
    if (!ckpt)
        pb_die(PB_EXIT_USAGE, "sample: --ckpt FILE|RUN_DIR is required (see pebble sample --help)");

    // --- the tokenizer, checked before any weights are read
    char err[1024], path[PB_PATH_MAX + 300];
    tok_tokenizer *tok = tok_load(tok_path, err, sizeof err);
    if (!tok) pb_die(PB_EXIT_DATA, "sample: %s (make tokenizer builds it)", err);

    // --- the checkpoint: a file, or a run directory's newest one that loads whole (a
    // damaged one is skipped, named with its cause, as `train --resume auto` does)
    gpt2 m;
    struct stat st;
    if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode)) {
        int rc = ckpt_resume_auto(ckpt, try_sample_model, &m, stderr, path, sizeof path, err,
                                  sizeof err);
        if (rc == -2) pb_die(PB_EXIT_RUNTIME, "sample: %s", err);
        if (rc == 1) pb_die(PB_EXIT_DATA, "sample: no checkpoint in %s", ckpt);
        if (rc == -1) {
            const char *why = strncmp(err, "--resume auto: ", 15) == 0 ? err + 15 : err;
            pb_die(PB_EXIT_DATA, "sample: %s", why);
        }
    } else {
        snprintf(path, sizeof path, "%s", ckpt);
        if (try_sample_model(path, &m, err, sizeof err) != 0) pb_die(PB_EXIT_DATA, "sample: %s", err);
    }
    gpt2_config mc = m.cfg;
    if (mc.vocab_size > tok_vocab_size(tok))
        pb_die(PB_EXIT_DATA, "sample: %s: the model's vocabulary (%d) is larger than the GPT-2 "
               "tokenizer's (%d): its tokens cannot be printed", path, mc.vocab_size,
               tok_vocab_size(tok));
    int n_prompt = 0;
    int32_t *ids = encode_prompt(tok, prompt, &mc, "sample", &n_prompt, err, sizeof err);
    if (!ids) pb_die(PB_EXIT_USAGE, "%s", err);
    o.eot = tok_eot(tok);

    gpt2_kv_cache kv;
    gpt2_decode_init(&kv, &m);

    fprintf(stderr, "sample: %s | gpt2 L%d H%d C%d T%d V%d | prompt %d tokens | temperature "
            "%g, top-k %d, seed %llu\n", path, mc.n_layer, mc.n_head, mc.n_embd, mc.seq_len,
            mc.vocab_size, n_prompt, o.temperature, o.top_k, seed);
    // The prompt as given (not re-decoded): what was typed comes back byte for byte.
    fputs(prompt, stdout);
    fflush(stdout);
    pb_rng rng;
    pb_rng_seed(&rng, seed);
    cli_out out = {tok};
    sample_stop why;
    double t0 = pb_now();
    int made = sample_generate(&m, &kv, ids, n_prompt, &o, &rng, emit_stdout, &out, &why);
    double secs = pb_now() - t0;
    printf("\n");
    fflush(stdout);
    if (why == SAMPLE_STOP_NAN)
        pb_die(PB_EXIT_DATA, "sample: %s: the model's logits are not finite after %d tokens "
               "(NaN or inf in the weights?)", path, made);
    const char *reason = why == SAMPLE_STOP_EOT ? "; stopped at <|endoftext|>"
                         : why == SAMPLE_STOP_SEQ_LEN
                             ? "; stopped: the sequence filled model.seq_len"
                             : "";
    fprintf(stderr, "sample: %d new tokens in %.2f s (%.0f tokens/s, prefill included)%s\n",
            made, secs, made / (secs > 0 ? secs : 1e-9), reason);

    free(ids);
    gpt2_decode_free(&kv);
    gpt2_free(&m);
    tok_free(tok);
    return 0;
}

// ----------------------------------------------------------------------------
// samples during training

struct sample_trainer {
    const pb_config *cfg;
    tok_tokenizer *tok;
    int32_t *prompt;
    int n_prompt;
    gpt2 cpu_copy;  // built on first use when the training model is not on the CPU
    int have_copy;
    gpt2_kv_cache kv;
    int have_kv;
    // the text of one sample
    char *text;
    size_t len, cap;
};

sample_trainer *sample_trainer_open(const pb_config *cfg, const gpt2 *model, int *code,
                                    char *err, size_t errlen) {
    char inner[1024];
    *code = PB_EXIT_DATA;
    tok_tokenizer *tok = tok_load(cfg->sample_tokenizer, inner, sizeof inner);
    if (!tok) {
        // inner names the path; the key is what the user can change.
        snprintf(err, errlen, "sample.tokenizer: %s (sample.every = %d prints samples with it; "
                 "make tokenizer builds %s; sample.every = 0 turns samples off)", inner,
                 cfg->sample_every, TOK_DEFAULT_PATH);
        return NULL;
    }
    if (model->cfg.vocab_size > tok_vocab_size(tok)) {
        snprintf(err, errlen, "sample.every = %d: model.vocab_size (%d) is larger than the "
                 "GPT-2 tokenizer's (%d), whose text the samples print (sample.every = 0 turns "
                 "them off)", cfg->sample_every, model->cfg.vocab_size, tok_vocab_size(tok));
        tok_free(tok);
        return NULL;
    }
    int n = 0;
    *code = PB_EXIT_USAGE;
    int32_t *ids = encode_prompt(tok, cfg->sample_prompt, &model->cfg, "sample.prompt", &n,
                                 err, errlen);
    if (!ids) {
        tok_free(tok);
        return NULL;
    }
    sample_trainer *s = pb_calloc(1, sizeof *s);
    s->cfg = cfg;
    s->tok = tok;
    s->prompt = ids;
    s->n_prompt = n;
    s->cap = 256;
    s->text = pb_malloc(s->cap);
    return s;
}

static void emit_text(int32_t token, void *user) {
    sample_trainer *s = user;
    size_t len;
    const uint8_t *b = tok_token_bytes(s->tok, token, &len);
    PB_ASSERT(b);
    if (s->len + len + 1 > s->cap) {
        s->cap = (s->len + len + 1) * 2;
        char *grown = realloc(s->text, s->cap);
        if (!grown) pb_die(PB_EXIT_RUNTIME, "out of memory");
        s->text = grown;
    }
    memcpy(s->text + s->len, b, len);
    s->len += len;
    s->text[s->len] = '\0';
}

void sample_trainer_print(sample_trainer *s, const gpt2 *model, int step, int tty) {
    double t0 = pb_now();
    const gpt2 *m = model;
    if (!model->ops->attention_decode) {
        // The table has no cached attention (the CUDA ones): sample a CPU copy of the weights.
        if (!s->have_copy) {
            gpt2_build(&s->cpu_copy, &model->cfg, pb_ops_cpu());
            s->have_copy = 1;
        }
        gpt2_decode_copy_weights(&s->cpu_copy, model);
        m = &s->cpu_copy;
    }
    if (!s->have_kv) {
        gpt2_decode_init(&s->kv, m);
        s->have_kv = 1;
    }
    const pb_config *cfg = s->cfg;
    sample_opts o = {.tokens = cfg->sample_tokens, .temperature = cfg->sample_temperature,
                     .top_k = cfg->sample_top_k, .stop_at_eot = 1, .eot = tok_eot(s->tok),
                     .min_tokens = cfg->sample_min_tokens};
    // Its own stream, a function of (seed, step): sampling changes nothing in the run.
    pb_rng rng;
    pb_rng_seed(&rng, cfg->seed * 0x9E3779B97F4A7C15ull + 0x5A4D91Eull + (uint64_t)step);
    s->len = 0;
    s->text[0] = '\0';
    sample_stop why;
    int made = sample_generate(m, &s->kv, s->prompt, s->n_prompt, &o, &rng, emit_text, s, &why);
    const char *end = why == SAMPLE_STOP_EOT       ? ", <|endoftext|>"
                      : why == SAMPLE_STOP_SEQ_LEN ? ", model.seq_len reached"
                      : why == SAMPLE_STOP_NAN     ? ", stopped: logits not finite"
                                                   : "";
    printf("%ssample (step %d, %d token%s%s, %.2f s):\n%s%s\n", tty ? "\r\033[K" : "", step,
           made, made == 1 ? "" : "s", end, pb_now() - t0, cfg->sample_prompt, s->text);
    fflush(stdout);
}

void sample_trainer_close(sample_trainer *s) {
    if (!s) return;
    if (s->have_kv) gpt2_decode_free(&s->kv);
    if (s->have_copy) gpt2_free(&s->cpu_copy);
    free(s->prompt);
    free(s->text);
    tok_free(s->tok);
    free(s);
}
