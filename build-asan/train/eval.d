build-asan/train/eval.o: train/eval.c train/eval.h data/loader.h \
 kernels/common.h model/gpt2.h kernels/ops.h model/params.h \
 model/transformer.h train/checkpoint.h train/config.h train/optim.h \
 train/trainer.h
train/eval.h:
data/loader.h:
kernels/common.h:
model/gpt2.h:
kernels/ops.h:
model/params.h:
model/transformer.h:
train/checkpoint.h:
train/config.h:
train/optim.h:
train/trainer.h:
