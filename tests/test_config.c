// test_config.c: the config table, INI loading, --set, validation, help and the written INI.
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/config.h"

// ----------------------------------------------------------------------------
// Helpers

// Writes text to a fresh file under /tmp; its path goes into path (at least 64 bytes).
static void write_tmp(char *path, const char *text) {
    strcpy(path, "/tmp/pebble_cfg_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t n = strlen(text);
    cr_assert(write(fd, text, n) == (ssize_t)n);
    close(fd);
}

// Loads text as a config file over the defaults; returns config_load_file's result, with
// the error in err and "<path>:" in prefix for building the expected message.
static int load_text(pb_config *c, const char *text, char *err, size_t errlen, char *path) {
    config_defaults(c);
    write_tmp(path, text);
    int rc = config_load_file(c, path, err, errlen);
    unlink(path);
    return rc;
}

// The error of loading text must be exactly "<path>:<want>".
static void expect_file_error(const char *text, const char *want) {
    pb_config c, before;
    char err[1024], path[64], full[1200];
    int rc = load_text(&c, text, err, sizeof err, path);
    cr_assert_eq(rc, -1, "loading should fail with '%s'", want);
    snprintf(full, sizeof full, "%s:%s", path, want);
    cr_expect_str_eq(err, full);
    // A failed load leaves the config as it was.
    config_defaults(&before);
    cr_expect_eq(memcmp(&c, &before, sizeof c), 0, "failed load modified the config");
}

static void expect_set_error(const char *assignment, const char *want) {
    pb_config c, before;
    char err[1024];
    config_defaults(&c);
    config_defaults(&before);
    cr_assert_eq(config_set(&c, assignment, err, sizeof err), -1, "--set %s should fail",
                 assignment);
    cr_expect_str_eq(err, want);
    cr_expect_eq(memcmp(&c, &before, sizeof c), 0, "failed --set modified the config");
}

static void set_ok(pb_config *c, const char *assignment) {
    char err[1024] = "";
    cr_assert_eq(config_set(c, assignment, err, sizeof err), 0, "--set %s: %s", assignment, err);
}

// A config that passes validation: the defaults plus the one required key.
static void valid_config(pb_config *c) {
    config_defaults(c);
    set_ok(c, "data.train=data/tiny/train_*.bin");
}

static void expect_invalid(const pb_config *c, const char *want) {
    char err[1024] = "";
    cr_assert_eq(config_validate(c, err, sizeof err), -1, "validation should fail with '%s'", want);
    cr_expect_str_eq(err, want);
}

// ----------------------------------------------------------------------------
// Defaults

Test(config, defaults_are_the_documented_ones) {
    pb_config c;
    memset(&c, 0xAB, sizeof c);  // garbage, to see every field written
    config_defaults(&c);
    cr_expect_str_eq(c.model_family, "gpt2");
    cr_expect_eq(c.n_layer, 4);
    cr_expect_eq(c.n_head, 4);
    cr_expect_eq(c.n_embd, 128);
    cr_expect_eq(c.seq_len, 128);
    cr_expect_eq(c.vocab_size, 50257);
    cr_expect_str_eq(c.attention, "auto");
    cr_expect_str_eq(c.train_data, "");
    cr_expect_str_eq(c.val_data, "");
    cr_expect_eq(c.batch_size, 8);
    cr_expect_eq(c.total_batch_tokens, 0);
    cr_expect_eq(c.steps, 500);
    cr_expect_eq(c.lr, 1e-3);
    cr_expect_eq(c.min_lr_frac, 0.1);
    cr_expect_eq(c.warmup_steps, 20);
    cr_expect_eq(c.weight_decay, 0.1);
    cr_expect_eq(c.beta1, 0.9);
    cr_expect_eq(c.beta2, 0.95);
    cr_expect_eq(c.eps, 1e-8);
    cr_expect_eq(c.grad_clip, 1.0);
    cr_expect_eq(c.seed, 1337ULL);
    cr_expect_eq(c.val_every, 50);
    cr_expect_eq(c.val_batches, 8);
    cr_expect_str_eq(c.run_dir, "runs/default");
    cr_expect_eq(c.plot, 1);
    cr_expect_eq(c.sample_every, 0);
    cr_expect_eq(c.sample_tokens, 64);
    cr_expect_str_eq(c.sample_prompt, "");
    cr_expect_eq(c.sample_temperature, 1.0);
    cr_expect_eq(c.sample_top_k, 50);
    cr_expect_str_eq(c.sample_tokenizer, "data/cache/gpt2_tokenizer.bin");
    cr_expect_str_eq(c.device, "cpu");
    cr_expect_str_eq(c.precision, "auto");
    cr_expect_eq(c.threads, 0);
    // Padding and string tails are zeroed, so two default configs are equal bytes.
    pb_config d;
    memset(&d, 0x5A, sizeof d);
    config_defaults(&d);
    cr_expect_eq(memcmp(&c, &d, sizeof c), 0);
}

Test(config, an_empty_required_key_in_a_file_is_caught_by_validation) {
    pb_config c;
    char err[1024] = "", path[64];
    cr_assert_eq(load_text(&c, "[data]\ntrain =\n", err, sizeof err, path), 0, "%s", err);
    expect_invalid(&c, "missing required key data.train (set it in the config file or with "
                       "--set data.train=PATTERN)");
}

Test(config, defaults_fail_validation_only_for_the_required_key) {
    pb_config c;
    config_defaults(&c);
    expect_invalid(&c, "missing required key data.train (set it in the config file or with "
                       "--set data.train=PATTERN)");
    valid_config(&c);
    char err[256] = "";
    cr_expect_eq(config_validate(&c, err, sizeof err), 0, "%s", err);
}

// ----------------------------------------------------------------------------
// Loading a good file

Test(config, loads_a_good_file) {
    pb_config c;
    char err[1024] = "", path[64];
    const char *text =
        "; a comment\n"
        "# another comment\n"
        "[model]\n"
        "n_layer = 6\n"
        "n_head=8 ; inline comment\n"
        "  n_embd = 256\n"  // indented: an ordinary line, not a continuation
        "attention = naive\n"
        "\n"
        "[data]\n"
        "train = data/fortunes/train_*.bin\n"
        "val = data/fortunes/val_*.bin\r\n"  // CRLF
        "[train]\n"
        "lr = 6e-4\n"
        "lr = 3e-4\n"  // given twice: the last wins
        "min_lr_frac = 0\n"
        "total_batch_tokens = 4096\n"
        "seed = 18446744073709551615\n"
        "[run]\n"
        "dir = runs/x y\n"
        "plot = off\n"
        "[system]\n"
        "threads = 3\n";
    cr_assert_eq(load_text(&c, text, err, sizeof err, path), 0, "%s", err);
    cr_expect_eq(c.n_layer, 6);
    cr_expect_eq(c.n_head, 8);
    cr_expect_eq(c.n_embd, 256);
    cr_expect_str_eq(c.attention, "naive");
    cr_expect_str_eq(c.train_data, "data/fortunes/train_*.bin");
    cr_expect_str_eq(c.val_data, "data/fortunes/val_*.bin");
    cr_expect_eq(c.lr, 3e-4);
    cr_expect_eq(c.min_lr_frac, 0.0);
    cr_expect_eq(c.total_batch_tokens, 4096);
    cr_expect_eq(c.seed, 18446744073709551615ULL);
    cr_expect_str_eq(c.run_dir, "runs/x y");
    cr_expect_eq(c.plot, 0);
    cr_expect_eq(c.threads, 3);
    // Keys the file does not name keep their defaults.
    cr_expect_eq(c.seq_len, 128);
    cr_expect_eq(c.steps, 500);
    cr_expect_str_eq(c.device, "cpu");
    cr_expect_eq(config_validate(&c, err, sizeof err), 0, "%s", err);
}

Test(config, accepts_every_spelling_of_a_bool) {
    const char *yes[] = {"true", "1", "yes", "on", "TRUE", "On"};
    const char *no[] = {"false", "0", "no", "off", "False", "NO"};
    pb_config c;
    char a[64];
    config_defaults(&c);
    for (int i = 0; i < 6; i++) {
        snprintf(a, sizeof a, "run.plot=%s", no[i]);
        set_ok(&c, a);
        cr_expect_eq(c.plot, 0, "%s", a);
        snprintf(a, sizeof a, "run.plot=%s", yes[i]);
        set_ok(&c, a);
        cr_expect_eq(c.plot, 1, "%s", a);
    }
}

Test(config, a_path_as_long_as_the_field_loads_from_a_file) {
    char text[2048], value[PB_PATH_MAX], err[1024] = "", path[64];
    memset(value, 'p', PB_PATH_MAX - 1);
    value[PB_PATH_MAX - 1] = '\0';
    snprintf(text, sizeof text, "[data]\ntrain = %s\n", value);
    pb_config c;
    cr_assert_eq(load_text(&c, text, err, sizeof err, path), 0, "%s", err);
    cr_expect_str_eq(c.train_data, value);
}

// ----------------------------------------------------------------------------
// File errors, each exactly, with its line

Test(config, error_cannot_open) {
    pb_config c;
    char err[256];
    config_defaults(&c);
    cr_assert_eq(config_load_file(&c, "/nonexistent/pebble.ini", err, sizeof err), -1);
    cr_expect_str_eq(err, "/nonexistent/pebble.ini: cannot open: No such file or directory");
}

Test(config, error_cannot_read_a_directory) {
    pb_config c;
    char err[256];
    config_defaults(&c);
    cr_assert_eq(config_load_file(&c, "/tmp", err, sizeof err), -1);
    cr_expect_str_eq(err, "/tmp: cannot read: Is a directory");
}

Test(config, error_unknown_section_names_its_header_line) {
    expect_file_error("[model]\nn_layer = 2\n\n[foo]\nbar = 1\n", "4: unknown section [foo]");
    expect_file_error("[model]\n[trian]\nsteps = 1\n",
                      "2: unknown section [trian] (did you mean [train]?)");
}

Test(config, error_unknown_key_with_and_without_a_suggestion) {
    expect_file_error("[train]\nsteps = 10\nlrr = 1\n",
                      "3: unknown key 'train.lrr' (did you mean 'train.lr'?)");
    expect_file_error("[train]\nsetps = 1\n",
                      "2: unknown key 'train.setps' (did you mean 'train.steps'?)");
    expect_file_error("[train]\nbanana = 1\n", "2: unknown key 'train.banana'");
    // The right key in the wrong section.
    expect_file_error("[model]\nlr = 1\n", "2: unknown key 'model.lr' (did you mean 'train.lr'?)");
    // A prefix of a key in the same section.
    expect_file_error("[train]\nwarmup = 5\n",
                      "2: unknown key 'train.warmup' (did you mean 'train.warmup_steps'?)");
    expect_file_error("lr = 1\n",
                      "1: key 'lr' is outside any [section] (did you mean 'train.lr'?)");
}

Test(config, error_bad_values) {
    expect_file_error("[train]\n\nlr = abc\n", "3: train.lr: 'abc' is not a number");
    expect_file_error("[train]\nlr = 1e-3x\n", "2: train.lr: '1e-3x' is not a number");
    expect_file_error("[train]\nlr =\n", "2: train.lr: '' is not a number");
    expect_file_error("[train]\nlr = inf\n", "2: train.lr: 'inf' is not a finite number");
    expect_file_error("[train]\nbeta1 = nan\n", "2: train.beta1: 'nan' is not a finite number");
    expect_file_error("[train]\neps = 1e999\n", "2: train.eps: '1e999' is not a finite number");
    expect_file_error("[train]\nsteps = 12x\n", "2: train.steps: '12x' is not an integer");
    expect_file_error("[train]\nsteps = 1.5\n", "2: train.steps: '1.5' is not an integer");
    expect_file_error("[train]\nsteps = 99999999999\n",
                      "2: train.steps: '99999999999' is out of range");
    expect_file_error("[train]\ntotal_batch_tokens = 99999999999999999999\n",
                      "2: train.total_batch_tokens: '99999999999999999999' is out of range");
    expect_file_error("[train]\nseed = -1\n", "2: train.seed: '-1' is not a non-negative integer");
    expect_file_error("[train]\nseed = 18446744073709551616\n",
                      "2: train.seed: '18446744073709551616' is out of range");
    expect_file_error("[model]\nattention = fast\n",
                      "2: model.attention: 'fast' must be one of auto|flash|naive|wgmma|blocksparse|smallcache");
    expect_file_error("[system]\ndevice = tpu\n",
                      "2: system.device: 'tpu' must be one of auto|cpu|cuda");
    expect_file_error("[model]\nn_layer = 0\n", "2: model.n_layer: '0' must be >= 1");
    expect_file_error("[train]\nlr = 0\n", "2: train.lr: '0' must be > 0");
    expect_file_error("[train]\nbeta2 = 1\n", "2: train.beta2: '1' must be < 1");
    expect_file_error("[train]\nmin_lr_frac = 1.5\n", "2: train.min_lr_frac: '1.5' must be <= 1");
    expect_file_error("[model]\ndropout = 1\n", "2: model.dropout: '1' must be < 1");
    expect_file_error("[model]\ndropout = -0.1\n", "2: model.dropout: '-0.1' must be >= 0");
    expect_file_error("[model]\nattn_dropout = 1\n", "2: model.attn_dropout: '1' must be < 1");
    expect_file_error("[run]\nplot = maybe\n", "2: run.plot: 'maybe' is not true or false");
    expect_file_error("[run]\ndir =\n", "2: run.dir: must not be empty");
}

Test(config, error_string_too_long) {
    char text[2048], want[256];
    char value[PB_PATH_MAX + 1];
    memset(value, 'x', PB_PATH_MAX);  // one more than fits
    value[PB_PATH_MAX] = '\0';
    snprintf(text, sizeof text, "[run]\n\ndir = %s\n", value);
    snprintf(want, sizeof want, "3: run.dir: '%.32s...' is too long (max %d characters)", value,
             PB_PATH_MAX - 1);
    expect_file_error(text, want);
    expect_file_error("[model]\nfamily = gpt2gpt2gpt2gpt2gpt2gpt2gpt2gpt2x\n",
                      "2: model.family: 'gpt2gpt2gpt2gpt2gpt2gpt2gpt2gpt2x' is too long "
                      "(max 31 characters)");
}

Test(config, error_syntax) {
    expect_file_error("[model]\nn_layer 4\n", "2: syntax error");
    expect_file_error("[model]\nn_layer = 4\n[train\n", "3: syntax error");
    // The first error wins, whichever kind it is.
    expect_file_error("[model]\nn_layer = x\nnonsense\n",
                      "2: model.n_layer: 'x' is not an integer");
    expect_file_error("[model]\nnonsense\nn_layer = x\n", "2: syntax error");
}

Test(config, error_line_too_long) {
    char text[4096];
    char value[2001];
    memset(value, 'y', 2000);
    value[2000] = '\0';
    snprintf(text, sizeof text, "[data]\ntrain = a\nval = %s\n", value);
    pb_config c;
    char err[1024], path[64], want[256];
    cr_assert_eq(load_text(&c, text, err, sizeof err, path), -1);
    snprintf(want, sizeof want, "%s:3: line is too long (max ", path);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "got '%s'", err);
}

// ----------------------------------------------------------------------------
// --set

Test(config, set_overrides_the_file) {
    pb_config c;
    char err[1024] = "", path[64];
    cr_assert_eq(load_text(&c, "[train]\nlr = 3e-4\nsteps = 100\n[data]\ntrain = a/*.bin\n", err,
                           sizeof err, path),
                 0, "%s", err);
    set_ok(&c, "train.lr=0.01");
    set_ok(&c, " model.attention = naive ");
    set_ok(&c, "data.val=v=1/*.bin");  // only the first '=' splits
    cr_expect_eq(c.lr, 0.01);
    cr_expect_eq(c.steps, 100);  // from the file, untouched
    cr_expect_str_eq(c.attention, "naive");
    cr_expect_str_eq(c.val_data, "v=1/*.bin");
    cr_expect_str_eq(c.train_data, "a/*.bin");
}

Test(config, set_errors) {
    expect_set_error("train.lr=abc", "--set train.lr=abc: train.lr: 'abc' is not a number");
    expect_set_error("foo", "--set foo: expected section.key=value");
    expect_set_error("lr=1", "--set lr=1: expected section.key=value");
    expect_set_error("train.=1", "--set train.=1: expected section.key=value");
    expect_set_error(".lr=1", "--set .lr=1: expected section.key=value");
    expect_set_error("train.lrr=1",
                     "--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)");
    expect_set_error("trian.lr=1",
                     "--set trian.lr=1: unknown section [trian] (did you mean [train]?)");
    expect_set_error("train.steps=0", "--set train.steps=0: train.steps: '0' must be >= 1");
    expect_set_error("model.attention=fast",
                     "--set model.attention=fast: model.attention: 'fast' must be one of "
                     "auto|flash|naive|wgmma|blocksparse|smallcache");
    expect_set_error("data.val=a ;b", "--set data.val=a ;b: data.val: 'a ;b' has a ';' that an INI "
                                      "file reads as a comment");
    expect_set_error("sample.tokenizer=",
                     "--set sample.tokenizer=: sample.tokenizer: must not be empty");
    expect_set_error("run.dir=a\nb",
                     "--set run.dir=a\nb: run.dir: 'a\nb' contains a control character");
    char big[PB_PATH_MAX + 32], want[256];
    snprintf(big, sizeof big, "run.dir=");
    memset(big + 8, 'z', PB_PATH_MAX);
    big[8 + PB_PATH_MAX] = '\0';
    pb_config c;
    char err[2048];
    config_defaults(&c);
    cr_assert_eq(config_set(&c, big, err, sizeof err), -1);
    snprintf(want, sizeof want, ": run.dir: '%.32s...' is too long (max %d characters)", big + 8,
             PB_PATH_MAX - 1);
    cr_expect(strstr(err, want) != NULL, "got '%s'", err);
}

// ----------------------------------------------------------------------------
// Validation

Test(config, validation_errors) {
    pb_config c;
    valid_config(&c);
    set_ok(&c, "model.n_embd=130");
    expect_invalid(&c, "model.n_embd (130) must be divisible by model.n_head (4)");

    valid_config(&c);
    set_ok(&c, "train.total_batch_tokens=1000");
    expect_invalid(&c, "train.total_batch_tokens (1000) must be a multiple of train.batch_size * "
                       "model.seq_len (8 * 128 = 1024)");
    set_ok(&c, "train.total_batch_tokens=4096");
    char err[256] = "";
    cr_expect_eq(config_validate(&c, err, sizeof err), 0, "%s", err);

    valid_config(&c);
    // a warmup longer than the run is valid: the trainer clamps it (test_safety.c)
    set_ok(&c, "train.warmup_steps=501");
    cr_expect_eq(config_validate(&c, err, sizeof err), 0, "%s", err);
    set_ok(&c, "train.warmup_steps=500");
    cr_expect_eq(config_validate(&c, err, sizeof err), 0, "%s", err);

    // A struct filled by code, not the parser, is held to the table's limits too.
    valid_config(&c);
    c.steps = 0;
    expect_invalid(&c, "train.steps (0) must be >= 1");
    valid_config(&c);
    c.beta1 = 1.0;
    expect_invalid(&c, "train.beta1 (1) must be < 1");
    valid_config(&c);
    c.lr = -0.5;
    expect_invalid(&c, "train.lr (-0.5) must be > 0");
    valid_config(&c);
    strcpy(c.attention, "fast");
    expect_invalid(&c, "model.attention (fast) must be one of auto|flash|naive|wgmma|blocksparse|smallcache");
    valid_config(&c);
    c.run_dir[0] = '\0';
    expect_invalid(&c, "run.dir must not be empty");
}

// ----------------------------------------------------------------------------
// Help and the written INI

Test(config, help_lists_every_key_with_type_and_default) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert(f);
    config_print_help(f);
    fclose(f);
    const char *want[] = {
        "[model]\n", "[data]\n", "[train]\n", "[run]\n", "[checkpoint]\n", "[sample]\n",
        "[system]\n", "  sample.prompt ", "default: \"\" ", "  sample.temperature ",
        "  model.attention ", " auto|flash|naive|wgmma|blocksparse|smallcache ", "default: auto ",
        "  train.lr ", "default: 1e-3 ", "peak learning rate [> 0]\n",
        "  data.train ", "default: (required) ", "\nRequired (no default): data.train\n",
        "  train.seed ", " uint ", "  run.plot ", " bool ", "default: true ",
        "  train.beta1 ", "[>= 0, < 1]\n",
        "  sample.tokenizer ", "default: data/cache/gpt2_tokenizer.bin ",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(text, want[i]) != NULL, "help lacks '%s':\n%s", want[i], text);
    // Every key the writer writes, the help lists.
    pb_config c;
    config_defaults(&c);
    char *ini = NULL;
    size_t ilen = 0;
    f = open_memstream(&ini, &ilen);
    config_write_ini(&c, f);
    fclose(f);
    char section[32] = "", line[1024], name[128];
    int keys = 0;
    for (char *p = ini; *p;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        p += n + (nl != NULL);
        if (line[0] == '[') {
            sscanf(line, "[%31[^]]", section);
        } else if (line[0] && line[0] != ';') {
            char key[64];
            cr_assert_eq(sscanf(line, "%63s =", key), 1);
            snprintf(name, sizeof name, "  %s.%s ", section, key);
            cr_expect(strstr(text, name) != NULL, "help lacks '%s'", name);
            keys++;
        }
    }
    // 46, [dist] 3, data.test, [attention] 6, model.norm, train.time_limit, model.dropout,
    // model.init, model.pad_token, model.attn_dropout, model.embed_norm, model.pooler
    cr_expect_eq(keys, 64, "the written INI has %d keys", keys);
    free(ini);
    free(text);
}

// Writes c, loads it over fresh defaults, and checks the two are the same.
static void expect_round_trip(const pb_config *c) {
    char path[64], err[1024] = "";
    strcpy(path, "/tmp/pebble_cfg_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    config_write_ini(c, f);
    fclose(f);
    pb_config back;
    config_defaults(&back);
    int rc = config_load_file(&back, path, err, sizeof err);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect_str_eq(back.model_family, c->model_family);
    cr_expect_eq(back.n_layer, c->n_layer);
    cr_expect_eq(back.n_head, c->n_head);
    cr_expect_eq(back.n_embd, c->n_embd);
    cr_expect_eq(back.seq_len, c->seq_len);
    cr_expect_eq(back.vocab_size, c->vocab_size);
    cr_expect_str_eq(back.attention, c->attention);
    cr_expect_str_eq(back.train_data, c->train_data);
    cr_expect_str_eq(back.val_data, c->val_data);
    cr_expect_eq(back.batch_size, c->batch_size);
    cr_expect_eq(back.total_batch_tokens, c->total_batch_tokens);
    cr_expect_eq(back.steps, c->steps);
    cr_expect_eq(back.lr, c->lr);
    cr_expect_eq(back.min_lr_frac, c->min_lr_frac);
    cr_expect_eq(back.warmup_steps, c->warmup_steps);
    cr_expect_eq(back.weight_decay, c->weight_decay);
    cr_expect_eq(back.beta1, c->beta1);
    cr_expect_eq(back.beta2, c->beta2);
    cr_expect_eq(back.eps, c->eps);
    cr_expect_eq(back.grad_clip, c->grad_clip);
    cr_expect_eq(back.seed, c->seed);
    cr_expect_eq(back.val_every, c->val_every);
    cr_expect_eq(back.val_batches, c->val_batches);
    cr_expect_str_eq(back.run_dir, c->run_dir);
    cr_expect_eq(back.plot, c->plot);
    cr_expect_eq(back.ckpt_every, c->ckpt_every);
    cr_expect_eq(back.ckpt_keep_last, c->ckpt_keep_last);
    cr_expect_eq(back.sample_every, c->sample_every);
    cr_expect_eq(back.sample_tokens, c->sample_tokens);
    cr_expect_str_eq(back.sample_prompt, c->sample_prompt);
    cr_expect_eq(back.sample_temperature, c->sample_temperature);
    cr_expect_eq(back.sample_top_k, c->sample_top_k);
    cr_expect_str_eq(back.sample_tokenizer, c->sample_tokenizer);
    cr_expect_str_eq(back.device, c->device);
    cr_expect_str_eq(back.precision, c->precision);
    cr_expect_eq(back.threads, c->threads);
    // And byte for byte, padding included (both began as config_defaults).
    cr_expect_eq(memcmp(&back, c, sizeof back), 0, "round trip changed the config's bytes");
}

Test(config, written_ini_round_trips_the_defaults) {
    pb_config c;
    config_defaults(&c);  // data.train still empty: written as "train =", read back as ""
    expect_round_trip(&c);
    valid_config(&c);
    expect_round_trip(&c);
}

Test(config, written_ini_round_trips_every_key_changed) {
    pb_config c;
    config_defaults(&c);
    const char *sets[] = {
        "model.n_layer=12", "model.n_head=12", "model.n_embd=768", "model.seq_len=1024",
        "model.vocab_size=50304", "model.attention=naive",
        "data.train=data/fineweb/train_*.bin", "data.val=data/fineweb/val_[0-9].bin",
        "train.batch_size=4", "train.total_batch_tokens=524288", "train.steps=19073",
        "train.lr=0.1", "train.min_lr_frac=0.3333333333333333", "train.warmup_steps=715",
        "train.weight_decay=1e-300", "train.beta1=0.123456789012345678", "train.beta2=0.999",
        "train.eps=4.9e-324", "train.grad_clip=0", "train.seed=18446744073709551615",
        "train.val_every=0", "train.val_batches=20", "run.dir=runs/a b=c;d", "run.plot=no",
        "checkpoint.every=250", "checkpoint.keep_last=0", "sample.every=100",
        "sample.tokens=256", "sample.prompt=Once upon a time, \"she said\"",
        "sample.temperature=0.7", "sample.top_k=0", "sample.tokenizer=/opt/tok/gpt2 v2.bin",
        "system.precision=bf16", "system.threads=7",
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) set_ok(&c, sets[i]);
    // A sum with no short decimal form must come back to the last bit.
    c.lr = 0.1 + 0.2;
    pb_config d;
    config_defaults(&d);
    cr_assert_neq(memcmp(&c, &d, sizeof c), 0);
    cr_expect_neq(c.lr, 0.3);
    expect_round_trip(&c);
}

Test(config, written_ini_round_trips_the_longest_strings) {
    pb_config c;
    valid_config(&c);
    memset(c.train_data, 't', PB_PATH_MAX - 1);
    memset(c.val_data, 'v', PB_PATH_MAX - 1);
    memset(c.run_dir, 'r', PB_PATH_MAX - 1);
    memset(c.sample_prompt, 's', PB_PATH_MAX - 1);
    memset(c.sample_tokenizer, 'k', PB_PATH_MAX - 1);
    expect_round_trip(&c);
}
