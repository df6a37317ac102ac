build-asan/kernels/common.o: kernels/common.c kernels/common.h
kernels/common.h:
