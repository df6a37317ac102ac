build-asan/model/params.o: model/params.c model/params.h kernels/ops.h \
 kernels/common.h
model/params.h:
kernels/ops.h:
kernels/common.h:
