build-asan/kernels/ops.o: kernels/ops.c kernels/ops.h kernels/common.h
kernels/ops.h:
kernels/common.h:
