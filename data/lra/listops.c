// listops.c: ListOps trees (Nangia and Bowman 2018, as LRA generates them): drawing one,
// its value, and the source string LRA's TSV files hold (see lra.h).
#include <string.h>

#include "data/lra/lra.h"

#define MAX_DEPTH 10
#define MAX_ARGS 10
#define VALUE_P 0.25  // a node above MAX_DEPTH is a leaf when uniform() > VALUE_P

static const char *const op_name[4] = {"[MIN", "[MAX", "[MED", "[SM"};

static int is_op(int t) { return t >= LRA_LO_MIN && t <= LRA_LO_SM; }
static int is_digit(int t) { return t >= LRA_LO_DIGIT0 && t < LRA_LO_DIGIT0 + 10; }

// The value of an operator over its arguments' values.
static int apply(int op, const int *v, int k) {
    int r = v[0], sum = 0;
    switch (op) {
    case LRA_LO_MIN:
        for (int i = 1; i < k; i++) r = v[i] < r ? v[i] : r;
        return r;
    case LRA_LO_MAX:
        for (int i = 1; i < k; i++) r = v[i] > r ? v[i] : r;
        return r;
    case LRA_LO_MED: {
        // int(np.median(...)): the middle value, or for an even count the mean of the middle
        // two truncated (the values are >= 0, so truncation is floor).
        int s[MAX_ARGS];
        memcpy(s, v, (size_t)k * sizeof *s);
        for (int i = 1; i < k; i++)  // insertion sort: k <= 10
            for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
                int t = s[j];
                s[j] = s[j - 1];
                s[j - 1] = t;
            }
        return k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
    }
    default:  // LRA_LO_SM
        for (int i = 0; i < k; i++) sum += v[i];
        return sum % 10;
    }
}

// --- drawing a tree

typedef struct tree_out {
    pb_rng *rng;
    uint8_t *tok;
    int n, cap;
} tree_out;

// One node at `depth` (the root is depth 1), appended to o. Returns its value, or -1 when
// the sequence outgrew o->cap. The draws are in the original's order: the leaf test, then
// a leaf's value or an operator's argument count, its arguments, and last its operator.
static int draw_node(tree_out *o, int depth) {
    double r = depth < MAX_DEPTH ? pb_rng_uniform(o->rng) : 1.0;
    if (o->n >= o->cap) return -1;
    if (r > VALUE_P) {
        int v = (int)(pb_rng_u64(o->rng) % 10);
        o->tok[o->n++] = (uint8_t)(LRA_LO_DIGIT0 + v);
        return v;
    }
    int k = 2 + (int)(pb_rng_u64(o->rng) % (MAX_ARGS - 1));  // randint(2, 10)
    int at = o->n++, v[MAX_ARGS];                          // the operator's slot
    for (int i = 0; i < k; i++)
        if ((v[i] = draw_node(o, depth + 1)) < 0) return -1;
    if (o->n >= o->cap) return -1;
    o->tok[o->n++] = LRA_LO_END;
    int op = LRA_LO_MIN + (int)(pb_rng_u64(o->rng) % 4);
    o->tok[at] = (uint8_t)op;
    return apply(op, v, k);
}

int lra_listops_tree(pb_rng *rng, uint8_t *tok, int cap, int *value) {
    tree_out o = {rng, tok, 0, cap};
    int v = draw_node(&o, 1);
    if (v < 0) return -1;
    *value = v;
    return o.n;
}

// --- reading a token sequence back

// The subtree starting at *pos: its value (-1 if malformed); *pos moves past it.
static int eval_at(const uint8_t *tok, int n, int *pos, int depth) {
    if (*pos >= n || depth > MAX_DEPTH) return -1;
    int t = tok[(*pos)++];
    if (is_digit(t)) return t - LRA_LO_DIGIT0;
    if (!is_op(t)) return -1;
    int v[MAX_ARGS], k = 0;
    while (*pos < n && tok[*pos] != LRA_LO_END) {
        if (k == MAX_ARGS || (v[k++] = eval_at(tok, n, pos, depth + 1)) < 0) return -1;
    }
    if (*pos >= n || k == 0) return -1;
    (*pos)++;  // END
    return apply(t, v, k);
}

int lra_listops_value(const uint8_t *tok, int n) {
    int pos = 0, v = eval_at(tok, n, &pos, 1);
    return v >= 0 && pos == n ? v : -1;
}

// Appends s to out at *len (out may be NULL: only counts).
static void put(char *out, size_t *len, const char *s) {
    size_t k = strlen(s);
    if (out) memcpy(out + *len, s, k);
    *len += k;
}

// The end of the subtree starting at pos: operators open, END closes.
static int skip_at(const uint8_t *tok, int pos) {
    int open = 0;
    do {
        int t = tok[pos++];
        open += is_op(t) ? 1 : t == LRA_LO_END ? -1 : 0;
    } while (open > 0);
    return pos;
}

// The original builds an operator node of k arguments as nested pairs,
// ((((op, a1), a2), ...), ak), END), and prints a pair as "( left right )": so k + 1
// opening parentheses, the operator, each argument followed by " )", then " ] )".
static int format_at(const uint8_t *tok, int pos, char *out, size_t *len) {
    int t = tok[pos++];
    if (is_digit(t)) {
        char d[2] = {(char)('0' + t - LRA_LO_DIGIT0), 0};
        put(out, len, d);
        return pos;
    }
    int k = 0;
    for (int p = pos; tok[p] != LRA_LO_END; k++) p = skip_at(tok, p);
    for (int i = 0; i <= k; i++) put(out, len, "( ");
    put(out, len, op_name[t - LRA_LO_MIN]);
    for (int i = 0; i < k; i++) {
        put(out, len, " ");
        pos = format_at(tok, pos, out, len);
        put(out, len, " )");
    }
    put(out, len, " ] )");
    return pos + 1;
}

size_t lra_listops_strlen(const uint8_t *tok, int n) {
    size_t len = 0;
    if (n > 0) format_at(tok, 0, NULL, &len);
    return len;
}

size_t lra_listops_format(const uint8_t *tok, int n, char *out) {
    size_t len = 0;
    if (n > 0) format_at(tok, 0, out, &len);
    out[len] = '\0';
    return len;
}
