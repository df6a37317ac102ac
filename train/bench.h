// bench.h: `pebble bench`: forward+backward throughput of GPT-2 shapes on a backend.
#ifndef PEBBLE_BENCH_H
#define PEBBLE_BENCH_H

int bench_main(int argc, char **argv);

#endif
