build-asan/train/plot.o: train/plot.c train/plot.h
train/plot.h:
