build-asan/train/config.o: train/config.c train/config.h data/tokenizer.h \
 kernels/common.h
train/config.h:
data/tokenizer.h:
kernels/common.h:
