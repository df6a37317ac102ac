build-asan/train/progress.o: train/progress.c train/progress.h
train/progress.h:
