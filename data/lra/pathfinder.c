// pathfinder.c: Pathfinder images (Linsley et al. 2018; drewlinsley/pathfinder snakes2.py,
// with LRA's parameters): two target contours of paddles started seed_distance apart,
// distractor contours and two round markers (and, only when asked, single-paddle fillers,
// which LRA's data do not have); label 1 when both markers sit on the ends of one contour.
//
// The scene is laid out as the original lays it (the same steps and random choices in the
// same order, the same retry counts, pebble's RNG rather than numpy's), on the original's
// masks: a paddle's mask is its line at 2x dilated by the margin and resized as the image is
// (paddle_mask), "occupied" is mask > 0.3 and "collides" is mask + new mask >= 1.8, and a
// seed's tail fits where the mask is at most 0.3 under the kernel cv2.dilate used, including
// the quirk that makes most orientations' seeds fail (kernel_of). A seed's tail is drawn
// uniformly from where it fits, by rejection and then a scan (the same distribution). The one
// deliberate difference: the original puts only the second target contour's last paddle into
// the mask before the distractors (so one may cover the first contour's end and its marker);
// both go in here. Checked against snakes2 run here (dev/lra/snakes2_reference.py): distractor
// contours per 32 px image 1.13 (snakes2 1.16-1.2), and the image statistics of test_lra.
//
// The image is drawn as the original drew it (render, with pf_draw.c): PIL's aliased lines and
// disks at twice the resolution, PIL's 8-bit Lanczos resize to 1x, each element scaled by its
// contrast, layers by maximum, and the whole scaled as scipy.misc.imsave did: min -> 0, max ->
// 255. (Before the twelfth session pebble drew with cairo, anti-aliased at 1x, and measured
// footprints as capsules: thinner, dotted paddles, heavier markers and about four times the
// distractor contours of LRA's images.)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/lra/lra.h"

#define OCCUPIED 0.3f    // the original's ceil(mask - 0.3): a pixel above it is taken
#define COLLIDE 1.8f     // the original's max(mask + m_im) < 1.8 for a new paddle
#define STOP_FREE 0.01   // stop_with_availability: give up below 1% free pixels
#define REJECT_TRIES 32  // random tails tried before the exhaustive scan
#define AA LRA_PF_AA
// two_snakes' attempts before an image is given up (the original tries without end; at 64 px
// it needed 3,592 an image over 40 images, measured, pebble 3,047: most first seeds are
// blind, see kernel_of)
#define TARGET_TRIES 1000000

// ---------------------------------------------------------------------------------------
// parameters

int lra_pf_params_for(int res, const char *difficulty, lra_pf_params *p, char *err,
                      size_t errlen) {
    memset(p, 0, sizeof *p);
    int cl = !strcmp(difficulty, "easy") ? 6 : !strcmp(difficulty, "intermediate") ? 9
             : !strcmp(difficulty, "hard") ? 14 : 0;
    if (!cl) {
        pb_seterr(err, errlen, "difficulty '%s' (must be easy, intermediate or hard)",
                  difficulty);
        return -1;
    }
    p->res = res;
    p->contour_length = cl;
    p->distractor_length = cl / 3;  // integer, as Python 2 divided
    p->paddle_length = 5;           // snakes2_wrapper's default
    p->num_margins = 1;
    p->padding = 1;
    p->paddle_contrast = 1.0;
    p->continuity = 1.8;
    p->max_paddle_retrial = 2;
    p->max_distractor_retrial = 4;
    int distractor_paddles;
    switch (res) {  // LRA's pathfinder.py docstrings
    case 32:
        p->margins[0] = 1, p->seed_distance = 7, p->marker_radius = 1.5, p->thickness = 0.5;
        p->paddle_length = 2, p->continuity = 1.0;
        p->snake_contrast = 2.0, p->paddle_contrast = 0.75, distractor_paddles = 20;
        break;
    case 64:
        p->margins[0] = 1, p->seed_distance = 12, p->marker_radius = 2.5, p->thickness = 1.0;
        p->snake_contrast = 0.8, distractor_paddles = 22;
        break;
    case 128:  // Path-X
        p->margins[0] = 2, p->margins[1] = 3, p->num_margins = 2;
        p->seed_distance = 20, p->marker_radius = 3.0, p->thickness = 1.5;
        p->snake_contrast = 0.9, distractor_paddles = 35;
        break;
    case 256:  // padding and seed distance: snakes2_wrapper's defaults (LRA sets neither)
        p->margins[0] = 3, p->padding = 22, p->seed_distance = 27, p->marker_radius = 5.0;
        p->thickness = 2.0, p->snake_contrast = 1.0, distractor_paddles = 30;
        break;
    default:
        pb_seterr(err, errlen, "resolution %d (must be 32, 64, 128 or 256)", res);
        return -1;
    }
    p->num_distractors = distractor_paddles / p->distractor_length;
    return 0;
}

// ---------------------------------------------------------------------------------------
// the generator's state

#define LRA_PF_MAX_CIRCLE 128
typedef struct circle {  // candidate offsets around a pivot (see circle_init)
    int n;
    int dy[LRA_PF_MAX_CIRCLE], dx[LRA_PF_MAX_CIRCLE];
    double orient[LRA_PF_MAX_CIRCLE];  // atan2(dy, dx)
} circle;

typedef struct snake {  // a contour being grown
    int pivot_y, pivot_x;   // where the next paddle's circle of candidates is centred
    double orientation;     // of the last step
    lra_pf_paddle last;     // the last paddle laid: its footprint is not yet in the mask
} snake;

struct lra_pf_gen {
    lra_pf_params p;
    int n;             // res
    int margin;        // this image's
    float *mask;       // [n*n] occupancy in [0, 1]
    float *base_mask;  // [n*n] the padding alone, and its count of occupied pixels
    int base_occupied;
    circle circles[2], *circle;  // per margin of p.margins; this image's
    float *image;      // [n*n] grey before scaling
    int occupied;      // pixels of mask above OCCUPIED
    int32_t *scan;            // the tails that fit, in a seed's exhaustive scan
    uint8_t theta_full[360];  // orientations (degrees + 180) with no tail left
    // the seeds' kernels (see kernel_of), per margin and integer degree, made when first used
    int8_t *kernel[2][360];
    int kernel_n[2][360];
    int kernel_ext[2][360][4];  // its offsets' extent: dy in [0], [1]; dx in [2], [3]
    struct lit_px *mask_cache[2][360 + LRA_PF_MAX_CIRCLE];  // paddle masks (paddle_mask_of)
    int mask_count[2][360 + LRA_PF_MAX_CIRCLE];
    struct lit_px *lit_tmp;
    // undo log of the contour being laid: mask pixels and their old values
    int32_t *undo_idx;
    float *undo_val;
    int n_undo, cap_undo;
    lra_pf_scene scene;
    int cap_paddles, cap_contours;
    lra_pf_paddle *target[2];  // the two target contours while they are laid
    pb_rng rng;
    // drawing: the resize taps of a paddle's canvas (per margin) and of a marker's image
    int margin_index;
    lra_pil_taps paddle_taps[2], marker_taps;
    uint8_t *mini, *marker, *scratch;  // a paddle's image, a marker's, the canvases
};

static int rand_int(pb_rng *r, int lo, int hi) {  // [lo, hi), numpy's randint
    return lo + (int)(pb_rng_u64(r) % (uint64_t)(hi - lo));
}

static double deg2rad(int deg) { return deg * M_PI / 180.0; }

// The original's translate_coord: rounded up, each axis.
static void translate(int y, int x, double angle, double dist, int *oy, int *ox) {
    *oy = (int)ceil(y + dist * sin(angle));
    *ox = (int)ceil(x + dist * cos(angle));
}

static double flip_by_pi(double a) { return a < 0 ? a + M_PI : a - M_PI; }

// A paddle's mask as draw_line_n_mask makes it (its m_im): the AA-times line dilated by a disk
// of radius margin * AA (cv2.dilate: the maximum over the disk), resized as the image is, so
// 0..255 over the (2h + 1)^2 pixels around the paddle's pixel.
static void paddle_mask(lra_pf_gen *g, double angle, uint8_t *mini) {
    int s2 = lra_pf_paddle_canvas(&g->p, g->margin, angle, g->scratch), r = g->margin * AA;
    uint8_t *line = g->scratch, *wide = line + (size_t)s2 * s2, *tmp = wide + (size_t)s2 * s2;
    for (int y = 0; y < s2; y++)
        for (int x = 0; x < s2; x++) {
            uint8_t best = 0;
            for (int dy = -r; dy <= r && !best; dy++)
                for (int dx = -r; dx <= r; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (dy * dy + dx * dx <= r * r && yy >= 0 && xx >= 0 && yy < s2 && xx < s2 &&
                        line[(size_t)yy * s2 + xx]) {
                        best = 255;
                        break;
                    }
                }
            wide[(size_t)y * s2 + x] = best;
        }
    lra_pil_resize(&g->paddle_taps[g->margin_index], wide, mini, tmp);
}

// The same as a list of its lit pixels (offsets from the paddle's pixel, value / 255), kept
// per margin for the angles paddles take: a seed's integer degrees and the circle's
// candidates turned around (any other angle is listed into g->lit_tmp each time).
typedef struct lit_px {  // (declared in the generator's state)
    int8_t dy, dx;
    float v;
} lit_px;

static int list_mask(lra_pf_gen *g, double angle, lit_px *out) {
    int h = g->p.paddle_length + (int)ceil(g->p.thickness) + g->margin, s1 = 2 * h + 1, n = 0;
    paddle_mask(g, angle, g->mini);
    for (int i = 0; i < s1; i++)
        for (int j = 0; j < s1; j++)
            if (g->mini[i * s1 + j])
                out[n++] = (lit_px){(int8_t)(i - h), (int8_t)(j - h), g->mini[i * s1 + j] / 255.0f};
    return n;
}

static const lit_px *paddle_mask_of(lra_pf_gen *g, double angle, int *count) {
    int mi = g->margin_index, key = -1, deg = (int)lround(angle * 180.0 / M_PI);
    if (deg >= -180 && deg < 180 && deg2rad(deg) == angle) key = deg + 180;
    for (int k = 0; key < 0 && k < g->circle->n; k++)
        if (flip_by_pi(g->circle->orient[k]) == angle) key = 360 + k;
    if (key < 0) {
        *count = list_mask(g, angle, g->lit_tmp);
        return g->lit_tmp;
    }
    if (!g->mask_cache[mi][key]) {
        int n = list_mask(g, angle, g->lit_tmp);
        g->mask_cache[mi][key] = pb_malloc((size_t)(n ? n : 1) * sizeof(lit_px));
        memcpy(g->mask_cache[mi][key], g->lit_tmp, (size_t)n * sizeof(lit_px));
        g->mask_count[mi][key] = n;
    }
    *count = g->mask_count[mi][key];
    return g->mask_cache[mi][key];
}

// --- the mask (the original's float mask in [0, 1]), with an undo log for the contour being
// laid

static void mask_set(lra_pf_gen *g, int i, float v) {
    if (g->n_undo == g->cap_undo) {
        g->cap_undo = g->cap_undo ? 2 * g->cap_undo : 4096;
        g->undo_idx = realloc(g->undo_idx, (size_t)g->cap_undo * sizeof *g->undo_idx);
        g->undo_val = realloc(g->undo_val, (size_t)g->cap_undo * sizeof *g->undo_val);
        if (!g->undo_idx || !g->undo_val) pb_die(PB_EXIT_RUNTIME, "lra: out of memory");
    }
    g->undo_idx[g->n_undo] = i;
    g->undo_val[g->n_undo++] = g->mask[i];
    g->occupied += (v > OCCUPIED) - (g->mask[i] > OCCUPIED);
    g->mask[i] = v;
}

static void mask_undo(lra_pf_gen *g) {
    while (g->n_undo > 0) {
        g->n_undo--;
        int i = g->undo_idx[g->n_undo];
        float v = g->undo_val[g->n_undo];
        g->occupied += (v > OCCUPIED) - (g->mask[i] > OCCUPIED);
        g->mask[i] = v;
    }
}

// mask = max(mask, the paddle's mask)
static void mask_add(lra_pf_gen *g, const lra_pf_paddle *pd) {
    int count, n = g->n, y0 = (int)pd->y, x0 = (int)pd->x;
    const lit_px *px = paddle_mask_of(g, pd->angle, &count);
    for (int k = 0; k < count; k++) {
        int y = y0 + px[k].dy, x = x0 + px[k].dx;
        if (y < 0 || x < 0 || y >= n || x >= n) continue;
        if (px[k].v > g->mask[y * n + x]) mask_set(g, y * n + x, px[k].v);
    }
}

// Whether max(mask + the new paddle's mask) reaches COLLIDE (extend_snake's test; where the
// paddle's mask is 0 the mask, at most 1, cannot).
static int collides(lra_pf_gen *g, const lra_pf_paddle *pd) {
    int count, n = g->n, y0 = (int)pd->y, x0 = (int)pd->x;
    const lit_px *px = paddle_mask_of(g, pd->angle, &count);
    for (int k = 0; k < count; k++) {
        int y = y0 + px[k].dy, x = x0 + px[k].dx;
        if (y < 0 || x < 0 || y >= n || x >= n) continue;
        if (g->mask[y * n + x] + px[k].v >= COLLIDE) return 1;
    }
    return 0;
}

// The mask dilated by a disk of radius margin (integer offsets), at one pixel.
static float mask_dilated(const lra_pf_gen *g, int y, int x) {
    int m = g->margin;
    float best = 0;
    for (int dy = -m; dy <= m; dy++)
        for (int dx = -m; dx <= m; dx++) {
            int yy = y + dy, xx = x + dx;
            if (dy * dy + dx * dx > m * m || yy < 0 || xx < 0 || yy >= g->n || xx >= g->n)
                continue;
            if (g->mask[yy * g->n + xx] > best) best = g->mask[yy * g->n + xx];
        }
    return best;
}

// --- seeds: where a contour's first paddle may start

// the extent of count offset pairs: dy in [ext[0], ext[1]], dx in [ext[2], ext[3]]
static void kernel_extent(const int8_t *off, int count, int *ext) {
    ext[0] = ext[2] = INT8_MAX, ext[1] = ext[3] = INT8_MIN;
    for (int k = 0; k < count; k++) {
        ext[0] = off[2 * k] < ext[0] ? off[2 * k] : ext[0];
        ext[1] = off[2 * k] > ext[1] ? off[2 * k] : ext[1];
        ext[2] = off[2 * k + 1] < ext[2] ? off[2 * k + 1] : ext[2];
        ext[3] = off[2 * k + 1] > ext[3] ? off[2 * k + 1] : ext[3];
    }
}

// seed_snake's test of a tail: it dilates the mask (its border, or the targets' frame, set)
// by a kernel, the pixels where the mask of a paddle at that orientation is 1, drawn at
// (L + m + 1, L + m + 1) of a (2 (L + m) + 1)^2 canvas and centred there by cv2.dilate, and
// takes the tails where the result is at most 0.3. So a tail fits when the mask is at most
// 0.3 at every offset of the kernel from it: those offsets, pairs of int8.
// And a quirk that decides most seeds: cv2.dilate gives -FLT_MAX where every offset falls
// off the image, which happens at an edge when the kernel lies wholly to one side of its
// centre (the paddle is drawn one pixel off it); find_available_coordinates then sees a
// negative value and reports no tail at all, so that orientation's seed fails. Such a kernel
// is `blind` (kernel_n < 0 here).
// (ext: the offsets' extent, cached with them.)
static const int8_t *kernel_of(lra_pf_gen *g, int deg, int *count, const int **ext) {
    int mi = g->margin_index, k = deg + 180;
    if (!g->kernel[mi][k]) {
        int L = g->p.paddle_length, m = g->margin, q = 2 * (L + m) + 1;
        int h = L + (int)ceil(g->p.thickness) + m, s1 = 2 * h + 1, n = 0;
        paddle_mask(g, deg2rad(deg), g->mini);
        int8_t *off = pb_calloc((size_t)2 * s1 * s1, 1);
        for (int i = 0; i < s1; i++)
            for (int j = 0; j < s1; j++) {
                int a = L + m + 1 - h + i, b = L + m + 1 - h + j;  // in the struct canvas
                if (a < 0 || b < 0 || a >= q || b >= q || g->mini[i * s1 + j] != 255) continue;
                off[2 * n] = (int8_t)(a - (L + m)), off[2 * n + 1] = (int8_t)(b - (L + m));
                n++;
            }
        int blind = n == 0, band = L + m + 2;
        for (int y = 0; y < g->n && !blind; y++)
            for (int x = 0; x < g->n && !blind; x++) {
                if (y >= band && x >= band && y < g->n - band && x < g->n - band) continue;
                int in = 0;
                for (int t = 0; t < n && !in; t++) {
                    int yy = y + off[2 * t], xx = x + off[2 * t + 1];
                    in = yy >= 0 && xx >= 0 && yy < g->n && xx < g->n;
                }
                blind = !in;
            }
        g->kernel[mi][k] = off, g->kernel_n[mi][k] = blind ? -1 : n;
        kernel_extent(off, n, g->kernel_ext[mi][k]);
    }
    *count = g->kernel_n[mi][k];
    *ext = g->kernel_ext[mi][k];
    return g->kernel[mi][k];
}

// ext: the kernel's extent, dy in [ext[0], ext[1]] and dx in [ext[2], ext[3]] (kernel_of)
static int tail_fits(const lra_pf_gen *g, int y, int x, const int8_t *off, int count,
                     int frame, const int *ext) {
    int n = g->n, lo = frame, hi = n - frame;
    if (y + ext[0] >= lo && y + ext[1] < hi && x + ext[2] >= lo && x + ext[3] < hi) {
        // every offset on the image and inside the frame: the mask alone decides
        const float *at = g->mask + (size_t)y * n + x;
        for (int k = 0; k < count; k++)
            if (at[off[2 * k] * n + off[2 * k + 1]] > OCCUPIED) return 0;
        return 1;
    }
    for (int k = 0; k < count; k++) {
        int yy = y + off[2 * k], xx = x + off[2 * k + 1];
        if (yy < 0 || xx < 0 || yy >= n || xx >= n) continue;  // cv2's border: no effect
        if (yy < lo || xx < lo || yy >= hi || xx >= hi) return 0;
        if (g->mask[yy * n + xx] > OCCUPIED) return 0;
    }
    return 1;
}

// A tail drawn uniformly from those where a paddle at deg fits (frame: the border of 1, or
// the first target seed's 2 seed_distance): random pixels first, then a scan of all. 0 if
// there is none.
static int pick_tail(lra_pf_gen *g, int deg, int frame, int *ty, int *tx) {
    int n = g->n, count;
    if (frame <= 1 && g->theta_full[deg + 180]) return 0;
    const int *ext;
    const int8_t *off = kernel_of(g, deg, &count, &ext);
    if (count < 0) return 0;  // blind: no tail at all
    for (int t = 0; t < REJECT_TRIES; t++) {
        int i = rand_int(&g->rng, 0, n * n);
        if (tail_fits(g, i / n, i % n, off, count, frame, ext)) {
            *ty = i / n, *tx = i % n;
            return 1;
        }
    }
    // Row by row, the original's order of the free pixels, over the tails whose kernel can
    // reach into the frame: a kernel that is not blind keeps an offset on the image at every
    // tail, and one wholly before lo or from hi on lies outside the frame there.
    int found = 0, lo = frame, hi = n - frame;
    int y0 = lo - ext[1] > 0 ? lo - ext[1] : 0, y1 = hi - ext[0] < n ? hi - ext[0] : n;
    int x0 = lo - ext[3] > 0 ? lo - ext[3] : 0, x1 = hi - ext[2] < n ? hi - ext[2] : n;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            if (tail_fits(g, y, x, off, count, frame, ext)) g->scan[found++] = y * n + x;
    if (found == 0) {
        if (frame <= 1) g->theta_full[deg + 180] = 1;  // the mask only grows
        return 0;
    }
    int i = g->scan[rand_int(&g->rng, 0, found)];
    *ty = i / n, *tx = i % n;
    return 1;
}

static int off_image(const lra_pf_gen *g, int y, int x) {
    return y < 0 || x < 0 || y >= g->n || x >= g->n;
}

// seed_snake: a contour's first paddle, its tail uniform over where it fits; up to
// max_paddle_retrial + 1 orientations whose head or pivot fall off the image.
static int seed(lra_pf_gen *g, int frame, snake *s) {
    int n = g->n;
    for (int trial = 0; trial <= g->p.max_paddle_retrial; trial++) {
        int deg = rand_int(&g->rng, -180, 180);
        double theta = deg2rad(deg);
        if (frame <= 1 && (double)(n * n - g->occupied) / (n * n) < STOP_FREE) return 0;
        int ty, tx, hy, hx;
        if (!pick_tail(g, deg, frame, &ty, &tx)) return 0;
        translate(ty, tx, theta, g->p.paddle_length, &hy, &hx);
        translate(hy, hx, flip_by_pi(theta), g->p.paddle_length + g->margin, &s->pivot_y,
                  &s->pivot_x);
        if (off_image(g, hy, hx) || off_image(g, s->pivot_y, s->pivot_x)) continue;
        s->orientation = theta;
        s->last = (lra_pf_paddle){(float)ty, (float)tx, theta, 0};
        return 1;
    }
    return 0;
}

// --- extending a contour

// The pixels on the circle of candidates around a pivot, as offsets: the original samples
// the circle of radius L + margin at one pixel of arc per step, truncates to pixels and keeps
// the distinct ones in sorted order (np.unique). For a pivot at integer (y, x) and a point
// inside the image, int(y + r sin a) = y + floor(r sin a): the offsets do not depend on it.
static void circle_init(circle *c, int radius) {
    double step = 360.0 / (2 * radius * M_PI);
    int count = (int)ceil(360.0 / step);  // np.arange(0, 360, step)
    PB_ASSERT(count <= LRA_PF_MAX_CIRCLE);
    c->n = 0;
    for (int i = 0; i < count; i++) {
        double a = i * step * M_PI / 180.0;
        int dy = (int)floor(radius * sin(a)), dx = (int)floor(radius * cos(a)), k = c->n;
        // insertion into the sorted, distinct list
        while (k > 0 && (c->dy[k - 1] > dy || (c->dy[k - 1] == dy && c->dx[k - 1] > dx))) k--;
        if (k > 0 && c->dy[k - 1] == dy && c->dx[k - 1] == dx) continue;
        memmove(&c->dy[k + 1], &c->dy[k], (size_t)(c->n - k) * sizeof c->dy[0]);
        memmove(&c->dx[k + 1], &c->dx[k], (size_t)(c->n - k) * sizeof c->dx[0]);
        c->dy[k] = dy, c->dx[k] = dx;
        c->n++;
    }
    for (int k = 0; k < c->n; k++) c->orient[k] = atan2(c->dy[k], c->dx[k]);
}

// extend_snake: the next paddle's far end is drawn from the pixels on a circle of radius
// L + margin around a pivot margin past the last paddle, weighted by how free the (dilated)
// mask is there and by cos^2 of the turn times continuity (0 from 90/continuity degrees).
// On success the last paddle's footprint goes into the mask (the new one's waits, so that a
// paddle may touch its own predecessor) and *out is the new paddle.
static int extend(lra_pf_gen *g, snake *s, lra_pf_paddle *out) {
    int L = g->p.paddle_length, m = g->margin;
    const circle *c = g->circle;
    int py, px;
    translate(s->pivot_y, s->pivot_x, s->orientation, L + 2 * m, &py, &px);
    double cmf[LRA_PF_MAX_CIRCLE], total = 0, cont = g->p.continuity;
    int any = 0;
    for (int i = 0; i < c->n; i++) {
        int y = py + c->dy[i], x = px + c->dx[i];
        cmf[i] = -1;  // off the image: not a candidate
        if (off_image(g, y, x)) continue;
        any = 1;
        double d = fabs(c->orient[i] - s->orientation);
        d = fmin(d, 2 * M_PI - d) * cont;
        if (d < 0.5 * M_PI) {
            double w = cos(d);
            total += (1.0 - mask_dilated(g, y, x)) * w * w;
        }
        cmf[i] = total;
    }
    if (!any || total < 1e-4) return 0;
    for (int trial = 0; trial <= g->p.max_paddle_retrial; trial++) {
        double u = pb_rng_uniform(&g->rng) * total;
        int k = 0, first = -1;  // np.argmax(cmf > u): the first, or the first candidate
        for (; k < c->n && !(cmf[k] > u); k++)
            if (first < 0 && cmf[k] >= 0) first = k;
        if (k == c->n) k = first;
        int y = py + c->dy[k], x = px + c->dx[k];
        lra_pf_paddle pd = {(float)y, (float)x, flip_by_pi(c->orient[k]), 0};
        if (collides(g, &pd)) continue;
        mask_add(g, &s->last);
        s->pivot_y = py, s->pivot_x = px;
        s->orientation = c->orient[k];
        s->last = pd;
        *out = pd;
        return 1;
    }
    return 0;
}

// --- the scene

static void scene_push(lra_pf_gen *g, const lra_pf_paddle *pd, int count, int kind) {
    lra_pf_scene *sc = &g->scene;
    if (sc->num_contours == g->cap_contours) {
        g->cap_contours = 2 * g->cap_contours + 64;
        sc->contours = realloc(sc->contours, (size_t)g->cap_contours * sizeof *sc->contours);
        if (!sc->contours) pb_die(PB_EXIT_RUNTIME, "lra: out of memory");
    }
    while (sc->num_paddles + count > g->cap_paddles) {
        g->cap_paddles = 2 * g->cap_paddles + 256;
        sc->paddles = realloc(sc->paddles, (size_t)g->cap_paddles * sizeof *sc->paddles);
        if (!sc->paddles) pb_die(PB_EXIT_RUNTIME, "lra: out of memory");
    }
    for (int k = 0; k < count; k++) {
        sc->paddles[sc->num_paddles + k] = pd[k];
        sc->paddles[sc->num_paddles + k].contour = sc->num_contours;
    }
    sc->contours[sc->num_contours++] = (lra_pf_contour){sc->num_paddles, count, kind};
    sc->num_paddles += count;
}

// make_snake: a distractor contour of `len` paddles (1: a single paddle), all or nothing.
static int make_contour(lra_pf_gen *g, int len, int kind) {
    lra_pf_paddle pd[LRA_PF_MAX_CONTOUR];
    snake s;
    g->n_undo = 0;
    if (!seed(g, 1, &s)) return 0;
    pd[0] = s.last;
    for (int k = 1; k < len; k++)
        if (!extend(g, &s, &pd[k])) {
            mask_undo(g);
            return 0;
        }
    mask_add(g, &s.last);
    scene_push(g, pd, len, kind);
    return 1;
}

// two_snakes: the target contours, grown a paddle at a time, each in turn; any failure
// starts both again (the original retries without end; TARGET_TRIES times here).
static int make_targets(lra_pf_gen *g) {
    int n = g->n, L = g->p.paddle_length, cl = g->p.contour_length;
    int pad = g->p.padding, frame = 2 * g->p.seed_distance;
    memcpy(g->mask, g->base_mask, (size_t)n * n * sizeof *g->mask);
    g->occupied = g->base_occupied;
    g->n_undo = 0;
    for (int attempt = 0; attempt < TARGET_TRIES; attempt++) {
        mask_undo(g);  // back to the padding alone
        snake s[2];
        if (!seed(g, frame > pad ? frame : pad, &s[0])) continue;
        // the second seed: seed_distance from the first at a random angle, not checked
        // against the mask (initialize_two_seeds)
        int ok = 0;
        for (int trial = 0; trial <= g->p.max_paddle_retrial && !ok; trial++) {
            double theta = deg2rad(rand_int(&g->rng, -180, 180));
            double a = deg2rad(rand_int(&g->rng, 0, 360));
            int ty = (int)nearbyint(s[0].last.y + g->p.seed_distance * sin(a));
            int tx = (int)nearbyint(s[0].last.x + g->p.seed_distance * cos(a));
            int hy, hx;
            translate(ty, tx, theta, L, &hy, &hx);
            translate(hy, hx, flip_by_pi(theta), L + g->margin, &s[1].pivot_y, &s[1].pivot_x);
            if (off_image(g, hy, hx) || off_image(g, s[1].pivot_y, s[1].pivot_x)) continue;
            s[1].orientation = theta;
            s[1].last = (lra_pf_paddle){(float)ty, (float)tx, theta, 0};
            ok = 1;
        }
        if (!ok) continue;
        g->target[0][0] = s[0].last, g->target[1][0] = s[1].last;
        for (int k = 1; k < cl && ok; k++)
            for (int t = 0; t < 2 && ok; t++) ok = extend(g, &s[t], &g->target[t][k]);
        if (!ok) continue;
        // The original puts only the second contour's last paddle into the mask, so that
        // a distractor may cover the first one's end (and its marker); both go in here.
        mask_add(g, &s[0].last);
        mask_add(g, &s[1].last);
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// drawing, as snakes2 drew LRA's images: each element in 8 bits at AA times the resolution
// with PIL's aliased primitives, resized to 1x with PIL's Lanczos (scipy.misc.imresize, which
// byte-scaled its input and resized in PIL's 8-bit 'L' mode), then scaled by its contrast; the
// layers combined by maximum (np.maximum), and the whole scaled min -> 0, max -> 255 at the end
// (scipy.misc.imsave). The PIL primitives are pf_draw.c's.

static void render(lra_pf_gen *g, uint8_t *pixels) {
    const lra_pf_scene *sc = &g->scene;
    int n = g->n, h = g->p.paddle_length + (int)ceil(g->p.thickness) + g->margin;
    int s1 = 2 * h + 1;
    const lra_pil_taps *t = &g->paddle_taps[g->margin_index];
    size_t np = (size_t)n * n;
    memset(g->image, 0, np * sizeof *g->image);
    for (int k = 0; k < sc->num_paddles; k++) {
        const lra_pf_paddle *pd = &sc->paddles[k];
        int target = sc->contours[pd->contour].kind == LRA_PF_TARGET;
        float contrast = (float)(g->p.snake_contrast * (target ? g->p.paddle_contrast : 1.0));
        lra_pf_paddle_image(&g->p, g->margin, pd->angle, t, g->mini, g->scratch);
        int y0 = (int)pd->y - h, x0 = (int)pd->x - h;
        for (int i = 0; i < s1; i++)
            for (int j = 0; j < s1; j++) {
                int y = y0 + i, x = x0 + j;
                if (y < 0 || y >= n || x < 0 || x >= n) continue;
                float v = g->mini[i * s1 + j] / 255.0f * contrast;
                float *o = &g->image[(size_t)y * n + x];
                if (v > *o) *o = v;
            }
    }
    for (int k = 0; k < 2; k++) {
        lra_pf_marker_image(n, g->p.marker_radius, sc->marker_y[k], sc->marker_x[k],
                            &g->marker_taps, g->marker, g->scratch);
        for (size_t i = 0; i < np; i++) {
            float v = g->marker[i] / 255.0f;
            if (v > g->image[i]) g->image[i] = v;
        }
    }
    // scipy.misc.imsave's byte scaling: min -> 0, max -> 255, rounded half up
    float lo = g->image[0], hi = g->image[0];
    for (size_t i = 1; i < np; i++) {
        lo = g->image[i] < lo ? g->image[i] : lo;
        hi = g->image[i] > hi ? g->image[i] : hi;
    }
    double scale = hi > lo ? 255.0 / (hi - lo) : 0.0;
    for (size_t i = 0; i < np; i++) pixels[i] = (uint8_t)((g->image[i] - lo) * scale + 0.5);
}

// ---------------------------------------------------------------------------------------
// the generator

lra_pf_gen *lra_pf_gen_new(const lra_pf_params *p) {
    PB_ASSERT(p->contour_length <= LRA_PF_MAX_CONTOUR && p->distractor_length >= 1);
    lra_pf_gen *g = pb_calloc(1, sizeof *g);
    g->p = *p;
    g->n = p->res;
    size_t np = (size_t)p->res * p->res;
    g->mask = pb_calloc(np, sizeof *g->mask);
    g->base_mask = pb_calloc(np, sizeof *g->base_mask);
    for (int y = 0, n = p->res, pad = p->padding; y < n; y++)
        for (int x = 0; x < n; x++) {
            int edge = y < pad || x < pad || y >= n - pad || x >= n - pad;
            g->base_mask[y * n + x] = (float)edge;
            g->base_occupied += edge;
        }
    for (int k = 0; k < p->num_margins; k++)
        circle_init(&g->circles[k], p->paddle_length + p->margins[k]);
    g->image = pb_calloc(np, sizeof *g->image);
    g->scan = pb_calloc(np, sizeof *g->scan);
    g->target[0] = pb_calloc(LRA_PF_MAX_CONTOUR, sizeof(lra_pf_paddle));
    g->target[1] = pb_calloc(LRA_PF_MAX_CONTOUR, sizeof(lra_pf_paddle));
    size_t most = 0, mini = 0;
    for (int k = 0; k < p->num_margins; k++) {
        int h = p->paddle_length + (int)ceil(p->thickness) + p->margins[k];
        size_t s2 = (size_t)(2 * h * AA + 1), s1 = (size_t)(2 * h + 1);
        lra_pil_taps_init(&g->paddle_taps[k], (int)s2, (int)s1);
        most = s2 * (2 * s2 + s1) > most ? s2 * (2 * s2 + s1) : most;  // paddle_mask's
        mini = s1 * s1 > mini ? s1 * s1 : mini;
    }
    size_t m = (size_t)p->res * AA;
    lra_pil_taps_init(&g->marker_taps, (int)m, p->res);
    most = m * (m + p->res) > most ? m * (m + p->res) : most;
    g->scratch = pb_calloc(most, 1);
    g->mini = pb_calloc(mini, 1);
    g->lit_tmp = pb_calloc(mini, sizeof *g->lit_tmp);
    g->marker = pb_calloc(np, 1);
    return g;
}

void lra_pf_gen_free(lra_pf_gen *g) {
    if (!g) return;
    for (int k = 0; k < g->p.num_margins; k++) lra_pil_taps_free(&g->paddle_taps[k]);
    lra_pil_taps_free(&g->marker_taps);
    free(g->scratch);
    free(g->mini);
    free(g->lit_tmp);
    free(g->marker);
    free(g->mask);
    free(g->base_mask);
    free(g->image);
    for (int m = 0; m < 2; m++) {
        for (int k = 0; k < 360; k++) free(g->kernel[m][k]);
        for (int k = 0; k < 360 + LRA_PF_MAX_CIRCLE; k++) free(g->mask_cache[m][k]);
    }
    free(g->scan);
    free(g->undo_idx);
    free(g->undo_val);
    free(g->target[0]);
    free(g->target[1]);
    free(g->scene.paddles);
    free(g->scene.contours);
    free(g);
}

const lra_pf_scene *lra_pf_last_scene(const lra_pf_gen *g) { return &g->scene; }

uint64_t lra_mix_seed(uint64_t seed, uint64_t index) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (index + 0x632BE59BD9B4E019ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// snakes2.from_wrapper, one image.
int lra_pf_image(lra_pf_gen *g, uint64_t seed, uint64_t index, uint8_t *pixels, char *err,
                 size_t errlen) {
    const lra_pf_params *p = &g->p;
    pb_rng_seed(&g->rng, lra_mix_seed(seed, index));
    lra_pf_scene *sc = &g->scene;
    sc->num_paddles = sc->num_contours = 0;
    int label = rand_int(&g->rng, 0, 2);
    int mi = rand_int(&g->rng, 0, p->num_margins), m = g->margin = p->margins[mi];
    g->margin_index = mi;
    g->circle = &g->circles[mi];
    // the original's paddle budget: fewer paddles for wider margins
    int total_paddles = (int)(150.0 / ((7.5 + 13.0 * m + 4.0 * m * m) / 123.5));
    if (!make_targets(g)) {
        pb_seterr(err, errlen, "image %llu: the two target contours found no room",
                  (unsigned long long)index);
        return -1;
    }
    scene_push(g, g->target[0], p->contour_length, LRA_PF_TARGET);
    scene_push(g, g->target[1], p->contour_length, LRA_PF_TARGET);
    memset(g->theta_full, 0, sizeof g->theta_full);
    for (int k = 0; k < p->num_distractors; k++)
        for (int t = 0; t <= p->max_distractor_retrial; t++)
            if (make_contour(g, p->distractor_length, LRA_PF_DISTRACTOR)) break;
    int singles = p->single_paddles ? total_paddles - 2 * p->contour_length -
                                          p->num_distractors * p->distractor_length
                                    : 0;
    for (int k = 0; k < singles; k++)
        for (int t = 0; t <= p->max_paddle_retrial; t++)
            if (make_contour(g, 1, LRA_PF_SINGLE)) break;
    // markers: the origin of one target contour, and the far end of the same one (label 1)
    // or of the other (label 0)
    int o = rand_int(&g->rng, 0, 2), t = label ? o : 1 - o;
    const lra_pf_contour *co = &sc->contours[o], *ct = &sc->contours[t];
    sc->marker_y[0] = (int)sc->paddles[co->first].y;
    sc->marker_x[0] = (int)sc->paddles[co->first].x;
    sc->marker_y[1] = (int)sc->paddles[ct->first + ct->count - 1].y;
    sc->marker_x[1] = (int)sc->paddles[ct->first + ct->count - 1].x;
    sc->label = label;
    sc->margin = m;
    render(g, pixels);
    return label;
}
