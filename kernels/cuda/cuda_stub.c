// cuda_stub.c: stands in for the CUDA backend when pebble is built without nvcc: the same
// symbols, reporting that no GPU can be used.
#include "kernels/cuda/cuda.h"

#include "kernels/common.h"

int pb_cuda_available(void) { return 0; }

const char *pb_cuda_unavailable_reason(void) { return "pebble was built without CUDA (no nvcc)"; }

const pb_ops *pb_ops_cuda(void) {
    pb_die(PB_EXIT_RUNTIME, "the CUDA backend is not built in: %s", pb_cuda_unavailable_reason());
}

const pb_ops *pb_ops_cuda_bf16(void) { return pb_ops_cuda(); }

void pb_cuda_set_tf32(int on) { (void)on; }
void pb_cuda_select_device(int dev) { (void)dev; }
size_t pb_cuda_mem_used(void) { return 0; }
void pb_cuda_sync(void) {}
