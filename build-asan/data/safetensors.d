build-asan/data/safetensors.o: data/safetensors.c data/safetensors.h \
 kernels/common.h
data/safetensors.h:
kernels/common.h:
