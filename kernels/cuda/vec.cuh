// vec.cuh: the elementwise access helpers the CUDA op kernels share: 4 elements at a time
// (ld4 / st4, one 16- or 8-byte access when aligned), 8 at a time from 16-byte aligned rows
// (ld8 / to_f8 / st8), and the grid of the elementwise kernels (one thread per 4 elements).
#ifndef PEBBLE_CUDA_VEC_CUH
#define PEBBLE_CUDA_VEC_CUH

#include "kernels/cuda/cuda_common.cuh"

// ----------------------------------------------------------------------------
// 128-bit access helpers: 4 consecutive floats at p[i..i+3], one float4 when vec (all the
// kernel's pointers 16-byte aligned and i+4 <= n), else element by element up to n.

static inline bool aligned16(const void *p) { return p == NULL || ((uintptr_t)p & 15u) == 0; }

__device__ __forceinline__ void ld4(float v[4], const float *p, size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        float4 t = *reinterpret_cast<const float4 *>(p + i);
        v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = i + k < n ? p[i + k] : 0.0f;
    }
}

__device__ __forceinline__ void st4(float *p, const float v[4], size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        *reinterpret_cast<float4 *>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (i + k < n) p[i + k] = v[k];
    }
}

// bf16: 4 elements are 8 bytes (one uint2 when vec)
__device__ __forceinline__ void ld4(float v[4], const bf16 *p, size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        uint2 t = *reinterpret_cast<const uint2 *>(p + i);
        float2 a = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&t.x));
        float2 b = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&t.y));
        v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = i + k < n ? __bfloat162float(p[i + k]) : 0.0f;
    }
}

__device__ __forceinline__ void st4(bf16 *p, const float v[4], size_t i, size_t n, bool vec) {
    if (vec && i + 4 <= n) {
        __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]), b = __floats2bfloat162_rn(v[2], v[3]);
        uint2 t;
        t.x = *reinterpret_cast<uint32_t *>(&a);
        t.y = *reinterpret_cast<uint32_t *>(&b);
        *reinterpret_cast<uint2 *>(p + i) = t;
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (i + k < n) p[i + k] = __float2bfloat16_rn(v[k]);
    }
}

#define EW_THREADS 256
// Grid for elementwise kernels: one thread per 4 elements.
static inline unsigned ew_blocks(size_t n) { return cdiv(cdiv(n, 4), EW_THREADS); }
__device__ __forceinline__ size_t ew_index(void) {
    return ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
}


// ----------------------------------------------------------------------------
// 8 consecutive elements (16-byte aligned) held as loaded: one uint4 in bf16, two in fp32; to
// floats (to_f8) and back (st8).
template <typename A> struct Raw8 {
    uint4 u[sizeof(A) / 2];
};
template <typename A> __device__ __forceinline__ Raw8<A> ld8(const A *p) {
    Raw8<A> r;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(A) / 2); i++) r.u[i] = reinterpret_cast<const uint4 *>(p)[i];
    return r;
}
__device__ __forceinline__ void to_f8(float v[8], const Raw8<float> &r) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        v[4 * i] = __uint_as_float(r.u[i].x), v[4 * i + 1] = __uint_as_float(r.u[i].y);
        v[4 * i + 2] = __uint_as_float(r.u[i].z), v[4 * i + 3] = __uint_as_float(r.u[i].w);
    }
}
__device__ __forceinline__ void to_f8(float v[8], const Raw8<bf16> &r) {
    const uint32_t u[4] = {r.u[0].x, r.u[0].y, r.u[0].z, r.u[0].w};
#pragma unroll
    for (int k = 0; k < 4; k++) {  // a bf16 is the top half of its float
        v[2 * k] = __uint_as_float(u[k] << 16), v[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
}
// floats to the element type (bf16: round to nearest even), and a 16-byte aligned store
template <typename A> __device__ __forceinline__ Raw8<A> to_raw8(const float v[8]);
template <> __device__ __forceinline__ Raw8<float> to_raw8<float>(const float v[8]) {
    Raw8<float> r;
    r.u[0] = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                        __float_as_uint(v[3]));
    r.u[1] = make_uint4(__float_as_uint(v[4]), __float_as_uint(v[5]), __float_as_uint(v[6]),
                        __float_as_uint(v[7]));
    return r;
}
template <> __device__ __forceinline__ Raw8<bf16> to_raw8<bf16>(const float v[8]) {
    Raw8<bf16> r;
    uint32_t *u = reinterpret_cast<uint32_t *>(&r.u[0]);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        u[k] = *reinterpret_cast<uint32_t *>(&h);
    }
    return r;
}
template <typename A> __device__ __forceinline__ void st_raw8(A *p, const Raw8<A> &r) {
#pragma unroll
    for (int i = 0; i < (int)(sizeof(A) / 2); i++) reinterpret_cast<uint4 *>(p)[i] = r.u[i];
}
template <typename A> __device__ __forceinline__ void st8(A *p, const float v[8]) {
    st_raw8(p, to_raw8<A>(v));
}


#endif
