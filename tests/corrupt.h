// corrupt.h: damaging a checkpoint on purpose, for the tests of its checksums and of resume's
// fallback (test_checkpoint.c, test_resume.c).
#ifndef PEBBLE_TESTS_CORRUPT_H
#define PEBBLE_TESTS_CORRUPT_H

#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>

// Flips one bit in the middle of dataset `name`'s first chunk in the HDF5 file at path, behind
// HDF5's back: only the dataset's Fletcher32 checksum can notice.
static inline void flip_byte_in(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s", path);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(ds >= 0, "no %s in %s", name, path);
    hsize_t off[2];
    unsigned mask;
    haddr_t addr;
    hsize_t size;
    hid_t sp = H5Dget_space(ds);
    cr_assert(H5Dget_chunk_info(ds, sp, 0, off, &mask, &addr, &size) >= 0);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    FILE *fp = fopen(path, "r+b");
    cr_assert(fp);
    long at = (long)addr + (long)(size / 2);
    fseek(fp, at, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, at, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
}

#endif
