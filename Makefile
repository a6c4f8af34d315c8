# Thin wrapper over CMake. `make` builds (release) into build/.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
WORKERS ?= 2

.PHONY: all build test bench run install clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Every test, through ctest.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Every benchmark workload (BENCHMARKS.md format), WORKERS workers (default 2),
# then the micro benchmarks (Google Benchmark; built when libbenchmark-dev is
# installed), 5 repetitions each, their median, mean and spread.
bench: build
	$(BUILD)/bench/weft-bench --workers $(WORKERS)
	@if [ -x $(BUILD)/bench/weft-micro ]; then \
	    $(BUILD)/bench/weft-micro --benchmark_repetitions=5 --benchmark_report_aggregates_only=true; \
	else echo "weft-micro not built (apt-get install libbenchmark-dev, then make)"; fi

# weft's main demo.
run: build
	$(BUILD)/examples/demo

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf $(BUILD)
