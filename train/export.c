// export.c: `pebble export`: checkpoint -> model.safetensors + config.json (see export.h).
//
// safetensors: an 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {"format": "pt"}, "<name>": {"dtype": "F32", "shape": [...],
//    "data_offsets": [begin, end]}, ...}
// padded with spaces to a multiple of 8, then the tensors' bytes back to back (offsets are
// relative to the end of the header). Tied weights are left out: GPT2LMHeadModel's
// lm_head.weight (= transformer.wte.weight), BertForMaskedLM's cls.predictions.decoder.weight
// (= the word embeddings) and .decoder.bias (= cls.predictions.bias); from_pretrained fills
// tied weights without a warning.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "train/export.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"
#include "kernels/ops.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/model.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; export writes the host's floats as they are"
#endif

// Opens <path>.tmp for writing; finish_file() syncs it and renames it to path, so a
// reader never sees half a file.
static FILE *start_file(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen) {
    snprintf(tmp, tmplen, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) pb_seterr(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    return f;
}

static int finish_file(FILE *f, int write_failed, const char *tmp, const char *path, char *err,
                       size_t errlen) {
    int bad = write_failed || ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (!bad && rename(tmp, path) != 0) bad = 1, e = errno;
    if (bad) {
        unlink(tmp);
        pb_seterr(err, errlen, "%s: write failed: %s", path, strerror(e ? e : EIO));
        return -1;
    }
    return 0;
}

// Every tensor of the store, in its table's (Hugging Face's) order and layout.
static int write_safetensors(const pb_params *ps, const char *path, char *err, size_t errlen) {
    // The JSON header, tensors in the parameter table's (Hugging Face's) order.
    char *json = NULL;
    size_t json_len = 0;
    FILE *h = open_memstream(&json, &json_len);
    if (!h) pb_die(PB_EXIT_RUNTIME, "out of memory");
    fprintf(h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    size_t max_numel = 0;
    for (int i = 0; i < ps->num; i++) {
        const pb_param *p = &ps->tab[i];
        uint64_t bytes = (uint64_t)p->hf_shape[0] * (p->ndim == 2 ? p->hf_shape[1] : 1) * 4;
        fprintf(h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d", p->name, p->hf_shape[0]);
        if (p->ndim == 2) fprintf(h, ",%d", p->hf_shape[1]);
        fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + bytes));
        off += bytes;
        if (p->numel > max_numel) max_numel = p->numel;
    }
    fprintf(h, "}");
    // Spaces up to a multiple of 8, so the data that follows is aligned.
    while ((json_len = (size_t)ftell(h)) % 8 != 0) fputc(' ', h);
    if (fclose(h) != 0) pb_die(PB_EXIT_RUNTIME, "out of memory");

    char tmp[4300];
    FILE *f = start_file(path, tmp, sizeof tmp, err, errlen);
    if (!f) {
        free(json);
        return -1;
    }
    uint64_t n = json_len;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    int failed = fwrite(len8, 1, 8, f) != 8 || fwrite(json, 1, json_len, f) != json_len;
    free(json);
    float *host = pb_malloc(max_numel * sizeof(float));
    float *hf = pb_malloc(max_numel * sizeof(float));
    for (int i = 0; i < ps->num && !failed; i++) {
        const pb_param *p = &ps->tab[i];
        size_t count = (size_t)p->hf_shape[0] * (size_t)(p->ndim == 2 ? p->hf_shape[1] : 1);
        ps->ops->download(host, ps->mem + p->offset, p->numel * sizeof(float));
        ckpt_param_to_hf(p, host, hf);
        failed = fwrite(hf, sizeof(float), count, f) != count;
    }
    free(host);
    free(hf);
    return finish_file(f, failed, tmp, path, err, errlen);
}

// A config.json for transformers' GPT2Config: pebble's GPT-2 is the original one (tanh
// GELU = "gelu_new", LayerNorm eps 1e-5, tied head); resid_pdrop and embd_pdrop are
// model.dropout (the same sites), attn_pdrop model.attn_dropout.
static int write_config_json(const gpt2_config *mc, const char *path, char *err,
                             size_t errlen) {
    char tmp[4300];
    FILE *f = start_file(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    int eos = mc->vocab_size > 50256 ? 50256 : mc->vocab_size - 1;  // GPT-2's <|endoftext|>
    int rc = fprintf(f,
                     "{\n"
                     "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
                     "  \"model_type\": \"gpt2\",\n"
                     "  \"vocab_size\": %d,\n"
                     "  \"n_positions\": %d,\n"
                     "  \"n_ctx\": %d,\n"
                     "  \"n_embd\": %d,\n"
                     "  \"n_layer\": %d,\n"
                     "  \"n_head\": %d,\n"
                     "  \"n_inner\": null,\n"
                     "  \"activation_function\": \"gelu_new\",\n"
                     "  \"layer_norm_epsilon\": 1e-05,\n"
                     "  \"initializer_range\": 0.02,\n"
                     "  \"resid_pdrop\": %.7g,\n"
                     "  \"embd_pdrop\": %.7g,\n"
                     "  \"attn_pdrop\": %.7g,\n"
                     "  \"summary_first_dropout\": 0.0,\n"
                     "  \"scale_attn_weights\": true,\n"
                     "  \"tie_word_embeddings\": true,\n"
                     "  \"use_cache\": true,\n"
                     "  \"bos_token_id\": %d,\n"
                     "  \"eos_token_id\": %d,\n"
                     "  \"torch_dtype\": \"float32\"\n"
                     "}\n",
                     mc->vocab_size, mc->seq_len, mc->seq_len, mc->n_embd, mc->n_layer,
                     mc->n_head, (double)mc->dropout, (double)mc->dropout,
                     (double)mc->attn_dropout, eos, eos);
    return finish_file(f, rc < 0, tmp, path, err, errlen);
}

// A config.json for transformers' BertConfig: post-LN, exact GELU, absolute positions;
// BertForMaskedLM or BertForSequenceClassification by the head. The dropouts are BERT's
// defaults (0.1), whatever model.dropout was: a fine-tuning user expects them, and eval() in
// transformers turns dropout off either way.
static int write_bert_config_json(const bert_config *mc, const char *path, char *err,
                                  size_t errlen) {
    char tmp[4300];
    FILE *f = start_file(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    int cls = mc->head == BERT_HEAD_CLASSIFY;
    int rc = fprintf(f,
                     "{\n"
                     "  \"architectures\": [\"%s\"],\n"
                     "  \"model_type\": \"bert\",\n"
                     "  \"vocab_size\": %d,\n"
                     "  \"hidden_size\": %d,\n"
                     "  \"num_hidden_layers\": %d,\n"
                     "  \"num_attention_heads\": %d,\n"
                     "  \"intermediate_size\": %d,\n"
                     "  \"hidden_act\": \"gelu\",\n"
                     "  \"hidden_dropout_prob\": 0.1,\n"
                     "  \"attention_probs_dropout_prob\": 0.1,\n"
                     "  \"max_position_embeddings\": %d,\n"
                     "  \"type_vocab_size\": %d,\n"
                     "  \"initializer_range\": 0.02,\n"
                     "  \"layer_norm_eps\": %.9g,\n"
                     "  \"pad_token_id\": 0,\n"
                     "  \"position_embedding_type\": \"absolute\",\n"
                     "  \"tie_word_embeddings\": true,\n",
                     cls ? "BertForSequenceClassification" : "BertForMaskedLM", mc->vocab_size,
                     mc->n_embd, mc->n_layer, mc->n_head, mc->ffn, mc->seq_len, mc->type_vocab,
                     (double)mc->ln_eps) < 0;
    if (cls) {  // num_labels follows from id2label
        rc |= fprintf(f, "  \"id2label\": {") < 0;
        for (int i = 0; i < mc->num_labels; i++)
            rc |= fprintf(f, "%s\"%d\": \"LABEL_%d\"", i ? ", " : "", i, i) < 0;
        rc |= fprintf(f, "},\n  \"label2id\": {") < 0;
        for (int i = 0; i < mc->num_labels; i++)
            rc |= fprintf(f, "%s\"LABEL_%d\": %d", i ? ", " : "", i, i) < 0;
        rc |= fprintf(f, "},\n  \"problem_type\": \"single_label_classification\",\n") < 0;
    }
    rc |= fprintf(f, "  \"torch_dtype\": \"float32\"\n}\n") < 0;
    return finish_file(f, rc, tmp, path, err, errlen);
}

int export_safetensors(const char *ckpt_path, const char *out_dir, char *err, size_t errlen) {
    // The model as the run built it: its stored configuration.
    pb_config cfg;
    config_defaults(&cfg);
    if (ckpt_load_config(ckpt_path, &cfg, err, errlen) != 0) return PB_EXIT_DATA;
    if (model_check_config(&cfg, err, errlen) != 0) {
        char why[1024];
        snprintf(why, sizeof why, "%s", err);
        pb_seterr(err, errlen, "%s: /config: %s", ckpt_path, why);
        return PB_EXIT_DATA;
    }
    if (strcmp(cfg.model_family, "bert") == 0 && strcmp(cfg.norm, "pre") == 0) {
        pb_seterr(err, errlen, "%s: a pre-LN encoder (model.norm = pre): transformers' BERT is "
                  "post-LN, so no class of it computes this model", ckpt_path);
        return PB_EXIT_DATA;
    }
    if (strcmp(cfg.model_family, "bert") == 0 && strcmp(cfg.pooler, "tanh") != 0) {
        pb_seterr(err, errlen, "%s: model.pooler = %s (LRA's classifier head, dense to ffn): "
                  "transformers' BertPooler is dense n_embd -> n_embd with tanh", ckpt_path,
                  cfg.pooler);
        return PB_EXIT_DATA;
    }
    if (strcmp(cfg.model_family, "bert") == 0 && cfg.pad_token >= 0) {
        pb_seterr(err, errlen, "%s: model.pad_token = %d drops that token wherever it stands; "
                  "transformers' BERT attends to every unmasked position", ckpt_path,
                  cfg.pad_token);
        return PB_EXIT_DATA;
    }
    pb_model m;
    model_build(&m, &cfg, pb_ops_cpu());
    if (m.family == MODEL_BERT && m.bert.cfg.pool == BERT_POOL_MEAN)
        fprintf(stderr, "export: note: this model pools the mean of its tokens (model.pool = "
                "mean); BertForSequenceClassification pools the first token, so its "
                "predictions will differ from pebble's\n");
    int rc = 0;
    char path[4200];
    if (ckpt_load(ckpt_path, m.p, 0, NULL, err, errlen) != 0) {
        rc = PB_EXIT_DATA;
    } else if (pb_make_dirs(out_dir, err, errlen) != 0) {
        rc = PB_EXIT_RUNTIME;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        if (write_safetensors(m.p, path, err, errlen) != 0) rc = PB_EXIT_RUNTIME;
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        if (rc == 0 && (m.family == MODEL_BERT
                            ? write_bert_config_json(&m.bert.cfg, path, err, errlen)
                            : write_config_json(&m.gpt2.cfg, path, err, errlen)) != 0)
            rc = PB_EXIT_RUNTIME;
    }
    model_free(&m);
    return rc;
}

static void export_usage(FILE *f) {
    fprintf(f,
            "usage: pebble export --ckpt FILE|RUN_DIR --format safetensors --out DIR\n"
            "\n"
            "Writes DIR/model.safetensors and DIR/config.json from a pebble checkpoint, for\n"
            "Hugging Face transformers: GPT2LMHeadModel, BertForMaskedLM or\n"
            "BertForSequenceClassification .from_pretrained(DIR), by the model's family and\n"
            "head. A RUN_DIR gives its newest checkpoint that reads (damaged ones are named\n"
            "and skipped).\n");
}

int export_main(int argc, char **argv) {
    const char *ckpt = NULL, *format = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            export_usage(stdout);
            return 0;
        }
        const char **slot = strcmp(a, "--ckpt") == 0     ? &ckpt
                            : strcmp(a, "--format") == 0 ? &format
                            : strcmp(a, "--out") == 0    ? &out
                                                         : NULL;
        if (!slot)
            pb_die(PB_EXIT_USAGE, "export: unknown option '%s' (see pebble export --help)", a);
        if (i + 1 >= argc) pb_die(PB_EXIT_USAGE, "export: %s needs a value", a);
        *slot = argv[++i];
    }
    if (!ckpt || !out)
        pb_die(PB_EXIT_USAGE,
               "export: --ckpt FILE|RUN_DIR and --out DIR are required (see pebble export --help)");
    if (!format) format = "safetensors";
    if (strcmp(format, "safetensors") != 0)
        pb_die(PB_EXIT_USAGE, "export: unknown format '%s' (supported: safetensors)", format);
    char err[1024], path[PB_PATH_MAX + 300];
    int rc = ckpt_pick(ckpt, stderr, path, sizeof path, err, sizeof err);
    if (rc != 0) pb_die(rc, "export: %s", err);
    rc = export_safetensors(path, out, err, sizeof err);
    if (rc != 0) pb_die(rc, "%s", err);
    printf("export: %s/model.safetensors and %s/config.json\n", out, out);
    return 0;
}
