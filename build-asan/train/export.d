build-asan/train/export.o: train/export.c train/export.h kernels/common.h \
 kernels/ops.h model/gpt2.h model/params.h model/transformer.h \
 train/checkpoint.h data/loader.h train/config.h train/optim.h
train/export.h:
kernels/common.h:
kernels/ops.h:
model/gpt2.h:
model/params.h:
model/transformer.h:
train/checkpoint.h:
data/loader.h:
train/config.h:
train/optim.h:
