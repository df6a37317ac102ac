build-asan/kernels/cuda/cuda_stub.o: kernels/cuda/cuda_stub.c \
 kernels/cuda/cuda.h kernels/ops.h kernels/common.h
kernels/cuda/cuda.h:
kernels/ops.h:
kernels/common.h:
