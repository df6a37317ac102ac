// export.h: `pebble export`: a checkpoint's weights for other tools (safetensors and a
// config.json that Hugging Face transformers' GPT2LMHeadModel.from_pretrained(DIR) loads).
#ifndef PEBBLE_EXPORT_H
#define PEBBLE_EXPORT_H

#include <stddef.h>

// `pebble export --ckpt FILE --format safetensors --out DIR`; argv[0] is "export".
int export_main(int argc, char **argv);

// Writes <out_dir>/model.safetensors and <out_dir>/config.json (creating out_dir) from the
// checkpoint, which is fully verified first. Returns 0; PB_EXIT_DATA with err for a bad
// checkpoint; PB_EXIT_RUNTIME with err when the output cannot be written.
int export_safetensors(const char *ckpt_path, const char *out_dir, char *err, size_t errlen);

#endif
