// safetensors.c: the safetensors reader (see safetensors.h). The JSON header is parsed by
// Jansson (Debian's libjansson); everything it holds is then checked against the format and
// the file's size before any tensor is read.
#include "data/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/common.h"

// The reference implementation refuses headers over 100 MB; so do we, before allocating.
#define ST_MAX_HEADER 100000000ull

size_t st_dtype_size(st_dtype d) { return d == ST_F32 ? 4 : 2; }

const char *st_dtype_name(st_dtype d) {
    return d == ST_F32 ? "F32" : d == ST_F16 ? "F16" : "BF16";
}

// ----------------------------------------------------------------------------
// conversions

float st_bf16_to_f32(uint16_t b) {
    // bfloat16 is the top half of a float32.
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);  // inf, or NaN with its payload
    } else if (exp != 0) {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;  // +-0
    } else {
        // subnormal: man * 2^-24; normalise the mantissa (float32 holds it as a normal)
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ----------------------------------------------------------------------------
// the header

static int read_all(int fd, void *buf, size_t n, uint64_t off, size_t *got) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

// A JSON integer >= 0 (Jansson parses integers to long long; a real such as 2.0 is not one).
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

// One entry of the header into t; -1 with err ("<path>: tensor '<name>': ...").
static int parse_entry(const char *path, const char *name, const json_t *v, uint64_t data_len,
                       st_tensor *t, char *err, size_t errlen) {
    if (!json_is_object(v)) {
        pb_seterr(err, errlen, "%s: tensor '%s': not a JSON object", path, name);
        return -1;
    }
    const json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt)) {
        pb_seterr(err, errlen, "%s: tensor '%s': \"dtype\" %s", path, name,
                  dt ? "is not a string" : "is missing");
        return -1;
    }
    const char *d = json_string_value(dt);
    if (strcmp(d, "F32") == 0) t->dtype = ST_F32;
    else if (strcmp(d, "F16") == 0) t->dtype = ST_F16;
    else if (strcmp(d, "BF16") == 0) t->dtype = ST_BF16;
    else {
        pb_seterr(err, errlen, "%s: tensor '%s': dtype '%s' is not one of F32, F16, BF16", path,
                  name, d);
        return -1;
    }

    const json_t *sh = json_object_get(v, "shape");
    if (!json_is_array(sh)) {
        pb_seterr(err, errlen, "%s: tensor '%s': \"shape\" %s", path, name,
                  sh ? "is not an array of non-negative integers" : "is missing");
        return -1;
    }
    if (json_array_size(sh) > ST_MAX_DIMS) {
        pb_seterr(err, errlen, "%s: tensor '%s': shape has %zu dimensions, more than %d", path,
                  name, json_array_size(sh), ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)json_array_size(sh);
    t->numel = 1;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (get_u64(json_array_get(sh, (size_t)i), &t->shape[i]) != 0) {
            pb_seterr(err, errlen, "%s: tensor '%s': \"shape\" is not an array of non-negative "
                      "integers (element %d)", path, name, i);
            return -1;
        }
        if (t->shape[i] && t->numel > UINT64_MAX / t->shape[i]) overflow = 1;
        t->numel *= t->shape[i];
    }
    size_t es = st_dtype_size(t->dtype);
    if (overflow || t->numel > UINT64_MAX / es) {
        pb_seterr(err, errlen, "%s: tensor '%s': shape is too large", path, name);
        return -1;
    }

    const json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        get_u64(json_array_get(off, 0), &t->begin) != 0 ||
        get_u64(json_array_get(off, 1), &t->end) != 0) {
        pb_seterr(err, errlen, "%s: tensor '%s': \"data_offsets\" %s", path, name,
                  off ? "is not two non-negative integers [begin, end]" : "is missing");
        return -1;
    }
    if (t->begin > t->end) {
        pb_seterr(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu]: begin is past end",
                  path, name, (unsigned long long)t->begin, (unsigned long long)t->end);
        return -1;
    }
    if (t->end > data_len) {
        pb_seterr(err, errlen, "%s: tensor '%s': data_offsets end %llu is past the data section "
                  "(%llu bytes)", path, name, (unsigned long long)t->end,
                  (unsigned long long)data_len);
        return -1;
    }
    if (t->end - t->begin != t->numel * es) {
        char dims[200] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%llu", i ? ", " : "",
                     (unsigned long long)t->shape[i]);
        pb_seterr(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but "
                  "shape [%s] of %s needs %llu", path, name, (unsigned long long)t->begin,
                  (unsigned long long)t->end, (unsigned long long)(t->end - t->begin), dims,
                  d, (unsigned long long)(t->numel * es));
        return -1;
    }
    t->name = pb_malloc(strlen(name) + 1);
    strcpy(t->name, name);
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Sorted by offset, the tensors must tile [0, data_len) exactly.
static int check_tiling(const st_file *f, uint64_t data_len, char *err, size_t errlen) {
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->begin < at) {
            const st_tensor *p = &f->tensors[i - 1];
            pb_seterr(err, errlen, "%s: tensors '%s' (bytes [%llu, %llu)) and '%s' ([%llu, %llu)) "
                      "overlap", f->path, p->name, (unsigned long long)p->begin,
                      (unsigned long long)p->end, t->name, (unsigned long long)t->begin,
                      (unsigned long long)t->end);
            return -1;
        }
        if (t->begin > at) {
            pb_seterr(err, errlen, "%s: a gap in the data section: no tensor holds bytes [%llu, "
                      "%llu) (before tensor '%s')", f->path, (unsigned long long)at,
                      (unsigned long long)t->begin, t->name);
            return -1;
        }
        at = t->end;
    }
    if (at != data_len) {
        pb_seterr(err, errlen, "%s: a gap in the data section: no tensor holds bytes [%llu, %llu) "
                  "(its end)", f->path, (unsigned long long)at, (unsigned long long)data_len);
        return -1;
    }
    return 0;
}

static int parse_header(st_file *f, json_t *root, uint64_t data_len, char *err, size_t errlen) {
    if (!json_is_object(root)) {
        pb_seterr(err, errlen, "%s: the header is not a JSON object", f->path);
        return -1;
    }
    size_t n = json_object_size(root);
    f->tensors = pb_calloc(n ? n : 1, sizeof *f->tensors);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                pb_seterr(err, errlen, "%s: \"__metadata__\" is not a JSON object", f->path);
                return -1;
            }
            f->n_metadata = (int)json_object_size(v);
            continue;
        }
        if (parse_entry(f->path, key, v, data_len, &f->tensors[f->n], err, errlen) != 0)
            return -1;
        f->n++;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, by_offset);
    return check_tiling(f, data_len, err, errlen);
}

int st_open(const char *path, st_file **out, char *err, size_t errlen) {
    *out = NULL;
    st_file *f = pb_calloc(1, sizeof *f);
    f->path = pb_malloc(strlen(path) + 1);
    strcpy(f->path, path);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        pb_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        st_close(f);
        return ST_IO;
    }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) {
        pb_seterr(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        st_close(f);
        return ST_IO;
    }
    f->file_size = (uint64_t)sb.st_size;

    unsigned char len8[8];
    size_t got;
    if (read_all(f->fd, len8, 8, 0, &got) != 0) {
        pb_seterr(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        st_close(f);
        return ST_IO;
    }
    if (got < 8) {
        pb_seterr(err, errlen, "%s: %llu bytes, too short for a safetensors file (an 8-byte "
                  "header length first)", path, (unsigned long long)f->file_size);
        st_close(f);
        return ST_BAD;
    }
    uint64_t N = 0;
    for (int i = 7; i >= 0; i--) N = N << 8 | len8[i];  // little-endian
    if (N > f->file_size - 8) {
        pb_seterr(err, errlen, "%s: header length %llu runs past the end of the file (%llu bytes)",
                  path, (unsigned long long)N, (unsigned long long)f->file_size);
        st_close(f);
        return ST_BAD;
    }
    if (N > ST_MAX_HEADER) {
        pb_seterr(err, errlen, "%s: header length %llu is over the format's limit of %llu bytes",
                  path, (unsigned long long)N, ST_MAX_HEADER);
        st_close(f);
        return ST_BAD;
    }
    char *hdr = pb_malloc((size_t)N + 1);
    if (read_all(f->fd, hdr, (size_t)N, 8, &got) != 0 || got != N) {
        pb_seterr(err, errlen, "%s: cannot read the header: %s", path,
                  got != N ? "file shrank while read" : strerror(errno));
        free(hdr);
        st_close(f);
        return ST_IO;
    }
    f->data_start = 8 + N;
    json_error_t jerr;
    json_t *root = json_loadb(hdr, (size_t)N, JSON_REJECT_DUPLICATES, &jerr);
    free(hdr);
    if (!root) {
        pb_seterr(err, errlen, "%s: the header is not valid JSON: %s (at byte %d of %llu)", path,
                  jerr.text, jerr.position, (unsigned long long)N);
        st_close(f);
        return ST_BAD;
    }
    int rc = parse_header(f, root, f->file_size - f->data_start, err, errlen);
    json_decref(root);
    if (rc != 0) {
        st_close(f);
        return ST_BAD;
    }
    *out = f;
    return ST_OK;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

int st_read_f32(const st_file *f, const st_tensor *t, float *out, char *err, size_t errlen) {
    size_t bytes = (size_t)(t->end - t->begin), got;
    // F32 lands in out directly; the 2-byte types are read into out's second half and
    // widened from the front, so no element is overwritten before it is converted.
    unsigned char *raw = (unsigned char *)out + (t->dtype == ST_F32 ? 0 : bytes);
    if (read_all(f->fd, raw, bytes, f->data_start + t->begin, &got) != 0) {
        pb_seterr(err, errlen, "%s: tensor '%s': cannot read: %s", f->path, t->name,
                  strerror(errno));
        return ST_IO;
    }
    if (got != bytes) {
        pb_seterr(err, errlen, "%s: tensor '%s': the file is truncated (%zu of its %zu bytes)",
                  f->path, t->name, got, bytes);
        return ST_BAD;
    }
    for (uint64_t i = 0; i < t->numel; i++) {
        const unsigned char *p = raw + i * st_dtype_size(t->dtype);
        if (t->dtype == ST_F32) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                         (uint32_t)p[3] << 24;
            memcpy(&out[i], &u, sizeof u);
        } else {
            uint16_t h = (uint16_t)(p[0] | p[1] << 8);
            out[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
    }
    return ST_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->fd >= 0 && f->path) close(f->fd);
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    free(f);
}
