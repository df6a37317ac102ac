// tokenizer_build.c: `tokenizer_build ENCODER_JSON VOCAB_BPE OUT`: converts GPT-2's vocabulary
// files into pebble's tokenizer file (format in data/tokenizer.h). Run by `make tokenizer`.
#include <stdio.h>
#include <string.h>

#include "data/tokenizer.h"
#include "kernels/common.h"

int main(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: tokenizer_build ENCODER_JSON VOCAB_BPE OUT\n");
        return argc == 2 ? 0 : PB_EXIT_USAGE;
    }
    char msg[512];
    if (tok_build(argv[1], argv[2], argv[3], msg, sizeof msg) != 0) pb_die(PB_EXIT_DATA, "%s", msg);
    printf("tokenizer_build: %s\n", msg);
    return 0;
}
