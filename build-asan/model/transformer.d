build-asan/model/transformer.o: model/transformer.c model/transformer.h \
 kernels/ops.h kernels/common.h
model/transformer.h:
kernels/ops.h:
kernels/common.h:
