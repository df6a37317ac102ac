// ckpt_h5.c: HDF5 helpers of the checkpoint module (ckpt_h5.h): one-line errors with HDF5's
// own reason, and typed attributes and groups.
#include "train/ckpt_h5.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"

// ----------------------------------------------------------------------------
// errors
// ----------------------------------------------------------------------------
// errors: the first failure is the one reported, as "<file>: <what>[: <hdf5's reason>]"


void ck_fail(ck_ctx *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    if (!c->err || c->errlen == 0) return;
    int off = snprintf(c->err, c->errlen, "%s: ", c->path);
    if (off < 0 || (size_t)off >= c->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + off, c->errlen - (size_t)off, fmt, ap);
    va_end(ap);
}

// HDF5 records a stack of errors per failed call; the innermost one says what really went
// wrong ("data error detected by Fletcher32 checksum", "truncated file: ..."). We report
// that one, on one line, and clear the stack.
typedef struct {
    char msg[256];
} h5_reason;

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
    h5_reason *r = data;
    if (n != 0) return 0;
    if (e->desc && e->desc[0]) snprintf(r->msg, sizeof r->msg, "%s", e->desc);
    else H5Eget_msg(e->min_num, NULL, r->msg, sizeof r->msg);
    return 0;
}

static void h5_last_error(char *buf, size_t n) {
    h5_reason r = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, &r);
    H5Eclear2(H5E_DEFAULT);
    // IO failures carry the whole write(2) call; the OS's reason is the part worth keeping.
    const char *os = strstr(r.msg, "error message = '");
    if (os) {
        os += strlen("error message = '");
        size_t len = strcspn(os, "'");
        snprintf(buf, n, "%.*s", (int)len, os);
    } else {
        snprintf(buf, n, "%s", r.msg[0] ? r.msg : "unknown HDF5 error");
    }
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

// ck_fail with HDF5's reason appended; returns -1 for `return ck_h5_fail(...)`.
int ck_h5_fail(ck_ctx *c, const char *fmt, ...) {
    char what[512], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    h5_last_error(why, sizeof why);
    ck_fail(c, "%s: %s", what, why);
    return -1;
}

// HDF5 prints its error stack to stderr by default; we print our one line instead.
// Also, before HDF5's first call, stops it registering its exit-time cleanup. That cleanup
// closes whatever file ids are still open, and a file whose close failed (a full disk: the
// metadata could not be flushed) is left half-closed inside HDF5, which then crashes at exit
// after pebble has printed its error (exit 139 instead of 1). pebble closes what it opens on
// every path, so there is nothing left for the cleanup to do.
void ck_h5_quiet(void) {
    static int once;
    if (!once) {
        H5dont_atexit();
        once = 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

// ----------------------------------------------------------------------------
// writing attributes and datasets

int ck_write_attr(ck_ctx *c, hid_t obj, const char *name, hid_t type, const void *buf) {
    hid_t space = H5Screate(H5S_SCALAR);
    if (space < 0) return ck_h5_fail(c, "cannot write attribute '%s'", name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || H5Awrite(a, type, buf) < 0) rc = ck_h5_fail(c, "cannot write attribute '%s'", name);
    if (a >= 0 && H5Aclose(a) < 0 && rc == 0) rc = ck_h5_fail(c, "cannot write attribute '%s'", name);
    H5Sclose(space);
    return rc;
}

int ck_write_i64(ck_ctx *c, hid_t obj, const char *name, int64_t v) {
    return ck_write_attr(c, obj, name, H5T_STD_I64LE, &v);
}
int ck_write_u64(ck_ctx *c, hid_t obj, const char *name, uint64_t v) {
    return ck_write_attr(c, obj, name, H5T_STD_U64LE, &v);
}
int ck_write_f64(ck_ctx *c, hid_t obj, const char *name, double v) {
    return ck_write_attr(c, obj, name, H5T_IEEE_F64LE, &v);
}

// Fixed-length, NUL-terminated UTF-8. A variable-length string would live in the global
// heap, which has no checksum; a fixed one is stored in the object header, which has.
// (h5py reads it as bytes: .decode() gives the str.)
int ck_write_str(ck_ctx *c, hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(value) + 1) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return ck_h5_fail(c, "cannot write attribute '%s'", name);
    }
    int rc = ck_write_attr(c, obj, name, t, value);
    H5Tclose(t);
    return rc;
}

hid_t ck_make_group(ck_ctx *c, hid_t parent, const char *name, const char *shown) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) ck_h5_fail(c, "cannot create group %s", shown);
    return g;
}

// One fp32 dataset with the Hugging Face shape of p, chunked by rows, Fletcher32-summed.
// ----------------------------------------------------------------------------
// reading attributes

// Opens the attribute and checks its class; returns -1 (reported) when missing or wrong.
static hid_t open_attr(ck_ctx *c, hid_t obj, const char *where, const char *name,
                       H5T_class_t want) {
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        ck_h5_fail(c, "cannot read attribute '%s' of %s", name, where);
        return -1;
    }
    if (ex == 0) {
        ck_fail(c, "missing attribute '%s' of %s", name, where);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        ck_h5_fail(c, "cannot read attribute '%s' of %s", name, where);
        return -1;
    }
    hid_t t = H5Aget_type(a);
    hid_t s = H5Aget_space(a);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t npoints = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (cls != want || npoints != 1) {
        static const char *const kinds[] = {[H5T_INTEGER] = "an integer", [H5T_FLOAT] = "a number",
                                            [H5T_STRING] = "a string"};
        ck_fail(c, "attribute '%s' of %s is not %s", name, where,
                want <= H5T_STRING && kinds[want] ? kinds[want] : "of the expected type");
        H5Aclose(a);
        return -1;
    }
    return a;
}

static int read_num(ck_ctx *c, hid_t obj, const char *where, const char *name,
                    H5T_class_t cls, hid_t memtype, void *out) {
    hid_t a = open_attr(c, obj, where, name, cls);
    if (a < 0) return -1;
    int rc = 0;
    if (H5Aread(a, memtype, out) < 0)
        rc = ck_h5_fail(c, "cannot read attribute '%s' of %s", name, where);
    H5Aclose(a);
    return rc;
}

int ck_read_i64(ck_ctx *c, hid_t obj, const char *where, const char *name, int64_t *out) {
    return read_num(c, obj, where, name, H5T_INTEGER, H5T_NATIVE_INT64, out);
}
int ck_read_u64(ck_ctx *c, hid_t obj, const char *where, const char *name, uint64_t *out) {
    return read_num(c, obj, where, name, H5T_INTEGER, H5T_NATIVE_UINT64, out);
}
int ck_read_f64(ck_ctx *c, hid_t obj, const char *where, const char *name, double *out) {
    return read_num(c, obj, where, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, out);
}

// A string attribute, variable-length or fixed (as other writers make them); *out is
// malloc'd.
int ck_read_str(ck_ctx *c, hid_t obj, const char *where, const char *name, char **out) {
    *out = NULL;
    hid_t a = open_attr(c, obj, where, name, H5T_STRING);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    hid_t mt = -1;
    int rc = -1;
    htri_t vlen = ft >= 0 ? H5Tis_variable_str(ft) : -1;
    if (vlen < 0) goto done;
    // The memory type must carry the file's character set, or HDF5 finds no conversion.
    mt = H5Tcopy(H5T_C_S1);
    H5T_cset_t cset = H5Tget_cset(ft);
    if (mt < 0 || cset < 0 || H5Tset_cset(mt, cset) < 0) goto done;
    if (vlen) {
        char *s = NULL;
        if (H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0) goto done;
        size_t len = s ? strlen(s) : 0;
        *out = pb_malloc(len + 1);
        memcpy(*out, s ? s : "", len + 1);
        H5free_memory(s);
    } else {
        size_t size = H5Tget_size(ft);
        if (size == 0 || H5Tset_size(mt, size + 1) < 0 ||
            H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0)
            goto done;
        *out = pb_calloc(size + 1, 1);
        if (H5Aread(a, mt, *out) < 0) {
            free(*out);
            *out = NULL;
            goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0) ck_h5_fail(c, "cannot read attribute '%s' of %s", name, where);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

// ----------------------------------------------------------------------------
// opening and checking a file

// 1 if the link path (e.g. "optimizer/m") exists, walking one component at a time as
// H5Lexists requires; 0 if not; -1 (reported) on an HDF5 error.
int ck_link_exists(ck_ctx *c, hid_t f, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == '\0') {
            char ch = *p;
            *p = '\0';
            htri_t ex = H5Lexists(f, buf, H5P_DEFAULT);
            if (ex < 0) return ck_h5_fail(c, "cannot look up /%s", buf);
            if (ex == 0) return 0;
            *p = ch;
            if (ch == '\0') return 1;
        }
    }
}

hid_t ck_open_group(ck_ctx *c, hid_t f, const char *path) {
    int ex = ck_link_exists(c, f, path);
    if (ex < 0) return -1;
    if (ex == 0) {
        ck_fail(c, "missing group /%s", path);
        return -1;
    }
    hid_t g = H5Gopen2(f, path, H5P_DEFAULT);
    if (g < 0) ck_h5_fail(c, "cannot open group /%s", path);
    return g;
}

// Opens path as a pebble checkpoint of format version 1; its model family into family.
