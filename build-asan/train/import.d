build-asan/train/import.o: train/import.c train/import.h \
 data/safetensors.h kernels/common.h model/gpt2.h kernels/ops.h \
 model/params.h model/transformer.h train/checkpoint.h data/loader.h \
 train/config.h train/optim.h
train/import.h:
data/safetensors.h:
kernels/common.h:
model/gpt2.h:
kernels/ops.h:
model/params.h:
model/transformer.h:
train/checkpoint.h:
data/loader.h:
train/config.h:
train/optim.h:
