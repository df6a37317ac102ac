// sample.h: text generation from a GPT-2: `pebble sample`, and the samples `pebble train`
// prints every sample.every steps. The model runs with a KV cache (model/gpt2_decode.h);
// tokens are drawn from pb_rng, so one seed gives one text.
#ifndef PEBBLE_SAMPLE_H
#define PEBBLE_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "model/gpt2.h"
#include "model/gpt2_decode.h"
#include "train/config.h"

// One token from logits (V): temperature 0 is greedy (the first largest logit); otherwise
// a draw from softmax(logits / temperature) restricted to the top_k largest logits (0 or
// >= V: all of them; ties broken towards the smaller id). A draw takes one pb_rng_uniform;
// greedy takes none.
int32_t sample_pick(const float *logits, int V, double temperature, int top_k, pb_rng *rng);

typedef struct sample_opts {
    int tokens;          // new tokens at most
    double temperature;  // 0 = greedy
    int top_k;           // 0 = all
    int stop_at_eot;     // stop when the model picks eot (which is then not emitted)
    int32_t eot;         // <|endoftext|>
    int min_tokens;      // with stop_at_eot: an eot among the first min_tokens is no stop
                         // (it is emitted, and a new text begins after it)
} sample_opts;

typedef enum {
    SAMPLE_STOP_TOKENS = 0,  // made o->tokens tokens
    SAMPLE_STOP_EOT = 1,     // the model picked <|endoftext|>
    SAMPLE_STOP_SEQ_LEN = 2, // the sequence reached model.seq_len (no position is left to run)
    SAMPLE_STOP_NAN = 3,     // the logits were not finite (NaN or inf weights)
} sample_stop;

// Called with each new token as soon as it is picked.
typedef void (*sample_emit_fn)(int32_t token, void *user);

// Prefills prompt[0..n_prompt) (1 <= n_prompt <= seq_len, ids < V) into kv, then picks
// tokens one at a time, each computed as one new row against the cache. The token at the
// last position, seq_len - 1, is still predicted (as training predicts it); past it the
// sequence stops. Returns the number of tokens emitted; *why says why it stopped.
int sample_generate(const gpt2 *m, gpt2_kv_cache *kv, const int32_t *prompt, int n_prompt,
                    const sample_opts *o, pb_rng *rng, sample_emit_fn emit, void *user,
                    sample_stop *why);

// `pebble sample`; argv[0] is "sample". Returns the exit status; errors exit via pb_die.
int sample_main(int argc, char **argv);

// --- the samples of `pebble train` (sample.every > 0)
typedef struct sample_trainer sample_trainer;

// Loads the tokenizer (sample.tokenizer) and encodes sample.prompt, checking that the model
// can run it.
// Returns NULL with one line in err and the exit status in *code: PB_EXIT_DATA for a
// missing or bad tokenizer file, PB_EXIT_USAGE for a prompt the model cannot run (out of
// its vocabulary, longer than model.seq_len).
sample_trainer *sample_trainer_open(const pb_config *cfg, const gpt2 *model, int *code,
                                    char *err, size_t errlen);
// Prints "sample (step N, ...):" and the text. A model on another backend than the CPU is
// first copied into a CPU model. tty: clear the progress bar's line first.
void sample_trainer_print(sample_trainer *s, const gpt2 *model, int step, int tty);
void sample_trainer_close(sample_trainer *s);

#endif
