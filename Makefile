# pebble: one program, build/pebble, plus the Criterion test suites.
#   make run        train the default job (configs/gpt2-tiny.ini) on the CPU
#   make test       build and run every CPU test suite
#   make bench-cpu  forward+backward throughput on the CPU
# Every target first checks the Debian packages it needs (.ci/deps.sh).

CC      ?= gcc
OPT     ?= -O3 -march=native
CFLAGS  += -std=c11 $(OPT) -g -fopenmp -Wall -Wextra -Wno-unused-parameter -I. -D_GNU_SOURCE \
           $(shell pkg-config --cflags inih libpcre2-8 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs inih libpcre2-8 2>/dev/null) -lm
LDFLAGS += -fopenmp

BUILD   := build
# Everything but main.c goes into libpebble.a, which the tests link too.
LIB_SRC := $(wildcard kernels/*.c kernels/cpu/*.c kernels/attention/*.c model/*.c data/*.c train/*.c)
LIB_SRC := $(filter-out train/main.c,$(LIB_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test bench-cpu fixtures clean
all: deps $(BUILD)/pebble

deps:
	@sh .ci/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libpebble.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pebble: $(BUILD)/train/main.o $(BUILD)/libpebble.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libpebble.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libpebble.a $(LDFLAGS) -lcriterion $(LDLIBS)

# The default job: a small GPT-2 on the fortunes corpus, on the CPU, in a few minutes.
run: all data
	$(BUILD)/pebble train -c configs/gpt2-tiny.ini

# Each suite is its own binary; tests that run build/pebble find it built.
test: deps $(BUILD)/pebble $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t --jobs 2; done

bench-cpu: all
	$(BUILD)/pebble bench --config configs/gpt2-tiny.ini --config configs/gpt2-124m-cpu-bench.ini

# Regenerates tests/fixtures/gpt2_tiny.bin with PyTorch (Debian's python3-torch); the
# fixture is committed, so the tests never need PyTorch.
fixtures:
	python3 tests/fixtures/gen_gpt2_fixture.py tests/fixtures/gpt2_tiny.bin

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(BUILD)/train/main.d
