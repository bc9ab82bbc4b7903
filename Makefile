# The README's two commands: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install everything on a fresh machine; nothing is downloaded at run time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-slow lint clean bench bench-ours fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch and torchvision are pinned to the builds this machine keeps on disk (timm, in the test extra,
# needs torchvision, and PyPI's torchvision does not import beside the 2.13 CPU wheel); an unpinned
# "torch" would download a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" -e ".[onnx,tensorflow,test,ray]"
	# the CUDA build brings triton, whose native library crashes when imported after TensorFlow in one
	# process (torch._dynamo imports it); nothing on a CPU machine uses it (inductor's CPU code is C++)
	$(BIN)/pip uninstall --quiet --yes triton
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/asgnas demo --out demo-out

# Fast tests first, then the slow end-to-end ones.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not nightly" -q
	$(BIN)/python -m pytest -m "slow and not nightly" -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not nightly" -q

# Property fuzzing of the whole loop on >= 1000 random architectures per strategy (tests/property).
fuzz: $(STAMP)
	$(BIN)/python -m pytest -m nightly tests/property -q

# Benchmarks (issue 6): the peers (only-train-once 3.0.1, Torch-Pruning) and torchvision go into a
# separate venv so they never touch the project's own environment. Each script writes its section
# of BENCHMARKS.md; they run one after the other because timings must not share the two cores.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_SCRIPTS := analysis_vs_peers scaling optimizer_overhead quality_digits codegen_latency search_ag_vs_random search_gold_vs_h2spg h2spg_defaults

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" "only-train-once==3.0.1" "torch-pruning>=1.6" -e ".[onnx]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	for script in $(BENCH_SCRIPTS); do $(BENCH_VENV)/bin/python benchmarks/$$script.py || exit 1; done
	$(BENCH_VENV)/bin/python benchmarks/compile_speed.py --torchvision --repeats 3

# Our own figures only, in the project's venv (no peers, no torchvision: replicas only).
bench-ours: $(STAMP)
	for script in $(BENCH_SCRIPTS) compile_speed; do $(BIN)/python benchmarks/$$script.py || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(BENCH_VENV) demo-out .pytest_cache
