build-asan/data/shard.o: data/shard.c data/shard.h kernels/common.h
data/shard.h:
kernels/common.h:
