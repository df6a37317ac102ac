// device.cu: the CUDA backend's device and memory: whether a usable GPU is present, device
// memory (alloc, upload, download, zero), the scratch buffers the ops share, and the
// one-time initialisation (device 0, cuBLASLt, the TF32 switch).
#include "kernels/cuda/cuda_common.cuh"

#include <string.h>

extern "C" {
#include "kernels/cuda/cuda.h"
}

// ----------------------------------------------------------------------------
// device discovery, memory, scratch

static int g_available = -1;  // -1 not yet probed
static char g_reason[512];

extern "C" int pb_cuda_available(void) {
    if (g_available >= 0) return g_available;
    g_available = 0;
    int n = 0;
    // With no driver (libcuda.so absent: CI) the static runtime reports an error here
    // rather than crashing; that is the whole point of probing before anything else.
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        if (err == cudaErrorInsufficientDriver)
            snprintf(g_reason, sizeof g_reason, "no CUDA driver, or one older than CUDA %d.%d",
                     CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else if (err == cudaErrorNoDevice)
            snprintf(g_reason, sizeof g_reason, "no CUDA device");
        else
            snprintf(g_reason, sizeof g_reason, "cudaGetDeviceCount failed: %s",
                     cudaGetErrorString(err));
        (void)cudaGetLastError();
        return 0;
    }
    if (n == 0) {
        snprintf(g_reason, sizeof g_reason, "no CUDA device");
        return 0;
    }
    cudaDeviceProp p;
    err = cudaGetDeviceProperties(&p, 0);
    if (err != cudaSuccess) {
        snprintf(g_reason, sizeof g_reason, "cannot query CUDA device 0 (%s)",
                 cudaGetErrorString(err));
        (void)cudaGetLastError();
        return 0;
    }
    // The kernels are compiled for sm_90a only (see the Makefile): other GPUs cannot run them.
    if (p.major != 9) {
        snprintf(g_reason, sizeof g_reason,
                 "CUDA device 0 (%s) has compute capability %d.%d; pebble's kernels are built "
                 "for 9.0 (Hopper)", p.name, p.major, p.minor);
        return 0;
    }
    g_available = 1;
    return 1;
}

extern "C" const char *pb_cuda_unavailable_reason(void) {
    pb_cuda_available();
    return g_available ? "" : g_reason;
}

extern "C" size_t pb_cuda_mem_used(void) {
    if (!pb_cuda_available()) return 0;
    size_t free_b = 0, total_b = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

extern "C" void pb_cuda_sync(void) {
    if (pb_cuda_available()) cudaCheck(cudaDeviceSynchronize());
}

void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 256);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        pb_die(PB_EXIT_RUNTIME, "out of GPU memory allocating %zu bytes (%zu of %zu free): %s",
               bytes, free_b, total_b, cudaGetErrorString(err));
    }
    cudaCheck(cudaMemset(p, 0, bytes ? bytes : 256));  // the contract: zeroed
    return p;
}

void cuda_free(void *p) {
    if (p) cudaCheck(cudaFree(p));
}

void cuda_upload(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void cuda_download(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void cuda_zero(void *p, size_t bytes) { cudaCheck(cudaMemset(p, 0, bytes)); }

static void *g_scratch[CUDA_SCRATCH_COUNT];
static size_t g_scratch_bytes[CUDA_SCRATCH_COUNT];

void *cuda_scratch(int slot, size_t bytes) {
    PB_ASSERT(slot >= 0 && slot < CUDA_SCRATCH_COUNT);
    if (bytes > g_scratch_bytes[slot]) {
        // Freeing synchronises with the queued work that may still read the old buffer.
        cuda_free(g_scratch[slot]);
        g_scratch[slot] = cuda_alloc(bytes);
        g_scratch_bytes[slot] = bytes;
    }
    return g_scratch[slot];
}


// ----------------------------------------------------------------------------
// initialisation

extern "C" void pb_cuda_set_tf32(int on) { cuda_matmul_set_tf32(on); }

static int g_device;  // pb_cuda_select_device

extern "C" void pb_cuda_select_device(int dev) { g_device = dev; }

void cuda_init(void) {
    static int initialised = 0;
    if (!pb_cuda_available())
        pb_die(PB_EXIT_RUNTIME, "no CUDA device is available: %s", g_reason);
    if (!initialised) {
        int n = 0;
        cudaCheck(cudaGetDeviceCount(&n));
        if (g_device >= n)
            pb_die(PB_EXIT_RUNTIME, "this rank's GPU is %d (its local rank) but %d GPU%s visible "
                   "(CUDA_VISIBLE_DEVICES?): one rank per GPU", g_device, n,
                   n == 1 ? " is" : "s are");
        cudaCheck(cudaSetDevice(g_device));
        cuda_matmul_init();
        // A matmul precision, not a kernel choice: TF32 products in the fp32 table.
        const char *tf32 = getenv("PEBBLE_TF32");
        if (tf32 && strcmp(tf32, "1") == 0) cuda_matmul_set_tf32(1);
        initialised = 1;
    }
}
