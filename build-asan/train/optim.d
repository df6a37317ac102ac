build-asan/train/optim.o: train/optim.c train/optim.h model/params.h \
 kernels/ops.h kernels/common.h
train/optim.h:
model/params.h:
kernels/ops.h:
kernels/common.h:
