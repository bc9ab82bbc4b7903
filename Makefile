# The README's two commands: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install everything on a fresh machine; nothing is downloaded at run time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-slow lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the local CPU wheel: a bare "torch" would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0" -e ".[onnx,tensorflow,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/asgnas demo --out demo-out

# Fast tests first, then the slow end-to-end ones.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q
	$(BIN)/python -m pytest -m slow -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo-out .pytest_cache
