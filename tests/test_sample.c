// test_sample.c: generation: KV-cache decoding against gpt2_forward's full recomputation,
// greedy decoding against the argmax of full forwards, seeds, the sampling distribution
// against its closed form, `pebble sample` end to end with its errors, and the samples
// `pebble train` prints.
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/common.h"
#include "model/gpt2.h"
#include "model/gpt2_decode.h"
#include "train/sample.h"
#include "tests/cli.h"
#include "tests/corrupt.h"

// ----------------------------------------------------------------------------
// a tiny random model

// L=2, NH=4, C=32 (D=8), T=24, V=100 (Vp=128). The weights are the GPT-2 init scaled by 8,
// so that attention scores are O(1) and the softmax is far from uniform: a wrong key or a
// wrong position then moves the logits by much more than the tolerance.
static void tiny_model(gpt2 *m, const char *attn, uint64_t seed) {
    gpt2_config c = {.n_layer = 2, .n_head = 4, .n_embd = 32, .seq_len = 24, .vocab_size = 100};
    snprintf(c.attention, sizeof c.attention, "%s", attn);
    gpt2_build(m, &c, pb_ops_cpu());
    gpt2_init_weights(m, seed);
    m->ops->scale(m->p.mem, 8.0f, m->p.num_floats);
}

static void random_tokens(int32_t *t, int n, int V, uint64_t seed) {
    pb_rng r;
    pb_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (int32_t)(pb_rng_u64(&r) % (uint64_t)V);
}

// Logits (T, Vp) of a full forward of tokens[0..T), copied out of the model.
static float *full_logits(gpt2 *m, const int32_t *tokens, int T) {
    gpt2_forward(m, tokens, NULL, 1, T);
    size_t n = (size_t)T * m->cfg.padded_vocab;
    float *out = malloc(n * sizeof(float));
    m->ops->download(out, m->acts.logits, n * sizeof(float));
    return out;
}

// fp32 tolerance, relative to the row's largest |logit| (~20 here): the decode path and
// gpt2_forward run the same matmuls, LayerNorms and GELUs on the same rows (per row
// bit-identical: the CPU ops do not depend on the rows around them), but flash attention
// sums in another order (an online softmax over 64-key tiles; decode makes one pass per
// row, in naive.c's order). Measured: 4.7e-6 with flash, exactly 0 with naive. 1e-4 leaves
// a 20x margin and is still 10^4 times below what one wrong key or position changes (~10).
#define LOGIT_RTOL 1e-4

static double row_max_abs(const float *x, int n) {
    double mx = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, fabs(x[i]));
    return mx;
}

static void expect_logits_close(const float *got, const float *want, int Vp, int pos,
                                const char *what) {
    double scale = row_max_abs(want, Vp), worst = 0;
    for (int i = 0; i < Vp; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
    cr_expect(worst <= LOGIT_RTOL * scale, "%s: position %d: max |diff| %g > %g * %g", what, pos,
              worst, LOGIT_RTOL, scale);
}

// ----------------------------------------------------------------------------
// the KV cache against full recomputation

static void decode_matches(const char *attn) {
    gpt2 m;
    tiny_model(&m, attn, 11);
    int T = m.cfg.seq_len, Vp = m.cfg.padded_vocab;
    int32_t tok[24];
    random_tokens(tok, T, m.cfg.vocab_size, 3);
    float *want = full_logits(&m, tok, T);
    // sanity of the reference: positions differ, so returning the wrong one would show
    cr_assert(fabs(want[0] - want[(size_t)(T - 1) * Vp]) > 1e-2);
    cr_assert(row_max_abs(want, Vp) > 1.0, "logits too small to test anything");

    gpt2_kv_cache kv;
    gpt2_decode_init(&kv, &m);
    float *got = malloc((size_t)Vp * sizeof(float));
    // one token at a time: a prefill of one, then steps
    gpt2_decode_prefill(&m, &kv, tok, 1, got);
    expect_logits_close(got, want, Vp, 0, "prefill of 1");
    for (int p = 1; p < T; p++) {
        gpt2_decode_step(&m, &kv, tok[p], p, got);
        cr_assert_eq(kv.len, p + 1);
        expect_logits_close(got, want + (size_t)p * Vp, Vp, p, "step");
    }
    // a prefill of 9 (attention of 9 queries at once against the cache), then steps
    gpt2_decode_prefill(&m, &kv, tok, 9, got);
    expect_logits_close(got, want + (size_t)8 * Vp, Vp, 8, "prefill of 9");
    for (int p = 9; p < T; p++) {
        gpt2_decode_step(&m, &kv, tok[p], p, got);
        expect_logits_close(got, want + (size_t)p * Vp, Vp, p, "step after prefill");
    }
    // the whole sequence as one prefill
    gpt2_decode_prefill(&m, &kv, tok, T, got);
    expect_logits_close(got, want + (size_t)(T - 1) * Vp, Vp, T - 1, "prefill of T");

    // going back: a step at pos < len replaces the cache from pos on. Another sequence with
    // the same first 5 tokens, decoded over the cache of the first one.
    int32_t tok2[24];
    memcpy(tok2, tok, sizeof tok2);
    random_tokens(tok2 + 5, T - 5, m.cfg.vocab_size, 99);
    float *want2 = full_logits(&m, tok2, T);
    for (int p = 5; p < T; p++) {
        gpt2_decode_step(&m, &kv, tok2[p], p, got);
        expect_logits_close(got, want2 + (size_t)p * Vp, Vp, p, "rewound step");
    }
    free(want);
    free(want2);
    free(got);
    gpt2_decode_free(&kv);
    gpt2_free(&m);
}

Test(sample, kv_cache_logits_equal_full_forward_flash) { decode_matches("flash"); }
Test(sample, kv_cache_logits_equal_full_forward_naive) { decode_matches("naive"); }

Test(sample, decode_is_the_same_for_one_and_two_threads) {
    gpt2 m;
    tiny_model(&m, "flash", 5);
    int T = m.cfg.seq_len, Vp = m.cfg.padded_vocab;
    int32_t tok[24];
    random_tokens(tok, T, m.cfg.vocab_size, 8);
    gpt2_kv_cache kv;
    gpt2_decode_init(&kv, &m);
    float *a = malloc((size_t)Vp * sizeof(float)), *b = malloc((size_t)Vp * sizeof(float));
    omp_set_num_threads(1);
    gpt2_decode_prefill(&m, &kv, tok, T, a);
    omp_set_num_threads(2);
    gpt2_decode_prefill(&m, &kv, tok, T, b);
    cr_expect(memcmp(a, b, (size_t)Vp * sizeof(float)) == 0, "1 and 2 threads differ");
    free(a);
    free(b);
    gpt2_decode_free(&kv);
    gpt2_free(&m);
}

// ----------------------------------------------------------------------------
// generation

static int32_t got_tokens[64];
static int n_got;
static void collect(int32_t t, void *user) {
    (void)user;
    got_tokens[n_got++] = t;
}

static int generate(gpt2 *m, const int32_t *prompt, int n_prompt, sample_opts *o, uint64_t seed,
                    int32_t *out, sample_stop *why) {
    gpt2_kv_cache kv;
    gpt2_decode_init(&kv, m);
    pb_rng r;
    pb_rng_seed(&r, seed);
    n_got = 0;
    int n = sample_generate(m, &kv, prompt, n_prompt, o, &r, collect, NULL, why);
    cr_assert_eq(n, n_got);
    memcpy(out, got_tokens, (size_t)n * sizeof(int32_t));
    gpt2_decode_free(&kv);
    return n;
}

Test(sample, greedy_is_the_argmax_of_full_forwards_step_by_step) {
    gpt2 m;
    tiny_model(&m, "flash", 21);
    int V = m.cfg.vocab_size, Vp = m.cfg.padded_vocab;
    int32_t seq[24] = {7, 42, 3}, out[64], again[64];
    sample_opts o = {.tokens = 15, .temperature = 0.0, .top_k = 50, .stop_at_eot = 0};
    sample_stop why;
    int n = generate(&m, seq, 3, &o, 1, out, &why);
    cr_assert_eq(n, 15);
    cr_assert_eq(why, SAMPLE_STOP_TOKENS);
    // deterministic, and independent of the seed
    cr_assert_eq(generate(&m, seq, 3, &o, 2, again, &why), 15);
    cr_assert(memcmp(out, again, sizeof(int32_t) * 15) == 0, "greedy runs differ");
    // each token is the argmax of the full forward's last logits over the sequence so far
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        int T = 3 + i;
        float *l = full_logits(&m, seq, T);
        const float *last = l + (size_t)(T - 1) * Vp;
        int best = 0;
        for (int j = 1; j < V; j++)
            if (last[j] > last[best]) best = j;
        cr_expect_eq(out[i], best, "token %d: decode picked %d, full forward's argmax is %d", i,
                     out[i], best);
        free(l);
        distinct += i > 0 && out[i] != out[i - 1];
        seq[T] = out[i];
    }
    cr_assert(distinct > 0, "a constant output checks little");
    gpt2_free(&m);
}

Test(sample, seeds_fix_the_text) {
    gpt2 m;
    tiny_model(&m, "flash", 4);
    int32_t prompt[2] = {1, 2}, a[64], b[64], c[64];
    sample_opts o = {.tokens = 20, .temperature = 1.0, .top_k = 0, .stop_at_eot = 0};
    sample_stop why;
    cr_assert_eq(generate(&m, prompt, 2, &o, 1234, a, &why), 20);
    cr_assert_eq(generate(&m, prompt, 2, &o, 1234, b, &why), 20);
    cr_assert_eq(generate(&m, prompt, 2, &o, 1235, c, &why), 20);
    cr_expect(memcmp(a, b, sizeof(int32_t) * 20) == 0, "one seed gave two texts");
    cr_expect(memcmp(a, c, sizeof(int32_t) * 20) != 0, "two seeds gave one text");
    gpt2_free(&m);
}

Test(sample, top_k_1_is_greedy) {
    gpt2 m;
    tiny_model(&m, "flash", 9);
    int32_t prompt[1] = {5}, g[64], k1[64];
    sample_opts o = {.tokens = 20, .temperature = 0.0, .stop_at_eot = 0};
    sample_stop why;
    generate(&m, prompt, 1, &o, 1, g, &why);
    o.temperature = 1.7;
    o.top_k = 1;
    generate(&m, prompt, 1, &o, 77, k1, &why);
    cr_expect(memcmp(g, k1, sizeof(int32_t) * 20) == 0, "top-k 1 differs from greedy");
    gpt2_free(&m);
}

Test(sample, stops_at_eot_and_at_seq_len) {
    gpt2 m;
    tiny_model(&m, "flash", 21);
    int32_t prompt[24] = {7, 42, 3}, out[64], first[64];
    sample_opts o = {.tokens = 15, .temperature = 0.0, .stop_at_eot = 0};
    sample_stop why;
    generate(&m, prompt, 3, &o, 1, first, &why);
    // make the 5th greedy token the "end of text": generation stops before it
    o.stop_at_eot = 1;
    o.eot = first[4];
    int stop = 0;
    while (first[stop] != o.eot) stop++;  // it may come earlier too
    cr_assert_eq(generate(&m, prompt, 3, &o, 1, out, &why), stop);
    cr_assert_eq(why, SAMPLE_STOP_EOT);
    // min_tokens: an eot before it is emitted and generation goes on (greedy: the same
    // tokens as without stopping), up to the first eot at or past min_tokens
    o.min_tokens = stop + 1;
    int n = generate(&m, prompt, 3, &o, 1, out, &why);
    int next = stop + 1;
    while (next < 15 && first[next] != o.eot) next++;
    cr_assert_eq(n, next);
    cr_assert(memcmp(out, first, sizeof(int32_t) * (size_t)n) == 0);
    cr_assert_eq(out[stop], o.eot);
    cr_assert_eq(why, next < 15 ? SAMPLE_STOP_EOT : SAMPLE_STOP_TOKENS);
    o.min_tokens = 0;
    // seq_len 24: a prompt of 20 leaves positions 20..23 and the prediction after 23: 5 tokens
    random_tokens(prompt, 20, m.cfg.vocab_size, 1);
    o.stop_at_eot = 0;
    o.tokens = 50;
    cr_assert_eq(generate(&m, prompt, 20, &o, 1, out, &why), 5);
    cr_assert_eq(why, SAMPLE_STOP_SEQ_LEN);
    // a full prompt still gets its one prediction
    random_tokens(prompt, 24, m.cfg.vocab_size, 1);
    cr_assert_eq(generate(&m, prompt, 24, &o, 1, out, &why), 1);
    cr_assert_eq(why, SAMPLE_STOP_SEQ_LEN);
    // and exactly --tokens when that comes first
    o.tokens = 5;
    cr_assert_eq(generate(&m, prompt, 20, &o, 1, out, &why), 5);
    cr_assert_eq(why, SAMPLE_STOP_TOKENS);
    gpt2_free(&m);
}

// ----------------------------------------------------------------------------
// the sampling distribution against its closed form

// Draws n tokens and checks each frequency against p within 5 standard deviations
// (binomial), and that tokens with p = 0 never come.
static void expect_distribution(const float *logits, int V, double temperature, int top_k,
                                const double *p, int n) {
    int count[16] = {0};
    pb_rng r;
    pb_rng_seed(&r, 2024);
    for (int i = 0; i < n; i++) {
        int32_t t = sample_pick(logits, V, temperature, top_k, &r);
        cr_assert(t >= 0 && t < V);
        count[t]++;
    }
    for (int i = 0; i < V; i++) {
        double sd = sqrt(n * p[i] * (1 - p[i]));
        if (p[i] == 0)
            cr_expect_eq(count[i], 0, "T=%g k=%d: token %d (p=0) drawn %d times", temperature,
                         top_k, i, count[i]);
        else
            cr_expect(fabs(count[i] - n * p[i]) <= 5 * sd + 1,
                      "T=%g k=%d: token %d drawn %d times, expected %.1f +- %.1f", temperature,
                      top_k, i, count[i], n * p[i], sd);
    }
}

// softmax(logits / T) over the ids in keep (a 0/1 mask), by the formula.
static void closed_form(const float *logits, int V, double T, const int *keep, double *p) {
    double z = 0;
    for (int i = 0; i < V; i++) z += keep[i] ? exp(logits[i] / T) : 0;
    for (int i = 0; i < V; i++) p[i] = keep[i] ? exp(logits[i] / T) / z : 0;
}

Test(sample, draws_follow_softmax_with_temperature_and_top_k) {
    const float logits[6] = {1.0f, 2.0f, 0.5f, 2.0f, -1.0f, 1.5f};
    double p[6];
    int all[6] = {1, 1, 1, 1, 1, 1};
    int n = 200000;
    closed_form(logits, 6, 1.0, all, p);
    expect_distribution(logits, 6, 1.0, 0, p, n);
    expect_distribution(logits, 6, 1.0, 6, p, n);   // k = V: all
    expect_distribution(logits, 6, 1.0, 99, p, n);  // k > V: all
    closed_form(logits, 6, 0.5, all, p);
    expect_distribution(logits, 6, 0.5, 0, p, n);
    closed_form(logits, 6, 3.0, all, p);
    expect_distribution(logits, 6, 3.0, 0, p, n);
    // top 3: ids 1 and 3 (2.0, tied), then 5 (1.5)
    int top3[6] = {0, 1, 0, 1, 0, 1};
    closed_form(logits, 6, 0.8, top3, p);
    expect_distribution(logits, 6, 0.8, 3, p, n);
    // top 1 of a tie: the smaller id, always
    int top1[6] = {0, 1, 0, 0, 0, 0};
    closed_form(logits, 6, 1.0, top1, p);
    expect_distribution(logits, 6, 1.0, 1, p, n);
}

Test(sample, greedy_takes_the_first_maximum_and_no_random_draw) {
    const float logits[5] = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
    pb_rng a, b;
    pb_rng_seed(&a, 7);
    pb_rng_seed(&b, 7);
    for (int i = 0; i < 10; i++) cr_expect_eq(sample_pick(logits, 5, 0.0, 0, &a), 1);
    cr_expect_eq(pb_rng_u64(&a), pb_rng_u64(&b), "greedy consumed random numbers");
}

typedef struct {
    float logit;
    int id;
} scored;

// The order top-k promises: larger logit first, then smaller id.
static int by_logit_then_id(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id - b->id;
}

Test(sample, top_k_on_a_large_vocabulary_matches_sorting) {
    // 50257 logits on a grid of 2000 values (many ties at the k-th place): the heap must keep
    // exactly the k first of a full sort by (logit, -id).
    int V = 50257, k = 50;
    float *logits = malloc((size_t)V * sizeof(float));
    scored *all = malloc((size_t)V * sizeof(scored));
    pb_rng r;
    pb_rng_seed(&r, 3);
    for (int i = 0; i < V; i++) {
        logits[i] = (float)(pb_rng_u64(&r) % 2000) / 100.0f;
        all[i] = (scored){logits[i], i};
    }
    qsort(all, (size_t)V, sizeof(scored), by_logit_then_id);
    cr_assert_eq(all[k - 1].logit, all[k].logit, "the test wants a tie across the k-th place");
    int *in_top = calloc((size_t)V, sizeof(int)), *seen = calloc((size_t)V, sizeof(int));
    for (int j = 0; j < k; j++) in_top[all[j].id] = 1;
    // at temperature 100 the k candidates are near-uniform: 5000 draws reach every one of them
    // (~100 each), and nothing else
    for (int i = 0; i < 5000; i++) seen[sample_pick(logits, V, 100.0, k, &r)]++;
    for (int i = 0; i < V; i++) {
        if (!in_top[i]) cr_expect_eq(seen[i], 0, "id %d (not in the top %d) was drawn", i, k);
        else cr_expect(seen[i] > 0, "id %d (in the top %d) never drawn", i, k);
    }
    free(logits);
    free(all);
    free(in_top);
    free(seen);
}

// ----------------------------------------------------------------------------
// pebble sample, end to end

static const char *tokenizer_path(void) {
    const char *p = getenv("PEBBLE_TOKENIZER");
    return p ? p : TOK_DEFAULT_PATH;
}


// A run directory with a checkpoint: 2 training steps of a GPT-2 with the full GPT-2
// vocabulary (so that any prompt is in it), on a small learnable shard.
static void make_checkpoint(void) {
    make_tmp("sample");
    size_t n = 8192;
    uint16_t *tok = malloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) tok[i] = (uint16_t)((i * 7 + 3) % 300);
    char path[300], e[256];
    snprintf(path, sizeof path, "%s/train_000000.bin", tmp);
    cr_assert(shard_write(path, tok, n, e, sizeof e) == 0, "%s", e);
    free(tok);
    cr_assert_eq(run("%s train --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 "
                     "--set model.seq_len=32 --set train.batch_size=2 --set train.steps=2 "
                     "--set train.warmup_steps=1 --set run.plot=false --set data.train=%s "
                     "--set run.dir=%s/run",
                     pebble_bin(), path, tmp),
                 0, "%s", run_stderr());
}

Test(sample_cli, samples_a_checkpoint, .fini = cleanup, .timeout = 120) {
    make_checkpoint();
    const char *bin = pebble_bin(), *tk = tokenizer_path();
    // a run directory: its newest checkpoint
    cr_assert_eq(run("%s sample --ckpt %s/run --prompt 'Hello, world' --tokens 12 --seed 5 "
                     "--tokenizer %s", bin, tmp, tk), 0, "%s", run_stderr());
    char first[1 << 16];
    snprintf(first, sizeof first, "%s", run_stdout());
    cr_assert(strncmp(first, "Hello, world", 12) == 0, "output: %s", first);
    cr_assert(strlen(first) > 13, "nothing generated: '%s'", first);
    cr_assert(strstr(run_stderr(), "sample: 12 new tokens"), "%s", run_stderr());
    // the file itself, the same seed: the same text
    cr_assert_eq(run("%s sample --ckpt %s/run/ckpt_00000002.h5 --prompt 'Hello, world' "
                     "--tokens 12 --seed 5 --tokenizer %s", bin, tmp, tk), 0, "%s", run_stderr());
    cr_assert_str_eq(run_stdout(), first);
    // another seed: another text
    cr_assert_eq(run("%s sample --ckpt %s/run --prompt 'Hello, world' --tokens 12 --seed 6 "
                     "--tokenizer %s", bin, tmp, tk), 0, "%s", run_stderr());
    cr_assert_str_neq(run_stdout(), first);
    // an empty prompt starts from <|endoftext|>; greedy; the context (32) ends it
    cr_assert_eq(run("%s sample --ckpt %s/run --tokens 500 --temperature 0 --no-stop-at-eot "
                     "--tokenizer %s", bin, tmp, tk), 0, "%s", run_stderr());
    cr_assert(strstr(run_stderr(), "sample: 32 new tokens") && strstr(run_stderr(), "model.seq_len"), "%s",
              run_stderr());
    // --help
    cr_assert_eq(run("%s sample --help", bin), 0);
    cr_assert(strstr(run_stdout(), "--temperature"), "%s", run_stdout());
}

// Exit status code and one line "pebble: ...needle..." on stderr.
static void expect_error(int rc, int code, const char *needle) {
    char *e = run_stderr();
    cr_expect_eq(rc, code, "exit %d, expected %d: %s", rc, code, e);
    cr_expect(strncmp(e, "pebble: ", 8) == 0 && strstr(e, needle), "expected 'pebble: ...%s': %s",
              needle, e);
    cr_expect(strchr(e, '\n') == e + strlen(e) - 1, "more than one line: %s", e);
}

Test(sample_cli, errors, .fini = cleanup, .timeout = 120) {
    make_checkpoint();
    const char *bin = pebble_bin(), *tk = tokenizer_path();
    char junk[400];
    snprintf(junk, sizeof junk, "%s/junk.h5", tmp);
    FILE *f = fopen(junk, "w");
    fputs("not a checkpoint at all\n", f);
    fclose(f);
    expect_error(run("%s sample --ckpt %s/none.h5 --tokenizer %s", bin, tmp, tk), 3, "none.h5");
    expect_error(run("%s sample --ckpt %s --tokenizer %s", bin, junk, tk), 3, "not an HDF5 file");
    // a directory without checkpoints
    expect_error(run("%s sample --ckpt %s --tokenizer %s", bin, tmp, tk), 3, "no checkpoint in");
    // 40 words: longer than seq_len 32
    expect_error(run("%s sample --ckpt %s/run --tokenizer %s --prompt '%s'", bin, tmp, tk,
                     "one two three four five six seven eight nine ten one two three four five "
                     "six seven eight nine ten one two three four five six seven eight nine ten "
                     "one two three four five six seven eight nine ten"),
                 2, "longer than model.seq_len = 32");
    expect_error(run("%s sample --ckpt %s/run --tokenizer %s/none.bin", bin, tmp, tmp), 3,
                 "make tokenizer");
    expect_error(run("%s sample --ckpt %s/run --tokens 0", bin, tmp), 2, "--tokens");
    expect_error(run("%s sample --ckpt %s/run --tokens 12x", bin, tmp), 2, "--tokens");
    expect_error(run("%s sample --ckpt %s/run --temperature -1", bin, tmp), 2, "--temperature");
    expect_error(run("%s sample --ckpt %s/run --temperature nan", bin, tmp), 2, "--temperature");
    expect_error(run("%s sample --ckpt %s/run --top-k -3", bin, tmp), 2, "--top-k");
    expect_error(run("%s sample --ckpt %s/run --seed -1", bin, tmp), 2, "--seed");
    expect_error(run("%s sample --ckpt %s/run --prompt", bin, tmp), 2, "--prompt needs a value");
    expect_error(run("%s sample --ckpt %s/run --bogus", bin, tmp), 2, "unknown option '--bogus'");
    expect_error(run("%s sample --prompt hi", bin), 2, "--ckpt");
}

// ----------------------------------------------------------------------------
// samples during training

#define TINY64                                                                              \
    "--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32 " \
    "--set model.vocab_size=64 --set train.batch_size=2 --set train.warmup_steps=1 "          \
    "--set train.steps=4 --set run.plot=false --set data.train=%s/train_*.bin "

Test(sample_train, prints_samples_and_changes_nothing_else, .fini = cleanup, .timeout = 120) {
    make_data("sample");  // tests/cli.h: a learnable 64-token shard
    const char *bin = pebble_bin();
    // vocabulary 64: GPT-2 ids 0..63 are the bytes '!'..'`', so the prompt "!" is id 0 and
    // every sampled token prints as one ASCII byte
    cr_assert_eq(run("%s train " TINY64 "--set sample.every=2 --set sample.tokens=8 "
                     "--set sample.prompt=! --set run.dir=%s/a", bin, tmp, tmp),
                 0, "%s", run_stderr());
    char *o = run_stdout();
    char *s2 = strstr(o, "sample (step 2, 8 tokens, ");
    char *s4 = strstr(o, "sample (step 4, 8 tokens, ");
    cr_assert(s2 && s4 && !strstr(o, "sample (step 1") && !strstr(o, "sample (step 3"), "%s", o);
    // the text: the prompt and 8 bytes of '!'..'`'
    char *text = strchr(s4, '\n') + 1;
    cr_assert_eq(text[0], '!', "%s", o);
    for (int i = 1; i <= 8; i++) cr_assert(text[i] >= '!' && text[i] <= '`', "%s", o);
    cr_assert_eq(text[9], '\n', "%s", o);
    // sampling draws from its own stream: the run is the same as without it
    char a[4096], b[4096], dir[400];
    snprintf(dir, sizeof dir, "%s/a", tmp);
    losses_of(dir, a, sizeof a);
    cr_assert_eq(run("%s train " TINY64 "--set run.dir=%s/b", bin, tmp, tmp), 0, "%s", run_stderr());
    cr_assert(!strstr(run_stdout(), "sample ("), "%s", run_stdout());
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    cr_assert(strlen(a) > 8);
    cr_assert_str_eq(a, b, "sampling changed the training run");

    // an empty prompt is <|endoftext|>, 50256: not in a 64-token vocabulary
    expect_error(run("%s train " TINY64 "--set sample.every=2 --set run.dir=%s/c", bin, tmp,
                     tmp), 2, "outside the model's vocabulary");
    // the tokenizer is looked for in data/cache, relative to the working directory
    char *abs_bin = realpath(bin, NULL);
    cr_assert(abs_bin);
    expect_error(run("cd %s && %s train " TINY64 "--set sample.every=2 --set sample.prompt=! "
                     "--set run.dir=%s/d", tmp, abs_bin, tmp, tmp), 3, "make tokenizer");
    free(abs_bin);
}

// sample.tokenizer: the file the samples are printed with, checked before the first step.
Test(sample_train, tokenizer_key_is_checked_at_startup, .fini = cleanup, .timeout = 120) {
    make_data("sample");
    const char *bin = pebble_bin();
    // missing: one line naming the key and the path, exit code 3, no step taken
    expect_error(run("%s train " TINY64 "--set sample.every=2 --set sample.prompt=! "
                     "--set sample.tokenizer=%s/none.bin --set run.dir=%s/a", bin, tmp, tmp,
                     tmp), 3, "sample.tokenizer: ");
    char want[600];
    snprintf(want, sizeof want, "%s/none.bin: No such file or directory", tmp);
    cr_assert(strstr(run_stderr(), want), "expected '%s': %s", want, run_stderr());
    cr_assert(!strstr(run_stdout(), "step 1"), "training started: %s", run_stdout());
    // with samples off the file is not needed
    cr_assert_eq(run("%s train " TINY64 "--set sample.tokenizer=%s/none.bin --set run.dir=%s/b",
                     bin, tmp, tmp, tmp), 0, "%s", output());
    // a copy elsewhere, run from a directory where the default path does not exist
    cr_assert_eq(run("cp %s %s/tok.bin", tokenizer_path(), tmp), 0, "%s", output());
    char *abs_bin = realpath(bin, NULL);
    cr_assert(abs_bin);
    cr_assert_eq(run("cd %s && %s train " TINY64 "--set sample.every=2 --set sample.tokens=8 "
                     "--set sample.prompt=! --set sample.tokenizer=%s/tok.bin --set run.dir=%s/c",
                     tmp, abs_bin, tmp, tmp, tmp), 0, "%s", output());
    free(abs_bin);
    cr_assert(strstr(run_stdout(), "sample (step 2, 8 tokens, ") &&
              strstr(run_stdout(), "sample (step 4, 8 tokens, "), "%s", run_stdout());
}

// A run directory whose newest checkpoint is damaged: it is named with its cause and the one
// before it is sampled; all damaged: each named, then one line saying none loads.
Test(sample_cli, a_run_dir_with_damaged_checkpoints_names_each_skipped, .fini = cleanup,
     .timeout = 120) {
    make_checkpoint();
    const char *bin = pebble_bin(), *tk = tokenizer_path();
    // two more steps: checkpoints 2 and 4, both kept
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/run --set train.steps=4 "
                     "--set checkpoint.keep_last=0", bin, tmp), 0, "%s", run_stderr());
    char ck2[400], ck4[400], want[1200];
    snprintf(ck2, sizeof ck2, "%s/run/ckpt_00000002.h5", tmp);
    snprintf(ck4, sizeof ck4, "%s/run/ckpt_00000004.h5", tmp);
    flip_byte_in(ck4, "/model/transformer.ln_f.weight");
    cr_assert_eq(run("%s sample --ckpt %s/run --tokens 4 --tokenizer %s", bin, tmp, tk), 0, "%s",
                 run_stderr());
    char *e = run_stderr();
    snprintf(want, sizeof want, "pebble: skipping checkpoint %s: cannot read dataset "
             "/model/transformer.ln_f.weight: ", ck4);
    cr_assert(strncmp(e, want, strlen(want)) == 0 && strstr(e, "checksum"), "%s", e);
    snprintf(want, sizeof want, "sample: %s |", ck2);
    cr_assert(strstr(e, want), "expected '%s': %s", want, e);

    flip_byte_in(ck2, "/model/transformer.wte.weight");
    cr_assert_eq(run("%s sample --ckpt %s/run --tokens 4 --tokenizer %s", bin, tmp, tk), 3, "%s",
                 run_stderr());
    e = run_stderr();
    snprintf(want, sizeof want, "pebble: skipping checkpoint %s: ", ck2);
    cr_assert(strstr(e, want), "expected '%s': %s", want, e);
    snprintf(want, sizeof want, "pebble: sample: no checkpoint in %s/run loads (2 tried, each "
             "skipped above)\n", tmp);
    cr_assert(strstr(e, want), "expected '%s': %s", want, e);
    cr_assert(!strstr(e, "--resume"), "%s", e);
    cr_assert_str_eq(run_stdout(), "");
}
