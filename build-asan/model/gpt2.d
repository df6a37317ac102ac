build-asan/model/gpt2.o: model/gpt2.c model/gpt2.h kernels/ops.h \
 model/params.h model/transformer.h kernels/common.h
model/gpt2.h:
kernels/ops.h:
model/params.h:
model/transformer.h:
kernels/common.h:
