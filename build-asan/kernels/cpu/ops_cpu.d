build-asan/kernels/cpu/ops_cpu.o: kernels/cpu/ops_cpu.c \
 kernels/attention/attention.h kernels/ops.h kernels/common.h \
 kernels/cpu/matmul.h
kernels/attention/attention.h:
kernels/ops.h:
kernels/common.h:
kernels/cpu/matmul.h:
