// import.c: `pebble import` (see import.h). config.json is read with libjansson and the
// weights with data/safetensors.c; every tensor pebble's GPT-2 has must be there with its
// Hugging Face shape (the transposed Conv1D layout), in F32, F16 or BF16, and nothing else may
// be, but for the tied lm_head.weight (equal to wte) and the attention-mask buffers older
// transformers saved (*.attn.bias, *.attn.masked_bias).
#include "train/import.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "kernels/common.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/optim.h"

// ----------------------------------------------------------------------------
// config.json

// An integer key of cfg in [1, 2^30], or -1 with err naming it.
static int json_dim(json_t *cfg, const char *path, const char *key, char *err, size_t errlen) {
    json_t *v = json_object_get(cfg, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30)) {
        pb_seterr(err, errlen, "%s: '%s' is %s, expected a positive integer", path, key,
                  v ? "not a positive integer" : "missing");
        return -1;
    }
    return (int)json_integer_value(v);
}

// The GPT-2 shape of config.json; refuses a configuration pebble's GPT-2 does not compute
// (another activation, LayerNorm epsilon, MLP width, or untied head).
static int read_config(const char *path, gpt2_config *mc, char *err, size_t errlen) {
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!cfg) {
        if (je.line > 0) pb_seterr(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        else pb_seterr(err, errlen, "%s", je.text);  // jansson names the file and the reason
        return -1;
    }
    int rc = -1;
    const char *why = NULL;
    json_t *type = json_object_get(cfg, "model_type");
    json_t *act = json_object_get(cfg, "activation_function");
    json_t *eps = json_object_get(cfg, "layer_norm_epsilon");
    json_t *inner = json_object_get(cfg, "n_inner");
    json_t *tied = json_object_get(cfg, "tie_word_embeddings");
    if (!json_is_object(cfg)) {
        why = "is not a JSON object";
    } else if (type && (!json_is_string(type) || strcmp(json_string_value(type), "gpt2"))) {
        why = "model_type is not \"gpt2\" (pebble imports GPT2LMHeadModel)";
    } else if (act && (!json_is_string(act) || (strcmp(json_string_value(act), "gelu_new") &&
                                                 strcmp(json_string_value(act), "gelu_pytorch_tanh")))) {
        why = "activation_function is not gelu_new (pebble's GPT-2 uses the tanh GELU)";
    } else if (eps && (!json_is_number(eps) || fabs(json_number_value(eps) - 1e-5) > 1e-12)) {
        why = "layer_norm_epsilon is not 1e-05 (pebble's GPT-2 uses 1e-5)";
    } else if (tied && !json_is_true(tied)) {
        why = "tie_word_embeddings is false (pebble's GPT-2 ties the LM head to wte)";
    }
    if (why) {
        pb_seterr(err, errlen, "%s: %s", path, why);
        goto done;
    }
    memset(mc, 0, sizeof *mc);
    if ((mc->n_layer = json_dim(cfg, path, "n_layer", err, errlen)) < 0 ||
        (mc->n_head = json_dim(cfg, path, "n_head", err, errlen)) < 0 ||
        (mc->n_embd = json_dim(cfg, path, "n_embd", err, errlen)) < 0 ||
        (mc->seq_len = json_dim(cfg, path, "n_positions", err, errlen)) < 0 ||
        (mc->vocab_size = json_dim(cfg, path, "vocab_size", err, errlen)) < 0)
        goto done;
    if (mc->n_embd % mc->n_head != 0) {
        pb_seterr(err, errlen, "%s: n_embd %d is not a multiple of n_head %d", path, mc->n_embd,
                  mc->n_head);
        goto done;
    }
    if (inner && !json_is_null(inner) &&
        (!json_is_integer(inner) || json_integer_value(inner) != 4 * mc->n_embd)) {
        pb_seterr(err, errlen, "%s: n_inner is not 4 n_embd = %d (pebble's MLP is 4C wide)",
                  path, 4 * mc->n_embd);
        goto done;
    }
    rc = 0;
done:
    json_decref(cfg);
    return rc;
}

// ----------------------------------------------------------------------------
// the weights

// The file's tensor for pebble's name: as GPT2LMHeadModel saves it, or without the
// "transformer." prefix as GPT2Model does.
static const st_tensor *find_tensor(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t && strncmp(name, "transformer.", 12) == 0) t = st_find(f, name + 12);
    return t;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// Reads every parameter of m from f into host (the internal layout), each checked against
// its Hugging Face shape; then checks that the file holds nothing pebble would drop.
static int read_weights(const st_file *f, gpt2 *m, float *host, char *err, size_t errlen) {
    const pb_params *ps = &m->p;
    size_t max_numel = 0;
    for (int i = 0; i < ps->num; i++)
        if (ps->tab[i].numel > max_numel) max_numel = ps->tab[i].numel;
    float *hf = pb_malloc(max_numel * sizeof(float));
    char *used = pb_calloc((size_t)f->n, 1);
    int rc = -1;
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        const st_tensor *t = find_tensor(f, p->name);
        if (!t) {
            pb_seterr(err, errlen, "%s: no tensor %s (the config.json says %s)", f->path, p->name,
                      ps->shape);
            goto done;
        }
        uint64_t want[2] = {(uint64_t)p->hf_shape[0], (uint64_t)p->hf_shape[1]};
        if (t->ndim != p->ndim || t->shape[0] != want[0] || (p->ndim == 2 && t->shape[1] != want[1])) {
            char got[96] = "(";
            for (int d = 0; d < t->ndim && d < ST_MAX_DIMS; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", d ? ", " : "",
                         (unsigned long long)t->shape[d]);
            strcat(got, ")");
            if (p->ndim == 2)
                pb_seterr(err, errlen, "%s: tensor %s has shape %s; the config.json (%s) gives "
                          "(%d, %d)", f->path, t->name, got, ps->shape, p->hf_shape[0],
                          p->hf_shape[1]);
            else
                pb_seterr(err, errlen, "%s: tensor %s has shape %s; the config.json (%s) gives "
                          "(%d)", f->path, t->name, got, ps->shape, p->hf_shape[0]);
            goto done;
        }
        int st = st_read_f32(f, t, hf, err, errlen);
        if (st != ST_OK) {
            rc = st == ST_IO ? -2 : -1;
            goto done;
        }
        ckpt_param_from_hf(p, hf, host + p->offset);
        used[t - f->tensors] = 1;
    }
    for (int k = 0; k < f->n; k++) {
        const st_tensor *t = &f->tensors[k];
        if (used[k] || ends_with(t->name, ".attn.bias") || ends_with(t->name, ".attn.masked_bias"))
            continue;
        if (strcmp(t->name, "lm_head.weight") == 0) {
            // tied: it must be wte itself, or the model is not the one pebble computes
            const pb_param *wte = &ps->tab[0];
            size_t n = (size_t)wte->hf_shape[0] * wte->hf_shape[1];
            float *lm = pb_malloc(n * sizeof(float));
            int st = t->numel == n ? st_read_f32(f, t, lm, err, errlen) : ST_BAD;
            int same = st == ST_OK && memcmp(lm, host + wte->offset, n * sizeof(float)) == 0;
            free(lm);
            if (st == ST_IO) {
                rc = -2;
                goto done;
            }
            if (st == ST_OK && same) continue;
            pb_seterr(err, errlen, "%s: lm_head.weight differs from transformer.wte.weight "
                      "(pebble's GPT-2 ties them)", f->path);
            goto done;
        }
        pb_seterr(err, errlen, "%s: tensor %s is not part of GPT2LMHeadModel as pebble builds it",
                  f->path, t->name);
        goto done;
    }
    rc = 0;
done:
    free(hf);
    free(used);
    return rc;
}

int import_hf(const char *dir, const char *out, char *err, size_t errlen) {
    char path[PB_PATH_MAX + 32];
    if (access(out, F_OK) == 0) {
        pb_seterr(err, errlen, "import: %s exists (remove it or choose another --out)", out);
        return PB_EXIT_USAGE;
    }
    gpt2_config mc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (read_config(path, &mc, err, errlen) != 0) return PB_EXIT_DATA;
    st_file *f = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int st = st_open(path, &f, err, errlen);
    if (st != ST_OK) return st == ST_IO ? PB_EXIT_RUNTIME : PB_EXIT_DATA;

    gpt2 m;
    gpt2_build(&m, &mc, pb_ops_cpu());
    float *host = pb_calloc(m.p.num_floats, sizeof(float));
    int rc = read_weights(f, &m, host, err, errlen);
    st_close(f);
    if (rc == 0) {
        m.ops->upload(m.p.mem, host, m.p.num_floats * sizeof(float));
        pb_config cfg;
        config_defaults(&cfg);
        cfg.n_layer = mc.n_layer;
        cfg.n_head = mc.n_head;
        cfg.n_embd = mc.n_embd;
        cfg.seq_len = mc.seq_len;
        cfg.vocab_size = mc.vocab_size;
        if (ckpt_save_start(out, &m.p, &cfg, err, errlen) != 0) rc = -2;
        if (rc == 0)
            printf("import: %s -> %s | gpt2 L%d H%d C%d T%d V%d | %.2fM parameters\n", dir, out,
                   mc.n_layer, mc.n_head, mc.n_embd, mc.seq_len, mc.vocab_size,
                   gpt2_num_trainable(&m) / 1e6);
    }
    free(host);
    gpt2_free(&m);
    return rc == 0 ? 0 : rc == -2 ? PB_EXIT_RUNTIME : PB_EXIT_DATA;
}

static void import_usage(FILE *f) {
    fprintf(f,
            "usage: pebble import --hf DIR --out CKPT.h5\n"
            "\n"
            "A pebble checkpoint from Hugging Face GPT-2 weights: DIR/config.json and\n"
            "DIR/model.safetensors of a GPT2LMHeadModel (save_pretrained), F32, F16 or BF16.\n"
            "Every tensor is checked against the config first. The checkpoint is at step 0\n"
            "with zero AdamW moments: train --init, sample and eval take it.\n");
}

int import_main(int argc, char **argv) {
    const char *hf = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            import_usage(stdout);
            return 0;
        }
        const char **slot = strcmp(a, "--hf") == 0 ? &hf : strcmp(a, "--out") == 0 ? &out : NULL;
        if (!slot)
            pb_die(PB_EXIT_USAGE, "import: unknown option '%s' (see pebble import --help)", a);
        if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "import: %s needs a value", a);
        *slot = argv[++i];
    }
    if (!hf || !out)
        pb_die(PB_EXIT_USAGE, "import: --hf DIR and --out CKPT.h5 are required (see pebble "
               "import --help)");
    char err[1024];
    int rc = import_hf(hf, out, err, sizeof err);
    if (rc != 0) pb_die(rc, "%s", err);
    return 0;
}
