build-asan/model/gpt2_decode.o: model/gpt2_decode.c model/gpt2_decode.h \
 model/gpt2.h kernels/ops.h model/params.h model/transformer.h \
 kernels/common.h
model/gpt2_decode.h:
model/gpt2.h:
kernels/ops.h:
model/params.h:
model/transformer.h:
kernels/common.h:
