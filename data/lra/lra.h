// lra.h: generators for two Long Range Arena tasks, re-implemented in C from the originals
// (google-research/long-range-arena lra_benchmarks/data/listops.py; drewlinsley/pathfinder
// snakes2.py as LRA configured it), readers of the user's copy of two more (Text: IMDB;
// Retrieval: AAN, as LRA's text_classification and matching input pipelines read them), and
// the `pebble lra` command that writes them as labelled-sequence files (data/lseq.h).
//
// ListOps vocabulary (1-byte tokens, T = LRA_LISTOPS_T, 10 classes = the tree's value):
//   0 padding, 1 CLS (the first token of every row, for CLS pooling), 2..11 the
//   digits 0..9, 12 [MIN, 13 [MAX, 14 [MED, 15 [SM, 16 ] (LRA's pipeline calls it X).
// Pathfinder: tokens are grey levels 0..255 in row-major order, T = res * res, 2 classes.
// Text (IMDB) and Retrieval (AAN), byte-level (2-byte tokens, vocab_size LRA_TX_VOCAB = 258):
//   0 padding, 1..256 the bytes 0..255 (byte b is b + 1, as LRA's tfds ByteTextEncoder
//   numbers them), 257 CLS (the first token of every document, for CLS pooling).
//   Text: T = LRA_TEXT_T = 4000, a row is CLS and the review's first 3999 bytes; 2 classes.
//   Retrieval: T = 2 x 4000; document 1 (CLS, its first 3999 bytes, padding) fills positions
//   [0, 4000), document 2 starts at 4000; the row's length is 4000 + document 2's, and
//   document 1's is the count of its non-zero tokens (no byte maps to 0). 2 classes.
#ifndef PEBBLE_LRA_H
#define PEBBLE_LRA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

// `pebble lra ...`: argv starts at "lra". Returns the exit code.
int lra_main(int argc, char **argv);

// --- ListOps

enum {
    LRA_LO_PAD = 0,
    LRA_LO_CLS = 1,
    LRA_LO_DIGIT0 = 2,  // digit d is 2 + d
    LRA_LO_MIN = 12,
    LRA_LO_MAX = 13,
    LRA_LO_MED = 14,
    LRA_LO_SM = 15,
    LRA_LO_END = 16,
    LRA_LO_VOCAB = 17,
};
// The original keeps trees of 500 < length < 2000; LRA pads them to 2000, so every row holds
// [CLS] and at most 1999 tokens of the tree.
#define LRA_LISTOPS_T 2000
#define LRA_LISTOPS_MIN_LEN 500
#define LRA_LISTOPS_MAX_LEN 2000

// Draws one tree as the original generate_tree(1, 10, 10) does (a node is an operator with
// probability 0.25 above depth 10, 2..10 arguments, the operator drawn after its arguments)
// into tok (prefix order: operator, arguments, END; cap entries at most). Returns its length
// (leaf 1, operator 2 + its arguments) and its value in *value, or -1 when it grew past cap
// (the tree is then unfinished; the caller rejects it, as it would the finished one).
int lra_listops_tree(pb_rng *rng, uint8_t *tok, int cap, int *value);
// The value of a token sequence (as above): MIN, MAX, MED (numpy's median, truncated: the
// mean of the middle two for an even count), SM (sum mod 10). -1 if it is not one tree.
int lra_listops_value(const uint8_t *tok, int n);
// The source string exactly as the original's to_string writes the nested tuples, e.g. the
// tree [MAX 2 9] is "( ( ( [MAX 2 ) 9 ) ] )". Returns the length written (NUL-terminated);
// out needs lra_listops_strlen(tok, n) + 1 bytes.
size_t lra_listops_format(const uint8_t *tok, int n, char *out);
size_t lra_listops_strlen(const uint8_t *tok, int n);

// --- Pathfinder

#define LRA_PF_MAX_CONTOUR 32  // paddles in one contour, at most

typedef struct lra_pf_params {
    int res;                // image side in pixels
    int contour_length;     // paddles per target contour
    int distractor_length;  // paddles per distractor contour (contour_length / 3)
    int num_distractors;    // distractor contours (LRA: N / distractor_length)
    int paddle_length;      // pixels
    double thickness;       // line width in pixels
    int margins[2], num_margins;  // one margin drawn per image
    int padding;            // border kept free of paddles
    int seed_distance;      // pixels between the two target contours' first paddles
    double marker_radius;
    double snake_contrast, paddle_contrast;  // targets: both; distractors: snake_contrast
    double continuity;      // >= 1: how sharply turns are penalised
    int max_paddle_retrial;       // 2 in the original
    int max_distractor_retrial;   // 4
    // snakes2's use_single_paddles: fill the original's paddle budget with single paddles.
    // 0 for LRA: snakes2_wrapper.py's body, which LRA ran, sets it False (its Args default is
    // True); `pebble lra gen pathfinder --fillers` turns it on.
    int single_paddles;
} lra_pf_params;

// LRA's parameters for res 32, 64, 128 or 256 and difficulty "easy" (contour length 6),
// "intermediate" (9) or "hard" (14). Returns 0, or -1 with err naming what is wrong.
int lra_pf_params_for(int res, const char *difficulty, lra_pf_params *p, char *err,
                      size_t errlen);

// The scene one image was drawn from: every paddle, which contour it belongs to, the markers.
enum { LRA_PF_TARGET = 0, LRA_PF_DISTRACTOR = 1, LRA_PF_SINGLE = 2 };
typedef struct lra_pf_paddle {
    float y, x;     // start (pixel centre at y + 0.5, x + 0.5): the tip of the contour's end
    double angle;   // radians, y down: the paddle runs to (y + L sin, x + L cos); double,
                    // as the original's: its line's end is rounded up from it
    int contour;    // index into the scene's contours
} lra_pf_paddle;
typedef struct lra_pf_contour {
    int first, count;  // paddles[first .. first + count), in the order they were laid
    int kind;          // LRA_PF_TARGET, ...
} lra_pf_contour;
typedef struct lra_pf_scene {
    lra_pf_paddle *paddles;
    lra_pf_contour *contours;
    int num_paddles, num_contours;
    int marker_y[2], marker_x[2];  // pixel coordinates of the two markers
    int label;                     // 1: both markers on one contour
    int margin;
} lra_pf_scene;

// PIL's 8-bit Lanczos resize of a square image from in to out pixels a side (libImaging/
// Resample.c: the filter stretched by the scale, fixed-point taps, a horizontal then a
// vertical pass, each rounded and clipped to 0..255): how snakes2's images were made smaller.
typedef struct lra_pil_taps {
    int in, out, ksize;
    int *bounds;  // [2 out] first input pixel and count per output pixel
    int32_t *k;   // [out ksize] taps with 22 fraction bits
} lra_pil_taps;
void lra_pil_taps_init(lra_pil_taps *t, int in, int out);
void lra_pil_taps_free(lra_pil_taps *t);
// out (t->out)^2 from in (t->in)^2; tmp holds t->in * t->out bytes.
void lra_pil_resize(const lra_pil_taps *t, const uint8_t *in, uint8_t *out, uint8_t *tmp);
// snakes2's antialias_scale: every element is drawn at twice the size (at every resolution
// LRA made) and resized down (pf_draw.c).
#define LRA_PF_AA 2
// A paddle's line as draw_line_n_mask draws it at 2x, from the centre of a zeroed canvas of
// 2 h AA + 1 pixels a side (h below) towards angle; returns that side.
int lra_pf_paddle_canvas(const lra_pf_params *p, int margin, double angle, uint8_t *canvas);
// One paddle's image as snakes2's draw_line_n_mask makes it before its contrast (2h+1 pixels a
// side, h = paddle_length + ceil(thickness) + margin, the paddle's pixel at the centre), from
// t = taps of (2 h AA + 1) -> (2h + 1), AA = 2; scratch holds (2 h AA + 1)(2 h AA + 2h + 2)
// bytes. And a marker's, draw_circle's: the n x n image of the disk of radius r at (y, x), from
// t = taps of 2n -> n; scratch holds 2n (3n) bytes.
void lra_pf_paddle_image(const lra_pf_params *p, int margin, double angle,
                         const lra_pil_taps *t, uint8_t *mini, uint8_t *scratch);
void lra_pf_marker_image(int n, double radius, int y, int x, const lra_pil_taps *t,
                         uint8_t *out, uint8_t *scratch);

typedef struct lra_pf_gen lra_pf_gen;
lra_pf_gen *lra_pf_gen_new(const lra_pf_params *p);
void lra_pf_gen_free(lra_pf_gen *g);
// Image `index` of the data set of `seed`: its randomness comes from (seed, index) alone, so
// images can be drawn by any thread in any order. Writes res * res grey levels into pixels;
// returns the label (0 or 1), or -1 with err when the drawing fails (cairo).
int lra_pf_image(lra_pf_gen *g, uint64_t seed, uint64_t index, uint8_t *pixels, char *err,
                 size_t errlen);
// The scene of the last image drawn by g (valid until the next call).
const lra_pf_scene *lra_pf_last_scene(const lra_pf_gen *g);
// Writes an 8-bit grey image (w x h, row-major) as a PNG. Returns 0, or -1 with err.
int lra_png_write(const char *path, const uint8_t *grey, int w, int h, char *err,
                  size_t errlen);
// A contact sheet: 4 x 4 images of each of res 32, 64 and 128 (hard), each with its label.
int lra_pf_sheet(const char *path, uint64_t seed, char *err, size_t errlen);

// --- Text (IMDB) and Retrieval (AAN): the user's copy, in the published layouts

enum { LRA_TX_PAD = 0, LRA_TX_BYTE0 = 1, LRA_TX_CLS = 257, LRA_TX_VOCAB = 258 };
#define LRA_TEXT_T 4000  // LRA's max_length for both tasks (per document for Retrieval)

// A document as a row of T tokens: CLS, the first T-1 bytes (byte b -> b + 1), padding.
// Returns its length (1 + the bytes kept).
int lra_bytes_row(const uint8_t *bytes, size_t n, int32_t *row, int T);

// The reviews of one aclImdb directory (e.g. DIR/train/pos): the names of its *.txt entries
// (hidden ones skipped), sorted by strcmp, into *names (each and the array malloc'ed, for
// the caller to free). -1 with err: the directory cannot be read, an entry is not a regular
// file, or there is no review.
int lra_imdb_list(const char *dir, char ***names, size_t *count, char *err, size_t errlen);
// Reads one review into *buf (grown as needed, *cap bytes) and strips it as tfds does
// (Python's bytes.strip(): space, \t, \n, \r, \v, \f at either end): the review is
// (*buf)[*off .. *off + *len). -1 with err: unreadable, or empty once stripped.
int lra_imdb_review(const char *path, uint8_t **buf, size_t *cap, size_t *off, size_t *len,
                    char *err, size_t errlen);

// One line of new_aan_pairs.{train,eval,test}.tsv: label, id1, id2, text1, text2, tab-
// separated, no header, no quoting (LRA's use_quote_delim=False). The texts point into line.
typedef struct lra_aan_pair {
    int label;  // 1: one paper cites the other
    const uint8_t *text[2];
    size_t len[2];
} lra_aan_pair;
// Parses line (len bytes with its \n or \r\n). -1 with err (without the file and line):
// an empty line, not 5 columns, a label that is not 0 or 1 (LRA reads it as a float: 1.0
// is 1).
int lra_aan_parse(const char *line, size_t len, lra_aan_pair *p, char *err, size_t errlen);
// The pair as one row of 2 * LRA_TEXT_T tokens (layout above); returns its length.
int lra_aan_row(const lra_aan_pair *p, int32_t *row);

// A seed and an index mixed into one RNG stream's seed (splitmix64 of both).
uint64_t lra_mix_seed(uint64_t seed, uint64_t index);

#endif
