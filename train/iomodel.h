// iomodel.h: `pebble iomodel`, the I/O model of attention (kernels/attention/iomodel.h) as a
// command: a table of words moved against the bounds, JSON rows, PNGs.
#ifndef PEBBLE_TRAIN_IOMODEL_H
#define PEBBLE_TRAIN_IOMODEL_H

int iomodel_main(int argc, char **argv);  // argv[0] = "iomodel"; returns the exit code

#endif
