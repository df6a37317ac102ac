build-asan/train/main.o: train/main.c data/prep.h kernels/common.h \
 train/bench.h train/checkpoint.h data/loader.h model/params.h \
 kernels/ops.h train/config.h train/optim.h train/eval.h train/import.h \
 train/export.h train/plot.h train/sample.h model/gpt2.h \
 model/transformer.h model/gpt2_decode.h train/trainer.h
data/prep.h:
kernels/common.h:
train/bench.h:
train/checkpoint.h:
data/loader.h:
model/params.h:
kernels/ops.h:
train/config.h:
train/optim.h:
train/eval.h:
train/import.h:
train/export.h:
train/plot.h:
train/sample.h:
model/gpt2.h:
model/transformer.h:
model/gpt2_decode.h:
train/trainer.h:
