// test_safetensors.c: the safetensors reader (data/safetensors.h): F32/F16/BF16 values read
// back exactly (every F16 and BF16 bit pattern against independent references; a file written
// by PyTorch in /usr/bin/python3), each kind of malformed header one line and ST_BAD, and a
// fuzz of a few thousand random corruptions that must each open or fail cleanly (run under
// ASan and UBSan by `make fuzz-safetensors`). Needs only data/safetensors.c and
// kernels/common.c, so that the sanitizer build compiles just those.
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "kernels/common.h"

static char dir[256], path[400];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/pebble-test-st-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

// An 8-byte little-endian header length (hlen, or strlen(json) when hlen is -1), the
// JSON, then n bytes of data.
static void write_file(const char *p, const char *json, long long hlen, const void *data,
                       size_t n) {
    FILE *f = fopen(p, "wb");
    cr_assert(f);
    uint64_t len = hlen < 0 ? strlen(json) : (uint64_t)hlen;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    cr_assert_eq(fwrite(le, 1, 8, f), 8);
    cr_assert_eq(fwrite(json, 1, strlen(json), f), strlen(json));
    if (n) cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

// The value of a bfloat16 pattern from its fields (not by placing it in a float's top half,
// as the reader does): sign, 8-bit exponent, 7-bit mantissa.
static float bf16_reference(uint16_t b) {
    int s = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    double v;
    if (e == 0xff) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m / 128.0, -126);
    else v = ldexp(1.0 + m / 128.0, e - 127);
    return (float)(s ? -v : v);
}

// ----------------------------------------------------------------------------
// values

Test(safetensors, every_f16_and_bf16_pattern_and_f32_values_read_back_exactly) {
    // "h": all 65536 F16 patterns, "b": all 65536 BF16 patterns, "f": awkward F32 values
    enum { NH = 65536, NF = 8 };
    static uint16_t pat[NH];
    for (int i = 0; i < NH; i++) pat[i] = (uint16_t)i;
    float fv[NF] = {0.0f, -0.0f, 1.0f, -3.25f, 1e-45f, 3.4028235e38f, INFINITY, 0.1f};
    size_t n = 2 * sizeof pat + sizeof fv;
    unsigned char *data = malloc(n);
    memcpy(data, fv, sizeof fv);  // x86: little-endian already
    memcpy(data + sizeof fv, pat, sizeof pat);
    memcpy(data + sizeof fv + sizeof pat, pat, sizeof pat);
    char json[512];
    snprintf(json, sizeof json,
             "{\"__metadata__\": {\"format\": \"pt\"}, "
             "\"f\": {\"dtype\": \"F32\", \"shape\": [2, 4], \"data_offsets\": [0, %zu]}, "
             "\"h\": {\"dtype\": \"F16\", \"shape\": [256, 256], \"data_offsets\": [%zu, %zu]}, "
             "\"b\": {\"dtype\": \"BF16\", \"shape\": [65536], \"data_offsets\": [%zu, %zu]}}",
             sizeof fv, sizeof fv, sizeof fv + sizeof pat, sizeof fv + sizeof pat, n);
    write_file(path, json, -1, data, n);
    free(data);

    st_file *f;
    char err[512];
    cr_assert_eq(st_open(path, &f, err, sizeof err), ST_OK, "%s", err);
    cr_assert_eq(f->n, 3);
    cr_assert_eq(f->n_metadata, 1);
    const st_tensor *tf = st_find(f, "f"), *th = st_find(f, "h"), *tb = st_find(f, "b");
    cr_assert(tf && th && tb && !st_find(f, "__metadata__") && !st_find(f, "g"));
    cr_assert_eq(th->ndim, 2);
    cr_assert_eq(th->shape[1], 256);
    cr_assert_eq(th->numel, NH);
    cr_assert_eq(tb->dtype, ST_BF16);

    static float out[NH];
    cr_assert_eq(st_read_f32(f, tf, out, err, sizeof err), ST_OK, "%s", err);
    for (int i = 0; i < NF; i++) cr_assert_eq(bits(out[i]), bits(fv[i]), "F32 element %d", i);

    cr_assert_eq(st_read_f32(f, th, out, err, sizeof err), ST_OK, "%s", err);
    for (int i = 0; i < NH; i++) {
        _Float16 h;  // the compiler's own conversion is the reference
        uint16_t u = (uint16_t)i;
        memcpy(&h, &u, sizeof h);
        float want = (float)h;
        if (isnan(want))
            cr_assert(isnan(out[i]), "F16 0x%04x: %g, want NaN", i, (double)out[i]);
        else
            cr_assert_eq(bits(out[i]), bits(want), "F16 0x%04x: %a, want %a", i, (double)out[i],
                         (double)want);
    }
    cr_assert_eq(st_read_f32(f, tb, out, err, sizeof err), ST_OK, "%s", err);
    for (int i = 0; i < NH; i++) {
        float want = bf16_reference((uint16_t)i);
        if (isnan(want))
            cr_assert(isnan(out[i]), "BF16 0x%04x: %g, want NaN", i, (double)out[i]);
        else
            cr_assert_eq(bits(out[i]), bits(want), "BF16 0x%04x: %a, want %a", i,
                         (double)out[i], (double)want);
    }
    st_close(f);
}

// PyTorch writes the tensors (the format by hand: the safetensors package is not in
// Debian), and the float32 values it expects (torch's own .float()) beside them.
static const char *torch_writer =
    "import json, struct, sys, torch\n"
    "torch.manual_seed(0)\n"
    "ts = {'transformer.wte.weight': torch.randn(5, 3),\n"
    "      'h.0.attn.c_attn.weight': (torch.randn(4, 6) * 100).half(),\n"
    "      'h.0.ln_1.bias': torch.randn(2, 3, 2).bfloat16(),\n"
    "      'scalar': torch.tensor(-0.5, dtype=torch.float16)}\n"
    "names = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16'}\n"
    "hdr, blob, at = {'__metadata__': {'format': 'pt'}}, b'', 0\n"
    "for k, t in ts.items():\n"
    "    raw = t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32)\n"
    "    raw = raw.numpy().tobytes()\n"
    "    hdr[k] = {'dtype': names[t.dtype], 'shape': list(t.shape),\n"
    "              'data_offsets': [at, at + len(raw)]}\n"
    "    blob += raw; at += len(raw)\n"
    "h = json.dumps(hdr).encode()\n"
    "h += b' ' * (-len(h) % 8)\n"
    "open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + blob)\n"
    "torch.cat([t.float().flatten() for t in ts.values()]).numpy().tofile(sys.argv[2])\n";

Test(safetensors, a_file_written_with_pytorch_reads_as_torch_converts_it) {
    char script[400], expect[400], cmd[1400];
    snprintf(script, sizeof script, "%s/write.py", dir);
    snprintf(expect, sizeof expect, "%s/expect.f32", dir);
    FILE *s = fopen(script, "w");
    cr_assert(s);
    fputs(torch_writer, s);
    fclose(s);
    if (system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0)
        cr_skip_test("no PyTorch in /usr/bin/python3 (Debian's python3-torch)");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s", script, path, expect);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);

    float want[15 + 24 + 12 + 1];
    FILE *e = fopen(expect, "rb");
    cr_assert(e);
    cr_assert_eq(fread(want, sizeof(float), 52, e), 52);
    fclose(e);
    st_file *f;
    char err[512];
    cr_assert_eq(st_open(path, &f, err, sizeof err), ST_OK, "%s", err);
    cr_assert_eq(f->n, 4);
    const char *order[4] = {"transformer.wte.weight", "h.0.attn.c_attn.weight", "h.0.ln_1.bias",
                            "scalar"};
    st_dtype dtypes[4] = {ST_F32, ST_F16, ST_BF16, ST_F16};
    uint64_t numels[4] = {15, 24, 12, 1};
    float got[24];
    int at = 0;
    for (int k = 0; k < 4; k++) {
        const st_tensor *t = st_find(f, order[k]);
        cr_assert(t, "%s missing", order[k]);
        cr_assert_eq(t->dtype, dtypes[k]);
        cr_assert_eq(t->numel, numels[k]);
        cr_assert_eq(st_read_f32(f, t, got, err, sizeof err), ST_OK, "%s", err);
        for (uint64_t i = 0; i < t->numel; i++, at++)
            cr_assert_eq(bits(got[i]), bits(want[at]), "%s[%d]: %a, torch says %a", order[k],
                         (int)i, (double)got[i], (double)want[at]);
    }
    cr_assert_eq(st_find(f, "scalar")->ndim, 0);
    st_close(f);
}

// ----------------------------------------------------------------------------
// malformed files: one line naming the file, and ST_BAD

typedef struct {
    const char *json;
    long long hlen;     // -1: the JSON's length
    size_t data_bytes;  // zero bytes of data after the header
    const char *want;   // the message after "<path>: "
} bad_case;

#define X "{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}"

static const bad_case bad_cases[] = {
    {"{\"x\": " X "}", 1000, 8, "header length 1000 runs past the end of the file (77 bytes)"},
    {"{\"x\": {\"dtype\": \"F32\",", -1, 8, "the header is not valid JSON: "},
    {"{\"x\": " X ", \"x\": " X "}", -1, 8, "the header is not valid JSON: duplicate object key"},
    {"[1, 2]", -1, 0, "the header is not a JSON object"},
    {"{\"x\": 5}", -1, 8, "tensor 'x': not a JSON object"},
    {"{\"x\": " X ", \"__metadata__\": 3}", -1, 8, "\"__metadata__\" is not a JSON object"},
    {"{\"x\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", -1, 8, "tensor 'x': \"dtype\" is missing"},
    {"{\"x\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", -1, 8,
     "tensor 'x': dtype 'I64' is not one of F32, F16, BF16"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}", -1, 8,
     "tensor 'x': \"shape\" is not an array of non-negative integers"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 8]}}", -1, 8,
     "tensor 'x': \"shape\" is not an array of non-negative integers (element 1)"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", -1, 8,
     "tensor 'x': \"shape\" is not an array of non-negative integers (element 0)"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", -1, 8,
     "tensor 'x': \"data_offsets\" is not two non-negative integers [begin, end]"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [\"0\", 8]}}", -1, 8,
     "tensor 'x': \"data_offsets\" is not two non-negative integers [begin, end]"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", -1, 8,
     "tensor 'x': data_offsets [8, 0]: begin is past end"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", -1, 8,
     "tensor 'x': data_offsets end 16 is past the data section (8 bytes)"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", -1, 8,
     "tensor 'x': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12"},
    {"{\"x\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"data_offsets\": [0, 8]}}", -1, 8,
     "tensor 'x': data_offsets [0, 8] hold 8 bytes, but shape [2, 3] of BF16 needs 12"},
    {"{\"x\": " X ", \"y\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", -1,
     12, "tensors 'x' (bytes [0, 8)) and 'y' ([4, 12)) overlap"},
    {"{\"y\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}, "
     "\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", -1, 12,
     "a gap in the data section: no tensor holds bytes [4, 8) (before tensor 'y')"},
    {"{\"x\": " X "}", -1, 12, "a gap in the data section: no tensor holds bytes [8, 12) (its end)"},
    {"{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
     "\"data_offsets\": [0, 8]}}", -1, 8, "tensor 'x': shape is too large"},
};

Test(safetensors, each_malformed_header_is_one_line_and_bad_data) {
    unsigned char zeros[16] = {0};
    char err[1024], want[1400];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        write_file(path, c->json, c->hlen, zeros, c->data_bytes);
        st_file *f = (st_file *)1;
        err[0] = '\0';
        int rc = st_open(path, &f, err, sizeof err);
        cr_assert_eq(rc, ST_BAD, "case %zu (%s): rc %d, %s", i, c->json, rc, err);
        cr_assert_null(f, "case %zu", i);
        snprintf(want, sizeof want, "%s: %s", path, c->want);
        cr_assert(strncmp(err, want, strlen(want)) == 0, "case %zu: got '%s', want '%s'", i, err,
                  want);
        cr_assert(!strchr(err, '\n'), "case %zu: more than one line: %s", i, err);
    }
    // shorter than the length field; missing file (IO, not bad data)
    FILE *f4 = fopen(path, "wb");
    fwrite("abcd", 1, 4, f4);
    fclose(f4);
    st_file *f;
    cr_assert_eq(st_open(path, &f, err, sizeof err), ST_BAD);
    snprintf(want, sizeof want, "%s: 4 bytes, too short for a safetensors file", path);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
    char missing[500];
    snprintf(missing, sizeof missing, "%s/nope.safetensors", dir);
    cr_assert_eq(st_open(missing, &f, err, sizeof err), ST_IO);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    cr_assert_str_eq(err, want);
}

Test(safetensors, a_file_cut_after_open_is_bad_data_on_read) {
    float v[4] = {1, 2, 3, 4};
    write_file(path, "{\"x\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", -1,
               v, sizeof v);
    st_file *f;
    char err[1024];
    cr_assert_eq(st_open(path, &f, err, sizeof err), ST_OK, "%s", err);
    cr_assert_eq(truncate(path, (off_t)(f->data_start + 6)), 0);
    float out[4];
    cr_assert_eq(st_read_f32(f, &f->tensors[0], out, err, sizeof err), ST_BAD);
    cr_assert(strstr(err, "tensor 'x': the file is truncated (6 of its 16 bytes)"), "%s", err);
    st_close(f);
}

// ----------------------------------------------------------------------------
// fuzz: random corruptions of a valid file, each opening or failing cleanly

Test(safetensors, fuzzed_files_open_or_fail_cleanly, .timeout = 300) {
    // the valid file: three tensors of three dtypes, metadata, and a padded header
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[3,1,2],\"data_offsets\":[32,44]}}      ";
    unsigned char data[44];
    for (int i = 0; i < 44; i++) data[i] = (unsigned char)(i * 37 + 11);
    write_file(path, json, -1, data, sizeof data);
    FILE *in = fopen(path, "rb");
    unsigned char good[1024];
    size_t n = fread(good, 1, sizeof good, in);
    fclose(in);
    st_file *f;
    char err[1024];
    cr_assert_eq(st_open(path, &f, err, sizeof err), ST_OK, "%s", err);
    st_close(f);

    pb_rng rng;
    pb_rng_seed(&rng, 17);
    int opened = 0, refused = 0;
    unsigned char buf[1024];
    for (int it = 0; it < 4000; it++) {
        memcpy(buf, good, n);
        size_t len = n;
        int kind = (int)(pb_rng_u64(&rng) % 4);
        int flips = 1 + (int)(pb_rng_u64(&rng) % 4);
        if (kind == 0) {  // byte flips anywhere
            for (int k = 0; k < flips; k++) buf[pb_rng_u64(&rng) % n] ^= (unsigned char)(1 + pb_rng_u64(&rng) % 255);
        } else if (kind == 1) {  // a JSON character in the header: digits, quotes, brackets
            const char *cs = "0123456789-\"[]{},:.eE \\u";
            for (int k = 0; k < flips; k++)
                buf[8 + pb_rng_u64(&rng) % (n - 8 - 44)] = (unsigned char)cs[pb_rng_u64(&rng) % strlen(cs)];
        } else if (kind == 2) {  // truncation
            len = (size_t)(pb_rng_u64(&rng) % n);
        } else {  // another header length: near the true one, or any 64-bit value
            uint64_t hl = strlen(json);
            uint64_t v = pb_rng_u64(&rng) % 2 ? hl + (pb_rng_u64(&rng) % 33) - 16 : pb_rng_u64(&rng);
            for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(v >> (8 * i));
        }
        FILE *o = fopen(path, "wb");
        cr_assert(o);
        if (len) fwrite(buf, 1, len, o);
        fclose(o);
        err[0] = '\0';
        int rc = st_open(path, &f, err, sizeof err);
        if (rc == ST_OK) {
            opened++;
            for (int t = 0; t < f->n; t++) {
                float *out = malloc((size_t)f->tensors[t].numel * sizeof(float) + 1);
                int r = st_read_f32(f, &f->tensors[t], out, err, sizeof err);
                cr_assert_eq(r, ST_OK, "iteration %d: a tensor of an opened file: %s", it, err);
                free(out);
            }
            st_close(f);
        } else {
            refused++;
            cr_assert_eq(rc, ST_BAD, "iteration %d: rc %d: %s", it, rc, err);
            cr_assert(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':' &&
                      !strchr(err, '\n'), "iteration %d: %s", it, err);
        }
    }
    // the corruptions reach both outcomes (a flip in the data, or in a dtype letter that
    // keeps it valid, opens)
    cr_assert(opened > 50 && refused > 1000, "%d opened, %d refused", opened, refused);
    printf("fuzz: 4000 corruptions: %d opened, %d refused cleanly\n", opened, refused);
}
