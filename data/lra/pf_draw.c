// pf_draw.c: the drawing primitives of Pathfinder images as snakes2 made LRA's: PIL's 8-bit
// Lanczos resize (what scipy.misc.imresize did), PIL's aliased lines, and one paddle's and one
// marker's image at AA = 2 times the size resized to 1x. pathfinder.c lays the scenes out and
// composes the images from these; test_lra checks them against Pillow pixel for pixel.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/lra/lra.h"

#define AA LRA_PF_AA

// PIL's Lanczos-3 resampling of 8-bit images (libImaging/Resample.c, as since Pillow 3.4):
// per output pixel the taps of the filter stretched by the scale, normalised, in fixed point
// with 22 fraction bits; the horizontal pass into an 8-bit image, then the vertical pass, each
// rounded and clipped to 0..255.
#define PIL_BITS 22

static double sinc(double x) { return x == 0.0 ? 1.0 : sin(x * M_PI) / (x * M_PI); }
static double lanczos3(double x) { return x >= -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0; }

void lra_pil_taps_init(lra_pil_taps *t, int in, int out) {
    double scale = (double)in / out, fs = scale < 1.0 ? 1.0 : scale, support = 3.0 * fs;
    t->in = in, t->out = out;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->bounds = pb_calloc((size_t)out * 2, sizeof(int));
    t->k = pb_calloc((size_t)out * t->ksize, sizeof(int32_t));
    double *w = pb_calloc((size_t)t->ksize, sizeof(double));
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale, sum = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        for (int x = 0; x < hi - lo; x++) sum += w[x] = lanczos3((x + lo - center + 0.5) / fs);
        for (int x = 0; x < hi - lo; x++) {
            double v = sum != 0.0 ? w[x] / sum : w[x];
            t->k[(size_t)o * t->ksize + x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PIL_BITS)
                                                             : 0.5 + v * (1 << PIL_BITS));
        }
        t->bounds[2 * o] = lo, t->bounds[2 * o + 1] = hi - lo;
    }
    free(w);
}

void lra_pil_taps_free(lra_pil_taps *t) {
    free(t->bounds);
    free(t->k);
}

static uint8_t clip8(int64_t v) {
    if (v >= (int64_t)255 << PIL_BITS) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PIL_BITS);
}

// Output rows y0..y1-1 and columns x0..x1-1 of the n x n resize of in (m x m), t made for
// m -> n (the rest of out untouched); tmp holds m x n bytes. Only the input rows those output
// rows read go through the horizontal pass.
static void pil_resize_window(const lra_pil_taps *t, const uint8_t *in, uint8_t *out,
                              uint8_t *tmp, int y0, int y1, int x0, int x1) {
    int m = t->in, n = t->out;
    int r0 = t->bounds[2 * y0], r1 = t->bounds[2 * (y1 - 1)] + t->bounds[2 * (y1 - 1) + 1];
    for (int y = r0; y < r1; y++)  // horizontal
        for (int o = x0; o < x1; o++) {
            const int32_t *k = t->k + (size_t)o * t->ksize;
            int lo = t->bounds[2 * o], len = t->bounds[2 * o + 1];
            int64_t acc = 1 << (PIL_BITS - 1);
            for (int x = 0; x < len; x++) acc += (int64_t)in[(size_t)y * m + lo + x] * k[x];
            tmp[(size_t)y * n + o] = clip8(acc);
        }
    for (int o = y0; o < y1; o++)  // vertical
        for (int x = x0; x < x1; x++) {
            const int32_t *k = t->k + (size_t)o * t->ksize;
            int lo = t->bounds[2 * o], len = t->bounds[2 * o + 1];
            int64_t acc = 1 << (PIL_BITS - 1);
            for (int y = 0; y < len; y++) acc += (int64_t)tmp[(size_t)(lo + y) * n + x] * k[y];
            out[(size_t)o * n + x] = clip8(acc);
        }
}

void lra_pil_resize(const lra_pil_taps *t, const uint8_t *in, uint8_t *out, uint8_t *tmp) {
    pil_resize_window(t, in, out, tmp, 0, t->out, 0, t->out);
}

static void put(uint8_t *c, int s, int x, int y) {
    if (x >= 0 && x < s && y >= 0 && y < s) c[(size_t)y * s + x] = 255;
}

// PIL's ImageDraw.line of width 1 from (x0, y0) to (x1, y1) on an s x s canvas: its Bresenham
// walk (libImaging/Draw.c), which leaves out the end, then the end point (_draw_lines).
static void pil_line(uint8_t *c, int s, int x0, int y0, int x1, int y1) {
    int dx = abs(x1 - x0), dy = abs(y1 - y0), xs = x1 < x0 ? -1 : 1, ys = y1 < y0 ? -1 : 1;
    int X = x0, Y = y0;
    if (dx > dy || dy == 0) {  // horizontal slope (or horizontal)
        int e = 2 * dy - dx;
        for (int i = 0; i < dx; i++) {
            put(c, s, X, Y);
            if (dy && e >= 0) Y += ys, e -= 2 * dx;
            e += 2 * dy, X += xs;
        }
    } else {
        int e = 2 * dx - dy;
        for (int i = 0; i < dy; i++) {
            put(c, s, X, Y);
            if (dx && e >= 0) X += xs, e -= 2 * dy;
            e += 2 * dx, Y += ys;
        }
    }
    put(c, s, x1, y1);
}

static int round_up(double f) { return (int)(f >= 0 ? floor(f + 0.5) : -floor(fabs(f) + 0.5)); }
static int round_down(double f) { return (int)(f >= 0 ? ceil(f - 0.5) : -ceil(fabs(f) - 0.5)); }

// A wider PIL line: the quadrilateral of ImagingDrawWideLine (Pillow 9), its corners the ends
// offset by half the width rounded both ways, filled where a pixel's centre row crosses it
// between the crossings rounded inward (its polygon scanlines).
static void pil_wide_line(uint8_t *c, int s, int x0, int y0, int x1, int y1, int width) {
    int dx = x1 - x0, dy = y1 - y0;
    if (dx == 0 && dy == 0) {
        put(c, s, x0, y0);
        return;
    }
    double big = hypot(dx, dy), small = (width - 1) / 2.0;
    double rmax = round_up(small) / big, rmin = round_down(small) / big;
    int dxmin = round_down(rmin * dy), dxmax = round_down(rmax * dy);
    int dymin = round_down(rmin * dx), dymax = round_down(rmax * dx);
    double vx[4] = {x0 - dxmin, x1 - dxmin, x1 + dxmax, x0 + dxmax};
    double vy[4] = {y0 + dymax, y1 + dymax, y1 - dymin, y0 - dymin};
    double ylo = vy[0], yhi = vy[0];
    for (int k = 1; k < 4; k++) ylo = fmin(ylo, vy[k]), yhi = fmax(yhi, vy[k]);
    for (int y = (int)ceil(ylo); y <= (int)floor(yhi); y++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int k = 0; k < 4; k++) {
            double ax = vx[k], ay = vy[k], bx = vx[(k + 1) % 4], by = vy[(k + 1) % 4];
            if (ay == by) {  // a horizontal edge on this row: its span
                if (ay == y) lo = fmin(lo, fmin(ax, bx)), hi = fmax(hi, fmax(ax, bx));
                continue;
            }
            if (y < fmin(ay, by) || y > fmax(ay, by)) continue;
            double x = ax + (y - ay) * (bx - ax) / (by - ay);
            lo = fmin(lo, x), hi = fmax(hi, x);
        }
        for (int x = round_up(lo); x <= round_down(hi); x++) put(c, s, x, y);
    }
}

// One paddle as snakes2's draw_line_n_mask draws it: a line of width round(thickness * AA)
// from the centre of a canvas of 2 h AA + 1 pixels, h = length + ceil(thickness) + margin,
// towards angle for length * AA pixels (the end rounded up, as translate_coord); returns the
// canvas's side.
int lra_pf_paddle_canvas(const lra_pf_params *p, int margin, double angle, uint8_t *canvas) {
    int L = p->paddle_length, h = L + (int)ceil(p->thickness) + margin;
    int s2 = 2 * h * AA + 1, c2 = h * AA, width = (int)nearbyint(p->thickness * AA);
    memset(canvas, 0, (size_t)s2 * s2);
    // the end as translate_coord rounds it: up, each axis
    int hy = (int)ceil(c2 + L * AA * sin(angle)), hx = (int)ceil(c2 + L * AA * cos(angle));
    if (width <= 1) pil_line(canvas, s2, c2, c2, hx, hy);
    else pil_wide_line(canvas, s2, c2, c2, hx, hy, width);
    return s2;
}

// The paddle's image: its canvas resized to 2h + 1 pixels.
void lra_pf_paddle_image(const lra_pf_params *p, int margin, double angle,
                         const lra_pil_taps *t, uint8_t *mini, uint8_t *scratch) {
    int s2 = lra_pf_paddle_canvas(p, margin, angle, scratch);
    PB_ASSERT(t->in == s2 && t->out == 2 * (p->paddle_length + (int)ceil(p->thickness) +
                                            margin) + 1);
    lra_pil_resize(t, scratch, mini, scratch + (size_t)s2 * s2);
}

// A marker as snakes2's draw_circle draws it: the pixels of the AA-times image within
// radius AA r of pixel (AA y, AA x) set, resized to the image's side; out gets it (0..255).
void lra_pf_marker_image(int n, double radius, int y, int x, const lra_pil_taps *t,
                         uint8_t *out, uint8_t *scratch) {
    int m = n * AA;
    PB_ASSERT(t->in == m && t->out == n);
    uint8_t *canvas = scratch, *tmp = scratch + (size_t)m * m;
    double r2 = radius * AA * radius * AA;
    // The disk and the output pixels whose taps reach it (the filter spans 3 output pixels
    // each side); the rest of the image is 0, as the resize of nothing gives.
    int w = (int)ceil(radius) + 4;
    int y0 = y - w < 0 ? 0 : y - w, y1 = y + w + 1 > n ? n : y + w + 1;
    int x0 = x - w < 0 ? 0 : x - w, x1 = x + w + 1 > n ? n : x + w + 1;
    memset(out, 0, (size_t)n * n);
    if (y1 <= y0 || x1 <= x0) return;
    int r0 = t->bounds[2 * y0], r1 = t->bounds[2 * (y1 - 1)] + t->bounds[2 * (y1 - 1) + 1];
    for (int i = r0; i < r1; i++)  // the input rows the window's taps read
        for (int j = 0; j < m; j++) {
            double dy = i - y * AA, dx = j - x * AA;
            canvas[(size_t)i * m + j] = dy * dy + dx * dx <= r2 ? 255 : 0;
        }
    pil_resize_window(t, canvas, out, tmp, y0, y1, x0, x1);
}
