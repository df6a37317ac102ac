build-asan/train/sample.o: train/sample.c train/sample.h kernels/common.h \
 model/gpt2.h kernels/ops.h model/params.h model/transformer.h \
 model/gpt2_decode.h train/config.h data/tokenizer.h train/checkpoint.h \
 data/loader.h train/optim.h
train/sample.h:
kernels/common.h:
model/gpt2.h:
kernels/ops.h:
model/params.h:
model/transformer.h:
model/gpt2_decode.h:
train/config.h:
data/tokenizer.h:
train/checkpoint.h:
data/loader.h:
train/optim.h:
