// png.c: Pathfinder images as PNG files, and the contact sheet (cairo writes both).
#include <stdio.h>
#include <stdlib.h>

#include "data/lra/lra.h"

#ifndef PB_NO_CAIRO
#include <cairo/cairo.h>

// An RGB24 surface holding a grey image (cairo writes RGB24 as an RGB PNG).
static cairo_surface_t *grey_surface(const uint8_t *grey, int w, int h) {
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_surface_flush(s);
    unsigned char *d = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int y = 0; y < h && d; y++)
        for (int x = 0; x < w; x++) {
            uint32_t v = grey[(size_t)y * w + x];
            ((uint32_t *)(d + (size_t)y * stride))[x] = v << 16 | v << 8 | v;
        }
    cairo_surface_mark_dirty(s);
    return s;
}

int lra_png_write(const char *path, const uint8_t *grey, int w, int h, char *err,
                  size_t errlen) {
    cairo_surface_t *s = grey_surface(grey, w, h);
    cairo_status_t st = cairo_surface_write_to_png(s, path);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
        pb_seterr(err, errlen, "%s: cannot write the PNG: %s", path, cairo_status_to_string(st));
        return -1;
    }
    return 0;
}

// 4 x 4 images of each resolution, drawn at 128 x 128 (nearest neighbour), each titled.
int lra_pf_sheet(const char *path, uint64_t seed, char *err, size_t errlen) {
    enum { TILE = 128, GAP = 6, CAP = 16, COLS = 4, PANEL_GAP = 28, TOP = 30 };
    static const int res[3] = {32, 64, 128};
    int panel_w = COLS * TILE + (COLS - 1) * GAP, cell_h = CAP + TILE + GAP;
    int W = 3 * panel_w + 2 * PANEL_GAP + 2 * GAP, H = TOP + 4 * cell_h + GAP;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    int rc = 0;
    for (int r = 0; r < 3 && rc == 0; r++) {
        lra_pf_params p;
        if (lra_pf_params_for(res[r], "hard", &p, err, errlen) != 0) return -1;
        lra_pf_gen *g = lra_pf_gen_new(&p);
        uint8_t *px = pb_malloc((size_t)p.res * p.res);
        int ox = GAP + r * (panel_w + PANEL_GAP);
        char title[64];
        snprintf(title, sizeof title, "Pathfinder %d x %d (hard)", p.res, p.res);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_font_size(cr, 16);
        cairo_move_to(cr, ox, 20);
        cairo_show_text(cr, title);
        for (int k = 0; k < 16 && rc == 0; k++) {
            int label = lra_pf_image(g, seed, (uint64_t)k, px, err, errlen);
            if (label < 0) {
                rc = -1;
                break;
            }
            cairo_surface_t *img = grey_surface(px, p.res, p.res);
            int tx = ox + (k % COLS) * (TILE + GAP), ty = TOP + (k / COLS) * cell_h;
            cairo_set_source_rgb(cr, 0, 0, 0);
            cairo_set_font_size(cr, 12);
            cairo_move_to(cr, tx, ty + CAP - 4);
            char cap[32];
            snprintf(cap, sizeof cap, "#%d  label %d", k, label);
            cairo_show_text(cr, cap);
            cairo_save(cr);
            cairo_translate(cr, tx, ty + CAP);
            cairo_scale(cr, (double)TILE / p.res, (double)TILE / p.res);
            cairo_set_source_surface(cr, img, 0, 0);
            cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
            cairo_paint(cr);
            cairo_restore(cr);
            cairo_surface_destroy(img);
        }
        free(px);
        lra_pf_gen_free(g);
    }
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (rc == 0 && st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(s, path);
    cairo_surface_destroy(s);
    if (rc == 0 && st != CAIRO_STATUS_SUCCESS) {
        pb_seterr(err, errlen, "%s: cannot write the contact sheet: %s", path,
                  cairo_status_to_string(st));
        rc = -1;
    }
    return rc;
}

#else  // PB_NO_CAIRO

int lra_png_write(const char *path, const uint8_t *grey, int w, int h, char *err,
                  size_t errlen) {
    pb_seterr(err, errlen, "%s: pebble was built without cairo (libcairo2-dev)", path);
    return -1;
}

int lra_pf_sheet(const char *path, uint64_t seed, char *err, size_t errlen) {
    return lra_png_write(path, NULL, 0, 0, err, errlen);
}

#endif
