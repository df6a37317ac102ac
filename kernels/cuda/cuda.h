// cuda.h: the CUDA backend's C interface: its op table, whether a GPU can be used, and the
// one precision switch (TF32 matmuls). Built only when nvcc is found; cuda_stub.c stands in
// for it otherwise, so the CPU-only build links the same symbols.
#ifndef PEBBLE_CUDA_H
#define PEBBLE_CUDA_H

#include <stddef.h>

#include "kernels/ops.h"

// 1 when a CUDA device of compute capability 9.x (Hopper: the only target pebble builds
// for) can be used; 0 otherwise, without crashing, also when no driver is installed.
int pb_cuda_available(void);
// Why pb_cuda_available() said 0, as one line ("no CUDA driver", "no CUDA device", ...).
const char *pb_cuda_unavailable_reason(void);

// The GPU the backend initialises (a rank's local_rank): before the first pb_ops_cuda*()
// call; 0 unless set. A device that does not exist is one line when the backend starts.
void pb_cuda_select_device(int dev);

// The CUDA backend (fp32). Initialises the device, cuBLASLt and scratch on first call;
// exits with a clear message when no usable GPU is present.
const pb_ops *pb_ops_cuda(void);

// The CUDA backend in mixed precision (kernels/ops.h, act_dtype): bf16 activations and
// bf16 weight copies for the ops, fp32 master weights, parameter gradients and AdamW state.
// Its attention: Hopper wgmma on the tensor cores (head dims 64 and 128), then the flash
// kernel on bf16 tensors with fp32 arithmetic (any head dim up to 128). Deterministic like
// the fp32 table.
const pb_ops *pb_ops_cuda_bf16(void);

// Matmuls in TF32 (cuBLASLt's FAST_TF32 compute type) instead of full fp32, in the fp32
// table. Off by default: parity tests need full fp32.
void pb_cuda_set_tf32(int on);

// Device memory in use (total - free, cudaMemGetInfo), in bytes; 0 without a device.
size_t pb_cuda_mem_used(void);
// Blocks until all queued GPU work is done (for timing).
void pb_cuda_sync(void);

#endif
