// wgmma.cuh: what the Hopper (sm_90a) attention kernels (flash_wgmma_cuda.cu) need from the
// hardware: shared-memory tiles in the 128-byte swizzle, their matrix descriptors, cp.async
// tile loads, and the warpgroup MMA (wgmma) instructions with their fences.
//
// A warpgroup is 4 consecutive warps (128 threads). One wgmma computes D (64 x N, fp32, in the
// warpgroup's registers) = A (64 x 16) B (16 x N) (+ D). Warp w of the group holds rows
// 16w .. 16w+15 of D, and lane (g = lane/4, t = lane%4) holds, for each block of 8 columns j:
//   d[4j+0], d[4j+1] = row 16w+g,   columns 8j+2t, 8j+2t+1
//   d[4j+2], d[4j+3] = row 16w+g+8, columns 8j+2t, 8j+2t+1
// the layout of mma.sync's C tiles, so for 16-bit inputs an A operand in registers has the
// layout of mma.sync's A fragment and the accumulators of one product pack into the A operand
// of the next (P = softmax(S) into P V) without touching shared memory.
//
// B (and A, when not in registers) is read from shared memory through a 64-bit descriptor.
// Every tile here is stored swizzled: R rows of DH bf16 as panels of R rows x W bytes, W = 128
// for DH = 64 and 128 (DH/64 panels, "SW128") and W = 64 for DH = 32 (one panel, "SW64");
// 16-byte chunk c of row r sits at chunk position c ^ (r % 8) (SW128) or c ^ (r / 2 % 4)
// (SW64), the XOR of the address's 16-byte bits with its bits 7 and up, the tile 1024-byte
// aligned. Read with rows as the M/N index and columns as K ("K-major") it feeds Q K^T-like
// products; read with rows as the K index ("N-major", transposed B) it feeds P V-like
// products. The swizzle spreads the 8 rows of every 8x16-byte core matrix over all 32 banks.
#ifndef PEBBLE_WGMMA_CUH
#define PEBBLE_WGMMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

// The swizzle of a tile of DH columns: W bytes a panel row, the descriptor's layout code
// (bits 62-63: 1 = 128-byte swizzle, 2 = 64-byte), the row shift that turns r into the
// address bits 7.. of its row.
template <int DH> struct Sw {
    static_assert(DH == 32 || DH == 64 || DH == 128, "swizzled tiles of 32, 64 or 128 columns");
    static constexpr int W = DH == 32 ? 64 : 128, CP = W / 16, LOG_CP = DH == 32 ? 2 : 3;
    static constexpr int SHIFT = DH == 32 ? 1 : 0;
    static constexpr uint64_t MODE = DH == 32 ? 2ull << 62 : 1ull << 62;
};

// Byte offset of 16-byte chunk c (of DH/8) of row r in a tile of R rows.
template <int R, int DH>
__device__ __forceinline__ uint32_t swz(int r, int c) {
    typedef Sw<DH> S;
    return (c >> S::LOG_CP) * (R * S::W) + r * S::W +
           (((c & (S::CP - 1)) ^ ((r >> S::SHIFT) & (S::CP - 1))) << 4);
}

// The descriptor: start address, leading and stride byte offsets (each >> 4), the swizzle.
template <int DH>
__device__ __forceinline__ uint64_t sw_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFF) << 16 |
           (uint64_t)((sbo >> 4) & 0x3FFF) << 32 | Sw<DH>::MODE;
}

// K-major operand: rows r0 .. (M or N), columns 16 kk .. 16 kk + 15 (K) of an R-row tile.
// Core matrices of 8 rows lie 8 W bytes apart (the stride offset); a 16-column step is 32
// bytes inside a W-byte row (the hardware applies the swizzle to the final address, which
// is why the tile must be aligned to the swizzle's repeat), and every W/32 steps moves to the
// next panel.
template <int R, int DH>
__device__ __forceinline__ uint64_t desc_k(uint32_t tile, int r0, int kk) {
    constexpr int W = Sw<DH>::W, STEPS = W / 32;
    return sw_desc<DH>(tile + (kk / STEPS) * (R * W) + r0 * W + (kk % STEPS) * 32, 16, 8 * W);
}

// N-major B operand: k = rows 16 ks .. 16 ks + 15 of an R-row tile, n = all its columns.
// 8-row groups along k lie 8 W bytes apart (stride offset); the panels along n lie R W bytes
// apart (leading offset; DH = 32 has one).
template <int R, int DH>
__device__ __forceinline__ uint64_t desc_n(uint32_t tile, int ks) {
    constexpr int W = Sw<DH>::W;
    return sw_desc<DH>(tile + ks * 16 * W, R * W, 8 * W);
}

// cp.async of rows t0 .. t0+R-1 of a (T x DH) bf16 matrix (row stride `stride` elements) into
// a swizzled tile, 16 bytes per copy by NT threads; rows past T are zero-filled.
template <int R, int DH, int NT>
__device__ __forceinline__ void load_tile(uint32_t tile, const __nv_bfloat16 *src, size_t stride,
                                          int t0, int T) {
    constexpr int n = R * DH / 8;  // copies
#pragma unroll
    for (int i = 0; i < (n + NT - 1) / NT; i++) {
        int idx = i * NT + (int)threadIdx.x % NT, r = idx / (DH / 8), c = idx % (DH / 8);
        if (n % NT && idx >= n) break;
        bool in = t0 + r < T;
        const __nv_bfloat16 *p = in ? src + (size_t)(t0 + r) * stride + c * 8 : src;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(tile + swz<R, DH>(r, c)),
                     "l"(p), "r"(in ? 16 : 0));
    }
}

// cp.async of n floats src[t0 ..] into dst (fill for rows past T: 0).
template <int NT>
__device__ __forceinline__ void load_floats(float *dst, const float *src, int t0, int n, int T) {
    for (int r = (int)threadIdx.x % NT; r < n; r += NT) {
        bool in = t0 + r < T;
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst + r)),
                     "l"(in ? src + t0 + r : src), "r"(in ? 4 : 0));
    }
}

__device__ __forceinline__ void cpa_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cpa_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

// Shared memory written through the generic proxy (cp.async, ordinary stores) and read next
// by wgmma (the async proxy) needs this fence in the writing threads before the barrier.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// wgmma's protocol: fence (orders earlier register writes before the MMAs read them), the
// MMAs, commit them as a group, wait until at most N groups are in flight. Between issue and
// wait the accumulators belong to the tensor cores: reg_fence pins each register so the
// compiler moves no access across these points.
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
template <int N>
__device__ __forceinline__ void reg_fence(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
// A operands in registers are read by the tensor cores until the wait: fencing them after it
// keeps them live (and their registers unused by anything else) until then.
template <int N>
__device__ __forceinline__ void reg_fence(uint32_t (&a)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[i][e])::"memory");
}

// --- the instructions, m64nNk16 with bf16 inputs and fp32 accumulators, N = 32, 64 and 128,
// acc = 0 overwrites D. Generated by gen_wgmma.py (an operand list per accumulator register).

// D (64x32) {=, +=} A (64x16, shared memory, K-major) B (16x32, shared memory, K-major)
__device__ __forceinline__ void wgmma_ss(float (&d)[16], uint64_t a, uint64_t b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(a), "l"(b), "r"(acc));
}
// D (64x32) {=, +=} A (64x16, registers) B (16x32, shared memory; TB = 1: N-major)
template <int TB>
__device__ __forceinline__ void wgmma_rs(float (&d)[16], const uint32_t (&a)[4], uint64_t b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(TB));
}

// D (64x64) {=, +=} A (64x16, shared memory, K-major) B (16x64, shared memory, K-major)
__device__ __forceinline__ void wgmma_ss(float (&d)[32], uint64_t a, uint64_t b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b), "r"(acc));
}
// D (64x64) {=, +=} A (64x16, registers) B (16x64, shared memory; TB = 1: N-major)
template <int TB>
__device__ __forceinline__ void wgmma_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(TB));
}

// D (64x128) {=, +=} A (64x16, shared memory, K-major) B (16x128, shared memory, K-major)
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t a, uint64_t b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b), "r"(acc));
}
// D (64x128) {=, +=} A (64x16, registers) B (16x128, shared memory; TB = 1: N-major)
template <int TB>
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(TB));
}

#endif
