build-asan/train/bench.o: train/bench.c train/bench.h kernels/common.h \
 model/gpt2.h kernels/ops.h model/params.h model/transformer.h
train/bench.h:
kernels/common.h:
model/gpt2.h:
kernels/ops.h:
model/params.h:
model/transformer.h:
