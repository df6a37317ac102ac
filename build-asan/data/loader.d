build-asan/data/loader.o: data/loader.c data/loader.h data/shard.h \
 kernels/common.h
data/loader.h:
data/shard.h:
kernels/common.h:
