// safetensors.h: reading Hugging Face safetensors files (model.safetensors), checked
// throughout, so that a bad file is one line naming it and what is wrong, never a crash.
//
// Format: an 8-byte little-endian header length N; N bytes of JSON, an object
//   {"<name>": {"dtype": "F32"|"F16"|"BF16", "shape": [d0, d1, ...],
//               "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v", ...}}
// (the "__metadata__" entry is optional); then the data section, in which tensor <name>
// holds bytes [begin, end) in row-major order, little-endian. Tensors must tile the data
// section exactly: no overlap, no gap, nothing after the last one.
#ifndef PEBBLE_SAFETENSORS_H
#define PEBBLE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

// Return values of st_open and st_read_f32 (callers exit with PB_EXIT_DATA for ST_BAD,
// PB_EXIT_RUNTIME for ST_IO).
enum {
    ST_OK = 0,
    ST_BAD = -1,  // malformed file: header, offsets, dtype, shape, truncated data
    ST_IO = -2,   // cannot open or read the file (errno's reason in err)
};

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;                     // 0 is a scalar (numel 1)
    uint64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;          // byte range in the data section
} st_tensor;

typedef struct st_file {
    char *path;
    int fd;
    uint64_t file_size;
    uint64_t data_start;          // 8 + N: where the data section begins in the file
    int n;                        // tensors, in the order of their data
    st_tensor *tensors;
    int n_metadata;               // entries of "__metadata__" (0 when absent)
} st_file;

// Opens path and validates its whole header against the file's size (see above). Returns
// ST_OK with *out set, or ST_BAD / ST_IO with one line "<path>: <what is wrong>" in err.
int st_open(const char *path, st_file **out, char *err, size_t errlen);

// The tensor called name, or NULL.
const st_tensor *st_find(const st_file *f, const char *name);

// Bytes per element of a dtype, and its name ("F32", "F16", "BF16").
size_t st_dtype_size(st_dtype d);
const char *st_dtype_name(st_dtype d);

// t's numel elements converted to float32 into out (F16 and BF16 widen exactly: every
// value, subnormals, infinities and NaN included, is represented in float32). Returns
// ST_OK, or ST_BAD (the file is shorter than it was at st_open) / ST_IO with err.
int st_read_f32(const st_file *f, const st_tensor *t, float *out, char *err, size_t errlen);

void st_close(st_file *f);  // NULL is fine

// The exact float32 value of an IEEE binary16 / bfloat16 bit pattern.
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);

#endif
