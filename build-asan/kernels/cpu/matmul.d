build-asan/kernels/cpu/matmul.o: kernels/cpu/matmul.c \
 kernels/cpu/matmul.h kernels/common.h
kernels/cpu/matmul.h:
kernels/common.h:
