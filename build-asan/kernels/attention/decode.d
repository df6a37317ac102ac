build-asan/kernels/attention/decode.o: kernels/attention/decode.c \
 kernels/attention/attention.h kernels/ops.h kernels/common.h
kernels/attention/attention.h:
kernels/ops.h:
kernels/common.h:
