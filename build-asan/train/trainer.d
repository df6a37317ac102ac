build-asan/train/trainer.o: train/trainer.c train/trainer.h kernels/ops.h \
 model/gpt2.h model/params.h model/transformer.h train/config.h \
 data/loader.h kernels/common.h kernels/cpu/matmul.h kernels/cuda/cuda.h \
 train/checkpoint.h train/optim.h train/plot.h train/progress.h \
 train/sample.h model/gpt2_decode.h
train/trainer.h:
kernels/ops.h:
model/gpt2.h:
model/params.h:
model/transformer.h:
train/config.h:
data/loader.h:
kernels/common.h:
kernels/cpu/matmul.h:
kernels/cuda/cuda.h:
train/checkpoint.h:
train/optim.h:
train/plot.h:
train/progress.h:
train/sample.h:
model/gpt2_decode.h:
