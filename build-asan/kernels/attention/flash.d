build-asan/kernels/attention/flash.o: kernels/attention/flash.c \
 kernels/attention/attention.h kernels/ops.h kernels/common.h
kernels/attention/attention.h:
kernels/ops.h:
kernels/common.h:
