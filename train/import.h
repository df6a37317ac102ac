// import.h: `pebble import`: Hugging Face GPT-2 weights (model.safetensors + config.json of a
// GPT2LMHeadModel, any size) -> a pebble checkpoint.
#ifndef PEBBLE_IMPORT_H
#define PEBBLE_IMPORT_H

#include <stddef.h>

// `pebble import --hf DIR --out CKPT.h5`; argv[0] is "import".
int import_main(int argc, char **argv);

// Writes out (which must not exist) from DIR/config.json and DIR/model.safetensors, every
// tensor checked against the config first. The checkpoint is at step 0 with zero AdamW
// moments: --init, sample and eval take it. Returns 0; PB_EXIT_DATA with err for a bad or
// unsupported model; PB_EXIT_RUNTIME with err when out cannot be written; PB_EXIT_USAGE
// when out exists.
int import_hf(const char *dir, const char *out, char *err, size_t errlen);

#endif
