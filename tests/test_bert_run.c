// test_bert_run.c: build/pebble training BERT as a user would: masked LM on BERT token shards
// (pieces [CLS] ... [SEP]) and classification on labelled-sequence files, each on data a
// model can learn (the loss must fall, the accuracy rise); a run stopped and resumed equals
// the straight run to the bit; `pebble eval` gives the trainer's validation loss and
// accuracy; bad combinations are one line; the export's names and config.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/lseq.h"
#include "tests/ckpt_loaded.h"
#include "tests/cli.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/lra_pos.h"

TestSuite(bert_run, .fini = cleanup);

#define V 160  // ids 104..159 are words; 0..103 BERT's specials as in bert-base-uncased


// Rows of 4..32 tokens [CLS] w ... [SEP]: label 1 when word 130 occurs in the row, else 0
// (about half of the rows): a model must look at every position to tell.
// Rows of a task a classifier can learn: label 1 when token 130 is in the row. With zeros,
// about half of the tokens between the first and last are 0 (padding for model.pad_token = 0).
static void make_rows_of(const char *name, int rows, uint64_t seed, int zeros) {
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    lseq_info in = {0, 32, 1, 2, V};
    lseq_writer *w = lseq_create(path, &in, err, sizeof err);
    cr_assert(w, "%s", err);
    pb_rng rng;
    pb_rng_seed(&rng, seed);
    int32_t tok[32];
    for (int r = 0; r < rows; r++) {
        int len = 4 + (int)(pb_rng_u64(&rng) % 29), label = (int)(pb_rng_u64(&rng) % 2);
        tok[0] = 101;
        for (int i = 1; i < len - 1; i++) {
            tok[i] = 104 + (int)(pb_rng_u64(&rng) % 56);
            if (tok[i] == 130) tok[i] = 131;
            if (zeros && pb_rng_u64(&rng) % 2) tok[i] = 0;
        }
        if (label) tok[1 + (int)(pb_rng_u64(&rng) % (uint64_t)(len - 2))] = 130;
        tok[len - 1] = 102;
        cr_assert(lseq_append(w, tok, len, label, err, sizeof err) == 0, "%s", err);
    }
    cr_assert(lseq_finish(w, err, sizeof err) == 0, "%s", err);
}
static void make_rows(const char *name, int rows, uint64_t seed) {
    make_rows_of(name, rows, seed, 0);
}

#define BERT_TINY                                                                            \
    "--set model.family=bert --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 " \
    "--set model.seq_len=32 --set model.vocab_size=160 --set train.batch_size=8 "               \
    "--set train.warmup_steps=4 --set train.lr=3e-3 --set train.val_every=8 "                  \
    "--set train.val_batches=4 --set run.plot=false "

// The last "val_loss" and "val_acc" of a run's metrics.jsonl.
static void last_val(const char *dir, double *loss, double *acc) {
    char p[400], line[512];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    cr_assert(f, "no %s", p);
    *loss = *acc = -1;
    while (fgets(line, sizeof line, f)) {
        char *l = strstr(line, "\"val_loss\": "), *a = strstr(line, "\"val_acc\": ");
        if (l) *loss = atof(l + 12);
        if (a) *acc = atof(a + 11);
    }
    fclose(f);
}


static void expect_identical(const char *pa, const char *pb) {
    loaded_t a, b;
    load(&a, pa);
    load(&b, pb);
    size_t n = a.m.p->num_floats;
    cr_assert_eq(n, b.m.p->num_floats);
    cr_assert(memcmp(a.m.p->mem, b.m.p->mem, n * 4) == 0, "parameters differ");
    cr_assert(memcmp(a.m.p->m, b.m.p->m, n * 4) == 0 && memcmp(a.m.p->v, b.m.p->v, n * 4) == 0,
              "AdamW moments differ");
    loaded_free(&a);
    loaded_free(&b);
}

Test(bert_run, mlm_learns_and_resumes_to_the_bit, .timeout = 600) {
    make_tmp("bert-mlm");
    make_bert_pieces("train_000000.bin", 30000);
    make_bert_pieces("val_000000.bin", 3000);
    const char *bin = pebble_bin();
    char a[8192], b[8192], dir[400], pa[500], pb[500];
#define MLM BERT_TINY "--set data.train=%s/train_*.bin --set data.val=%s/val_*.bin "
    // straight: 96 steps of 2 micro-batches
    cr_assert_eq(run("%s train " MLM "--set train.steps=96 --set train.total_batch_tokens=512 "
                     "--set train.val_every=16 --set run.dir=%s/a", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "bert L2 H2 C32 F128 T32 V160") && strstr(output(), "data (mlm)"),
              "%s", output());
    double l0, acc0, l1, acc1;
    snprintf(dir, sizeof dir, "%s/a", tmp);
    // the first validation (step 16) against the last (step 96): learning, by a margin
    FILE *f = fopen(strcat(strcpy(pa, dir), "/metrics.jsonl"), "r");
    cr_assert(f);
    char line[512];
    l0 = -1;
    while (fgets(line, sizeof line, f))
        if (l0 < 0 && strstr(line, "\"val_loss\"")) {
            l0 = atof(strstr(line, "\"val_loss\": ") + 12);
            acc0 = atof(strstr(line, "\"val_acc\": ") + 11);
        }
    fclose(f);
    last_val(dir, &l1, &acc1);
    cr_assert(l0 > 0 && l1 < l0 - 0.3 && acc1 > acc0, "val loss %g -> %g, accuracy %g -> %g\n%s",
              l0, l1, acc0, acc1, slurp(pa));
    cr_assert(l1 < log(56.0), "val loss %g: not below guessing among the words", l1);

    // stopped after step 48 by SIGTERM, resumed: the same losses, weights and moments
    cr_assert_eq(run("PEBBLE_TEST_SIGNAL_AT_STEP=48 %s train " MLM "--set train.steps=96 "
                     "--set train.total_batch_tokens=512 --set train.val_every=16 "
                     "--set run.dir=%s/b", bin, tmp, tmp, tmp),
                 0, "%s", output());
    cr_assert_eq(run("%s train --resume auto --set run.dir=%s/b", bin, tmp), 0, "%s", output());
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/b", tmp);
    losses_of(dir, b, sizeof b);
    cr_assert_str_eq(a, b, "losses differ after a resume");
    snprintf(pa, sizeof pa, "%s/a/ckpt_00000096.h5", tmp);
    snprintf(pb, sizeof pb, "%s/b/ckpt_00000096.h5", tmp);
    expect_identical(pa, pb);

    // eval on the validation data, with the run's batch size and val_batches, gives the
    // trainer's last validation loss and accuracy
    cr_assert_eq(run("%s eval --ckpt %s/a --data '%s/val_*.bin' --json", bin, tmp, tmp), 0, "%s",
                 output());
    double el = atof(strstr(run_stdout(), "\"loss\": ") + 8);
    double ea = atof(strstr(run_stdout(), "\"accuracy\": ") + 12);
    snprintf(dir, sizeof dir, "%s/a", tmp);
    last_val(dir, &l1, &acc1);
    cr_assert(fabs(el - l1) < 5e-6 && fabs(ea - acc1) < 5e-6, "eval %g %g, trainer %g %g", el, ea,
              l1, acc1);
}

// --init from a masked-LM checkpoint into a classifier: every encoder tensor is the
// checkpoint's, the pooler and classifier (which it lacks) keep their init, and the MLM
// head's tensors in the file are ignored. The same into another encoder shape is refused.
Test(bert_run, init_a_classifier_from_an_mlm_checkpoint) {
    make_tmp("bert-init");
    make_bert_pieces("train_000000.bin", 3000);
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " BERT_TINY "--set data.train=%s/train_000000.bin "
                     "--set train.steps=3 --set run.dir=%s/r", bin, tmp, tmp), 0, "%s", output());
    char path[400], err[1024];
    snprintf(path, sizeof path, "%s/r/ckpt_00000003.h5", tmp);
    pb_config cfg;
    config_defaults(&cfg);
    cr_assert_eq(ckpt_load_config(path, &cfg, err, sizeof err), 0, "%s", err);
    loaded_t mlm;
    load(&mlm, path);
    snprintf(cfg.head, sizeof cfg.head, "classify");
    cfg.num_labels = 3;
    pb_model cls, fresh;
    model_build(&cls, &cfg, pb_ops_cpu());
    model_init_weights(&cls, 5);
    model_build(&fresh, &cfg, pb_ops_cpu());
    model_init_weights(&fresh, 5);
    int skipped = -1;
    cr_assert_eq(ckpt_load_init(path, cls.p, &skipped, err, sizeof err), 0, "%s", err);
    cr_assert_eq(skipped, 4, "the pooler and the classifier: 4 tensors, not %d", skipped);
    for (int i = 0; i < cls.p->num; i++) {
        const pb_param *p = &cls.p->tab[i];
        const pb_param *q = params_find(mlm.m.p, p->name);
        const float *want = p->head ? fresh.p->mem + p->offset : mlm.m.p->mem + q->offset;
        cr_assert(p->head || q, "%s: not in the MLM model", p->name);
        cr_expect(memcmp(cls.p->mem + p->offset, want, p->numel * 4) == 0, "%s differs", p->name);
    }
    model_free(&cls);
    model_free(&fresh);
    // another encoder: one line naming the tensor
    cfg.n_embd = 64;
    model_build(&cls, &cfg, pb_ops_cpu());
    cr_assert_eq(ckpt_load_init(path, cls.p, &skipped, err, sizeof err), -1);
    cr_assert(strstr(err, "word_embeddings.weight has shape (160, 32), the model expects (160, 64)"),
              "%s", err);
    model_free(&cls);
    adamw_free(&mlm.o);
    model_free(&mlm.m);
    // and through the command line, from the run directory
    make_rows("train.lseq", 64, 3);
    cr_assert_eq(run("%s train " BERT_TINY "--init %s/r --set model.head=classify "
                     "--set data.train=%s/train.lseq --set train.steps=2 --set run.dir=%s/c", bin,
                     tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "note: 4 tensors of this model's head are not in"), "%s", output());
}

// A classifier trained on rows made with make_rows_of (zeros) and the extra flags learns the
// task (validation accuracy >= 0.8), and `pebble eval` of its checkpoint gives the trainer's
// last validation accuracy.
static void learn_and_eval(const char *name, int zeros, const char *extra) {
    make_tmp(name);
    make_rows_of("train.lseq", 2000, 1, zeros);
    make_rows_of("val.lseq", 256, 2, zeros);
    make_rows_of("test.lseq", 200, 4, zeros);
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " BERT_TINY "--set model.head=classify --set model.pool=mean %s"
                     "--set data.train=%s/train.lseq --set data.val=%s/val.lseq "
                     "--set data.test=%s/test.lseq --set train.steps=120 --set train.val_every=40 "
                     "--set run.dir=%s/r", bin, extra, tmp, tmp, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), "classify 2 labels, mean pooling"), "%s", output());
    double l, acc;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/r", tmp);
    last_val(dir, &l, &acc);
    cr_assert(acc >= 0.8 && l < 0.5, "val loss %g accuracy %g: the task was not learned", l, acc);
    cr_assert_eq(run("%s eval --ckpt %s/r --data %s/val.lseq", bin, tmp, tmp), 0, "%s", output());
    char want[64];
    snprintf(want, sizeof want, "accuracy %.6f", acc);
    cr_assert(strstr(run_stdout(), want), "eval: %s, trainer: %s", run_stdout(), want);
}

Test(bert_run, classify_learns_and_eval_agrees, .timeout = 600) {
    learn_and_eval("bert-cls", 0, "");
    const char *bin = pebble_bin();
    // the test data, once after the last step (all 25 full batches of its 200 rows), is
    // what eval gives on it with every batch
    char p[400], line[512];
    snprintf(p, sizeof p, "%s/r/metrics.jsonl", tmp);
    FILE *f = fopen(p, "r");
    cr_assert(f);
    double tl = -1, ta = -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "\"test_loss\": ")) {
            tl = atof(strstr(line, "\"test_loss\": ") + 13);
            ta = atof(strstr(line, "\"test_acc\": ") + 12);
        }
    fclose(f);
    cr_assert(tl > 0 && ta > 0.7, "test loss %g accuracy %g", tl, ta);
    cr_assert_eq(run("%s eval --ckpt %s/r --data %s/test.lseq --batches 25 --json", bin, tmp, tmp),
                 0, "%s", output());
    double el = atof(strstr(run_stdout(), "\"loss\": ") + 8);
    double ea = atof(strstr(run_stdout(), "\"accuracy\": ") + 12);
    cr_assert(fabs(el - tl) < 5e-6 && fabs(ea - ta) < 5e-6, "eval %g %g, the run's test %g %g",
              el, ea, tl, ta);
}

// model.pad_token = 0 on rows half of zeros: the classifier learns from the other tokens,
// and `pebble eval` of its checkpoint (which keeps the key) gives the trainer's numbers.
Test(bert_run, classify_with_pad_token_learns, .timeout = 600) {
    learn_and_eval("bert-pad", 1, "--set model.pad_token=0 ");
}

// Each bad combination: exit code and one line naming it.
Test(bert_run, bad_combinations_are_one_line) {
    make_tmp("bert-bad");
    make_bert_pieces("train_000000.bin", 3000);
    make_rows("train.lseq", 64, 1);
    const char *bin = pebble_bin();
    struct {
        const char *set, *want;
        int code;
    } cases[] = {
        {"--set train.task=lm --set data.train=%s/train_000000.bin",
         "train.task = lm does not go with model.family = bert, model.head = mlm (it trains mlm)", 2},
        {"--set data.train=%s/train.lseq", "bad magic", 3},
        {"--set model.head=classify --set data.train=%s/train_000000.bin",
         "not a labelled-sequence file", 3},
        {"--set model.head=classify --set model.num_labels=3 --set data.train=%s/train.lseq",
         "the data has 2 classes but model.num_labels = 3", 3},
        {"--set sample.every=5 --set data.train=%s/train_000000.bin",
         "text samples need a gpt2 model", 2},
        {"--set model.family=gpt2 --set model.ffn=100 --set data.train=%s/train_000000.bin",
         "model.ffn = 100: gpt2's MLP is 4 * n_embd = 128 wide", 2},
        {"--set model.family=gpt2 --set model.norm=post --set data.train=%s/train_000000.bin",
         "model.norm = post: gpt2's blocks are pre-LN", 2},
        {"--set model.family=gpt2 --set model.init=fan_in --set data.train=%s/train_000000.bin",
         "model.init = fan_in: gpt2 draws GPT-2's init (set auto)", 2},
        {"--set model.family=gpt2 --set model.pad_token=0 --set data.train=%s/train_000000.bin",
         "model.pad_token = 0: gpt2 attends to every token (set -1)", 2},
        {"--set model.pad_token=0 --set data.train=%s/train_000000.bin",
         "model.pad_token = 0: the MLM head predicts positions (set -1)", 2},
        {"--set model.head=classify --set model.pad_token=0 --set data.train=%s/train.lseq",
         "model.pad_token = 0: model.pool = cls reads the first token (set -1)", 2},
        {"--set model.head=classify --set model.pool=mean --set model.pad_token=160 "
         "--set data.train=%s/train.lseq",
         "model.pad_token = 160: it is outside the vocabulary (set -1)", 2},
        {"--set model.head=classify --set model.pool=mean --set model.pad_token=-2 "
         "--set data.train=%s/train.lseq", "model.pad_token", 2},
        {"--set model.family=gpt2 --set model.embed_norm=false "
         "--set data.train=%s/train_000000.bin",
         "model.embed_norm = false: gpt2 has no embedding LayerNorm to leave out (set true)", 2},
        {"--set model.embed_norm=false --set data.train=%s/train_000000.bin",
         "model.embed_norm = false: a post-LN encoder would feed unnormalised embeddings", 2},
        {"--set model.family=gpt2 --set model.pooler=relu --set data.train=%s/train_000000.bin",
         "model.pooler = relu: gpt2 has no classifier head (set tanh)", 2},
        {"--set model.pooler=relu --set data.train=%s/train_000000.bin",
         "model.pooler = relu: only model.head = classify has a pooler (set tanh)", 2},
        {"--set model.head=classify --set model.pooler=gelu --set data.train=%s/train.lseq",
         "model.pooler", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char set[512];
        snprintf(set, sizeof set, cases[i].set, tmp);
        int rc = run("%s train " BERT_TINY "%s --set train.steps=2 --set run.dir=%s/r%zu", bin,
                     set, tmp, i);
        cr_expect_eq(rc, cases[i].code, "case %zu: exit %d: %s", i, rc, output());
        cr_expect(strstr(run_stderr(), cases[i].want), "case %zu: want '%s', got: %s", i,
                  cases[i].want, run_stderr());
    }
}

// The export of a BERT MLM checkpoint: every tensor of the table under its Hugging Face name
// (the tied decoder left out), and a BertConfig that says the model's shape.
Test(bert_run, export_names_and_config) {
    make_tmp("bert-export");
    make_bert_pieces("train_000000.bin", 3000);
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " BERT_TINY "--set data.train=%s/train_000000.bin "
                     "--set train.steps=2 --set run.dir=%s/r", bin, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s export --ckpt %s/r --out %s/hf", bin, tmp, tmp), 0, "%s", output());
    char p[400];
    snprintf(p, sizeof p, "%s/hf/config.json", tmp);
    const char *cj = slurp(p);
    const char *want[] = {"\"BertForMaskedLM\"", "\"model_type\": \"bert\"", "\"vocab_size\": 160",
                          "\"hidden_size\": 32", "\"num_hidden_layers\": 2",
                          "\"intermediate_size\": 128", "\"max_position_embeddings\": 32",
                          "\"layer_norm_eps\": 9.99999996e-13", "\"hidden_act\": \"gelu\""};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(cj, want[i]), "config.json lacks %s:\n%s", want[i], cj);
    snprintf(p, sizeof p, "%s/hf/model.safetensors", tmp);
    const char *st = slurp(p) + 8;
    const char *names[] = {"\"bert.embeddings.word_embeddings.weight\":{\"dtype\":\"F32\",\"shape\":[160,32]",
                           "\"bert.encoder.layer.1.attention.self.key.weight\":{\"dtype\":\"F32\",\"shape\":[32,32]",
                           "\"bert.encoder.layer.0.intermediate.dense.weight\":{\"dtype\":\"F32\",\"shape\":[128,32]",
                           "\"cls.predictions.bias\":{\"dtype\":\"F32\",\"shape\":[160]",
                           "\"cls.predictions.transform.LayerNorm.weight\""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(strstr(st, names[i]), "safetensors header lacks %s", names[i]);
    cr_expect(!strstr(st, "decoder"), "the tied decoder was written");
}

// A classifier with the keys set trains 4 steps on tmp/train.lseq into tmp/x, its output
// describes it with says, and `pebble export` refuses it in one line with why, exit 3.
static void trains_and_is_not_exported(const char *set, const char *says, const char *why) {
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train " BERT_TINY "--set model.head=classify %s"
                     "--set data.train=%s/train.lseq --set train.steps=4 --set run.dir=%s/x",
                     bin, set, tmp, tmp), 0, "%s", output());
    cr_assert(strstr(output(), says), "%s", output());
    cr_assert_eq(run("%s export --ckpt %s/x --out %s/hf", bin, tmp, tmp), 3, "%s", output());
    cr_assert(strstr(run_stderr(), why), "%s", run_stderr());
}

// A pre-LN encoder (model.norm = pre) trains, says so, and is not exported as a BERT
// (transformers' BERT is post-LN).
Test(bert_run, pre_ln_trains_and_is_not_exported) {
    make_tmp("bert-pre");
    make_rows("train.lseq", 256, 1);
    trains_and_is_not_exported("--set model.norm=pre ", "classify 2 labels, cls pooling, pre-LN",
                               "a pre-LN encoder (model.norm = pre): transformers' BERT is "
                               "post-LN");
}

// model.embed_norm = false (pre-LN only, so never exported: transformers' BERT is post-LN):
// the classifier learns without the embeddings' LayerNorm and says so.
Test(bert_run, raw_embeddings_learn, .timeout = 600) {
    const char *set = "--set model.norm=pre --set model.embed_norm=false ";
    learn_and_eval("bert-raw", 0, set);
    trains_and_is_not_exported(set, "pre-LN, no embedding LayerNorm", "a pre-LN encoder");
}

// model.pooler = relu (LRA's classifier head: dense to ffn, ReLU): the classifier learns with
// it, says so, and is not exported (transformers' BertPooler is dense C -> C with tanh).
Test(bert_run, relu_head_learns_and_is_not_exported, .timeout = 600) {
    learn_and_eval("bert-relu", 0, "--set model.pooler=relu ");
    trains_and_is_not_exported("--set model.pooler=relu ", "cls pooling, ReLU head",
                               "model.pooler = relu (LRA's classifier head, dense to ffn): "
                               "transformers' BertPooler is dense n_embd -> n_embd with tanh");
}

// pebble lra upsample-pos: a 4 x 4-position classifier onto an 8 x 8 grid. Position (i, j)
// of the new table is (i/2, j/2) of the old; every other tensor is the same; the result
// trains with model.seq_len = 64. Bad grids and families are one line.
Test(bert_run, lra_upsample_pos_duplicates_positions_gridwise) {
    make_tmp("bert-pos");
    char path[400], out[400], err[1024];
    snprintf(path, sizeof path, "%s/rows.lseq", tmp);
    lseq_info in = {0, 16, 1, 2, 256};
    lseq_writer *w = lseq_create(path, &in, err, sizeof err);
    cr_assert(w, "%s", err);
    int32_t tok[16];
    for (int r = 0; r < 32; r++) {
        for (int t = 0; t < 16; t++) tok[t] = (r * 7 + t * 13) % 256;
        cr_assert(lseq_append(w, tok, 16, r % 2, err, sizeof err) == 0, "%s", err);
    }
    cr_assert(lseq_finish(w, err, sizeof err) == 0, "%s", err);
    const char *bin = pebble_bin();
    cr_assert_eq(run("%s train --set model.family=bert --set model.head=classify "
                     "--set model.pool=mean --set model.n_layer=1 --set model.n_head=2 "
                     "--set model.n_embd=16 --set model.seq_len=16 --set model.vocab_size=256 "
                     "--set data.train=%s --set train.batch_size=4 --set train.steps=2 "
                     "--set run.plot=false --set run.dir=%s/r", bin, path, tmp), 0, "%s", output());
    snprintf(out, sizeof out, "%s/big.h5", tmp);
    cr_assert_eq(run("%s lra upsample-pos --from %s/r --to 64 --out %s", bin, tmp, out), 0, "%s",
                 output());
    loaded_t a, b;
    snprintf(path, sizeof path, "%s/r/ckpt_00000002.h5", tmp);
    load(&a, path);
    load(&b, out);
    cr_assert_eq(b.m.bert.cfg.seq_len, 64);
    for (int i = 0; i < b.m.p->num; i++) {
        const pb_param *q = &b.m.p->tab[i], *p = params_find(a.m.p, q->name);
        const float *x = a.m.p->mem + p->offset, *y = b.m.p->mem + q->offset;
        if (strstr(q->name, "position_embeddings")) {
            for (int r = 0; r < 64; r++)  // row r = (r/8, r%8) of the 8 x 8 grid
                cr_expect(memcmp(y + r * 16, x + ((r / 8) / 2 * 4 + (r % 8) / 2) * 16, 64) == 0,
                          "position %d", r);
        } else {
            cr_expect(memcmp(x, y, p->numel * 4) == 0, "%s changed", q->name);
        }
    }
    for (loaded_t *x = &a; x; x = x == &a ? &b : NULL) {
        adamw_free(&x->o);
        model_free(&x->m);
    }
    cr_assert_eq(run("%s lra upsample-pos --from %s/r --to 48 --out %s/x.h5", bin, tmp, tmp), 2);
    cr_assert(strstr(run_stderr(), "learns 16 positions and --to is 48: both must be square"),
              "%s", run_stderr());
    cr_assert_eq(run("%s lra upsample-pos --from %s/r --to 64 --out %s", bin, tmp, out), 1);
    cr_assert(strstr(run_stderr(), "exists"), "%s", run_stderr());
}

// model.attention = blocksparse in BERT (bidirectional, each batch's padding through the
// descriptor's kv_len): every block at T = 32, one block of 32, is flash's one tile: the same
// losses. Block-diagonal (two blocks of 16, each position sees its own half) still learns:
// a masked word's neighbours are mostly in its block.
Test(bert_run, blocksparse_mlm, .timeout = 300) {
    make_tmp("bert-bs");
    make_bert_pieces("train_000000.bin", 30000);
    make_bert_pieces("val_000000.bin", 3000);
    const char *bin = pebble_bin();
    char a[8192], b[8192], dir[400];
    cr_assert_eq(run("%s train " MLM "--set train.steps=16 --set model.attention=flash "
                     "--set run.dir=%s/f", bin, tmp, tmp, tmp), 0, "%s", output());
    cr_assert_eq(run("%s train " MLM "--set train.steps=16 --set model.attention=blocksparse "
                     "--set attention.block=32 --set run.dir=%s/bs", bin, tmp, tmp, tmp), 0, "%s",
                 output());
    snprintf(dir, sizeof dir, "%s/f", tmp);
    losses_of(dir, a, sizeof a);
    snprintf(dir, sizeof dir, "%s/bs", tmp);
    losses_of(dir, b, sizeof b);
    cr_assert(strlen(a) > 20);
    cr_assert_str_eq(a, b, "flash and dense blocksparse BERT differ");
    cr_assert_eq(run("%s train " MLM "--set train.steps=48 --set model.attention=blocksparse "
                     "--set attention.sparsity=local+global+random --set attention.block=16 "
                     "--set attention.window=0 --set attention.global=0 --set attention.random=0 "
                     "--set run.dir=%s/lgr", bin, tmp, tmp, tmp), 0, "%s", output());
    double loss, acc;
    snprintf(dir, sizeof dir, "%s/lgr", tmp);
    last_val(dir, &loss, &acc);
    cr_assert(loss > 0 && loss < log(V) - 1.0, "block-diagonal BERT: val loss %g (log V %g)", loss,
              log(V));
}
