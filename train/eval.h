// eval.h: `pebble eval`: a checkpoint's loss on the validation windows of some data.
#ifndef PEBBLE_EVAL_H
#define PEBBLE_EVAL_H

// `pebble eval --ckpt FILE|RUN_DIR --data PATTERN [--batches N] [--batch-size B] [--json]
// [--set section.key=value ...]`; argv[0] is "eval". The model, device and precision are the
// checkpoint's own configuration (then --set). Last line: `loss L ppl P tokens N`, or with
// --json one JSON object. Exit codes as everywhere: 2 usage, 3 bad checkpoint or data (or
// a model/data mismatch), 1 IO.
int eval_main(int argc, char **argv);

#endif
