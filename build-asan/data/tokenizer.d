build-asan/data/tokenizer.o: data/tokenizer.c data/tokenizer.h \
 kernels/common.h
data/tokenizer.h:
kernels/common.h:
