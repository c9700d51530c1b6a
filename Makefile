# A thin wrapper over CMake for the README's commands. Everything real lives in CMakeLists.txt
# and scripts/.
#
#   make            build (build/)
#   make demo       install what is missing, build, run the demo (a chat at http://localhost:8080)
#   make demo-cluster  the same chat on three nodes through Redis, behind nginx on :8080
#   make test       install what is missing, build, run every test suite
#   make test SANITIZE=1   the same, built with ASan+UBSan and -Werror (build-asan/)
#   make bench      benchmarks against the peers (see bench/README.md)
#   make fuzz       the libFuzzer targets, longer (FUZZ_SECONDS, default 300 each)
#   make install    install library, header and pkg-config file (PREFIX, default /usr/local)

PREFIX ?= /usr/local
FUZZ_SECONDS ?= 300
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

ifeq ($(SANITIZE),1)
BUILD := build-asan
CMAKE_FLAGS := -DSB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
CTEST_FLAGS := -LE install
else
BUILD := build
CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo
CTEST_FLAGS :=
endif

.PHONY: all setup setup-test setup-cluster configure demo demo-cluster test fuzz-quick fuzz bench install clean

all: configure
	cmake --build $(BUILD) -j$(JOBS)

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

setup-cluster:
	@scripts/setup.sh cluster

# Always configures (quick when nothing changed), so that WERROR=1 or PREFIX given on a later
# run reach an existing build tree too.
configure:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DSB_WERROR=$(if $(or $(WERROR),$(filter 1,$(SANITIZE))),ON,OFF) -DCMAKE_INSTALL_PREFIX=$(PREFIX) > /dev/null

demo: setup all
	@echo "Switchboard demo: open http://localhost:8080/ in a browser (Ctrl-C stops it)"
	./$(BUILD)/examples/demo --port 8080

# redis-server, three demo nodes and nginx in front of them, all stopped by Ctrl-C.
demo-cluster: setup-cluster all
	@scripts/demo-cluster.sh $(BUILD)

test: setup-test all fuzz-quick
	cd $(BUILD) && ctest --output-on-failure -j1 $(CTEST_FLAGS)

# libFuzzer needs clang: the fuzz targets get a build of their own.
build-fuzz/CMakeCache.txt:
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DSB_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug

fuzz-quick: setup-test build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j$(JOBS)
	cd build-fuzz && ctest --output-on-failure -L fuzz

fuzz: setup build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j$(JOBS)
	@for f in $$(find build-fuzz/tests -maxdepth 1 -type f -perm -u+x -name 'fuzz_*'); do \
	  name=$$(basename $$f); mkdir -p build-fuzz/tests/corpus-$$name; \
	  echo "== $$name ($(FUZZ_SECONDS) s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 build-fuzz/tests/corpus-$$name tests/fuzz/corpus/$$name || exit 1; \
	done

bench: all
	@scripts/setup.sh bench
	bench/run.sh $(BUILD)/examples/echo $(BUILD)/bench/loadgen

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-fuzz
