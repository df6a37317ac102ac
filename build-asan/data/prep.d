build-asan/data/prep.o: data/prep.c data/prep.h data/shard.h \
 data/tokenizer.h kernels/common.h
data/prep.h:
data/shard.h:
data/tokenizer.h:
kernels/common.h:
