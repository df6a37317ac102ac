// bert.h: BERT on the transformer core: word + position + token-type embeddings and their
// LayerNorm, a stack of post-LayerNorm blocks (model/transformer.h) with bidirectional
// attention over the unpadded keys, and one of two heads; its parameters in a store
// (model/params.h) named and shaped as Hugging Face's BertForMaskedLM /
// BertForSequenceClassification state_dicts name them.
//
//   embeddings:  x = LN(word[tok] + pos[t] + type[0])            (one segment: type 0)
//   block:       x = LN_1(x + attn(x));  x = LN_2(x + ffn(x))    (GELU erf, eps 1e-12)
//                (pre_ln: x += attn(LN_1 x); x += ffn(LN_2 x), and bert.encoder.LayerNorm last)
//   MLM head:    on the positions with a target only: LN(gelu(dense(x))) @ word^T + bias
//   classify:    pooled = tanh(dense(x[first token]  or  mean of x over the unpadded
//                tokens)); logits = classifier(pooled). With pooler = ReLU, LRA's classifier
//                head instead: pooled = relu(dense(...)), ffn wide
//
// Padding: a sequence of length len < T has keys len..T-1 masked in every attention (the
// descriptor's kv_len); its padding positions are computed but feed no loss.
// pad_token (classify with mean pooling): that token id is padding wherever it stands, as the
// LRA models' `inputs > 0` mask makes the black pixels of a Pathfinder image. Those positions
// are dropped before the embedding: each row keeps its other tokens in order, each with its
// position (pos[t] of the table), and the stack runs on the shorter batch (its longest row,
// rounded up to 64), the rest padding. So no attention reads them, and the mean pool divides
// the kept rows' sum by the length before the drop (the dropped rows count as zeros):
// Nystromformer's LRA model, which masks those keys in every layer and zeroes those rows at
// the end, to the rounding.
#ifndef PEBBLE_BERT_H
#define PEBBLE_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/attention/blocksparse.h"
#include "kernels/ops.h"
#include "model/params.h"
#include "model/transformer.h"

// The heads (model.head) and poolings (model.pool). Grow at the end.
typedef enum { BERT_HEAD_MLM = 0, BERT_HEAD_CLASSIFY = 1 } bert_head;
typedef enum { BERT_POOL_CLS = 0, BERT_POOL_MEAN = 1 } bert_pool;
// How bert_init_weights draws the weights (model.init):
//   BERT_INIT_HF     Hugging Face's BERT: every matrix N(0, 0.02), biases 0, [PAD]'s row 0
//   BERT_INIT_FAN_IN PyTorch's default layers, as the LRA reproductions' code trains them
//                    (Nystromformer's LRA/code): each Linear's weight and bias
//                    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the embedding tables N(0, 0.02)
//                    with no row zeroed; LayerNorms 1 and 0 in both
typedef enum { BERT_INIT_HF = 0, BERT_INIT_FAN_IN = 1 } bert_init;

typedef struct bert_config {
    int n_layer, n_head, n_embd;  // L, NH, C
    int ffn;                      // the blocks' hidden width (intermediate_size): 4C in BERT
    int seq_len;                  // max_position_embeddings, the longest T
    int vocab_size;               // V (30522 for bert-base-uncased's WordPiece)
    int padded_vocab;             // Vp: V rounded up to a multiple of 128 (set by bert_build)
    int type_vocab;               // token types (2); pebble feeds type 0
    float ln_eps;                 // layer_norm_eps, 1e-12
    bert_head head;
    int num_labels;               // classify: classes
    bert_pool pool;               // classify: what the pooler reads
    pb_act pooler;                // classify: the pooler's activation, tanh (BERT's: dense
                                  // C -> C) or ReLU (LRA's classifier head: dense C -> ffn)
    int pre_ln;                   // 1: pre-LN blocks and a final LayerNorm (not Hugging Face's
                                  // BERT: an option for the long-range tasks)
    char attention[16];           // model.attention: "auto" (or "") or an implementation's name
    bs_params sparse;             // model.attention = blocksparse: the pattern ([attention])
    float dropout;                // model.dropout: the embeddings and both branches
    float attn_dropout;           // model.attn_dropout: the attention probabilities
    int raw_embed;                // 1: no LayerNorm on the embeddings (model.embed_norm =
                                  // false, pre-LN only): their sum goes to the blocks; 0: BERT's
    bert_init init;               // model.init: how bert_init_weights draws
    int drop_pad;                 // 1: model.pad_token is set (0: no token is dropped)
    int pad_token;                // that token id, dropped wherever it stands
} bert_config;

typedef struct bert_weights {
    float *wte, *wpe, *wtt;     // (Vp,C) word, (maxT,C) position, (type_vocab,C) token type
    float *embw, *embb;         // (C) the embeddings' LayerNorm
    tf_weights tf;              // h[L]; post-LN: no final LayerNorm
    // MLM head (cls.predictions): transform dense (C,C) + LayerNorm, decoder bias (Vp)
    float *mlmw, *mlmb, *mlmlnw, *mlmlnb, *mlmbias;
    // classify head: pooler dense (H,C), classifier (Lp,H) and (Lp); H = C, or ffn (ReLU)
    float *poolw, *poolb, *clsw, *clsb;
} bert_weights;

typedef struct bert_acts {
    float *emb;                 // (N,C) word + pos + type: the embeddings' LayerNorm input
    float *x0;                  // (N,C) LN(emb): the stack's input (raw_embed: = emb)
    float *x0_mean, *x0_rstd;   // (N) (raw_embed: NULL)
    tf_acts tf;
    // MLM head over the M <= N positions with a target
    float *hsel;                // (N,C) rows of the stack's output at those positions
    float *hpre, *hgelu, *hln;  // (N,C) dense, gelu, LayerNorm
    float *hln_mean, *hln_rstd; // (N)
    // classify head over the B sequences
    float *pin, *ppre, *pout;   // (B,C) pooler input, (B,H) its dense and activation
    float *logits;              // (N,Vp) MLM, (B,Lp) classify; backward overwrites with dlogits
    float *losses;              // (N)
} bert_acts;

typedef struct bert {
    bert_config cfg;
    const pb_ops *ops;
    tf_config tf;               // post-LN, erf GELU, cfg.ln_eps
    int Lp;                     // num_labels rounded up to a multiple of 8 (classify)
    pb_params p;
    bert_weights w, g, wa;      // masters, gradients, the weights the ops read
    int B, T;                   // the stack's batch (T: after pad_token's drop)
    void *acts_mem, *grads_mem;
    size_t acts_bytes, grads_bytes;
    size_t cap_N;               // positions the (N) buffers below hold
    int cap_B;                  // and sequences the (B) ones
    bert_acts acts;
    tf_grads grads;
    float *dhead;               // (N,C) the heads' scratch gradient (act type)
    float *dhead2;              // (N,C) a second one
    pb_attn_desc attn_desc;     // bidirectional, kv_len = the batch's lengths
    const pb_attn_impl *attn;
    pb_block_layout *layout;    // its block-sparse layout for T (blocksparse), or NULL
    int32_t *inputs, *lengths;  // (B,T), (B) backend memory
    int32_t *pos, *counts;      // pad_token: (B,T) each kept token's position, (B) the lengths
                                // before the drop (backend)
    int32_t *drop_host;         // pad_token: (2 N + B) host scratch: tokens, positions, lengths
    size_t drop_cap;
    int32_t *sel, *targets;     // (N) positions with a target, and those targets (backend)
    int32_t *sel_host, *targets_host;  // (N)
    int32_t *pred;              // (N) argmax (backend)
    int M;                      // rows the head ran on in the last forward
    int have_targets;
} bert;

// Builds the parameter table for cfg (head, labels) and allocates it on ops' backend.
void bert_build(bert *m, const bert_config *cfg, const pb_ops *ops);
// BERT's initialisation: weights N(0, 0.02), biases 0, LayerNorm weights 1, padding rows 0;
// each tensor from its own stream seeded by (seed, its index).
void bert_init_weights(bert *m, uint64_t seed);
void bert_free(bert *m);

// One forward over inputs (B,T) with lengths (B) (1..T; NULL: every sequence is T long).
// MLM: targets (B,T), -1 where there is nothing to predict (NULL: no loss); classify: labels
// (B) (NULL: no loss). Returns the mean loss over the targets (0 without them).
double bert_forward(bert *m, const int32_t *inputs, const int32_t *lengths,
                    const int32_t *targets, const int32_t *labels, int B, int T);
// Of the last forward's targets (MLM: the chosen positions; classify: the sequences), how
// many the model predicts right (argmax), and how many there were. Before bert_backward.
void bert_accuracy(bert *m, long *correct, long *count);
// Backward of the last forward with targets; gradients ACCUMULATE scaled by loss_scale.
void bert_backward(bert *m, float loss_scale);

const pb_attn_impl *bert_attention(const bert *m, int B, int T, char *err, size_t errlen);
void bert_shape_text(const bert_config *c, char *buf, size_t n);

#endif
