build-asan/kernels/attention/naive.o: kernels/attention/naive.c \
 kernels/attention/attention.h kernels/ops.h kernels/common.h
kernels/attention/attention.h:
kernels/ops.h:
kernels/common.h:
