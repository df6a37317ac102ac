// fixture.h: the reader of the PyTorch fixtures (tests/fixtures/*.bin, written by
// gen_gpt2_fixture.py and gen_block_fixture.py): magic "PBFX", u32 count, then per record
// u32 name length, the name, u32 dtype (0 float32, 1 int32), u32 ndim, u32 dims[ndim], the
// data, little endian. Header-only, static: each suite that includes it reads one file.
#ifndef PEBBLE_TESTS_FIXTURE_H
#define PEBBLE_TESTS_FIXTURE_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx_record {
    char name[128];
    int dtype;  // 0 float32, 1 int32
    int ndim;
    int dims[4];
    size_t numel;
    void *data;
} fx_record;

static fx_record fx[512];
static int fx_count;

// Reads path once (later calls return at once).
static void fx_load(const char *path) {
    if (fx_count) return;
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (run from the repository root)", path);
    char magic[4];
    uint32_t count;
    cr_assert(fread(magic, 1, 4, f) == 4 && memcmp(magic, "PBFX", 4) == 0);
    cr_assert(fread(&count, 4, 1, f) == 1 && count <= 512);
    for (uint32_t i = 0; i < count; i++) {
        fx_record *r = &fx[i];
        uint32_t len, dtype, ndim, dim;
        cr_assert(fread(&len, 4, 1, f) == 1 && len < sizeof r->name);
        cr_assert(fread(r->name, 1, len, f) == len);
        r->name[len] = '\0';
        cr_assert(fread(&dtype, 4, 1, f) == 1 && fread(&ndim, 4, 1, f) == 1 && ndim <= 4);
        r->dtype = (int)dtype;
        r->ndim = (int)ndim;
        r->numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            cr_assert(fread(&dim, 4, 1, f) == 1);
            r->dims[d] = (int)dim;
            r->numel *= dim;
        }
        r->data = malloc(r->numel * 4);
        cr_assert(fread(r->data, 4, r->numel, f) == r->numel);
    }
    fx_count = (int)count;
    fclose(f);
}

static const fx_record *fx_get(const char *name) {
    for (int i = 0; i < fx_count; i++)
        if (strcmp(fx[i].name, name) == 0) return &fx[i];
    cr_assert_fail("fixture has no record %s", name);
    return NULL;
}

#endif
