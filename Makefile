# kaggle_kit: `make demo` runs the main job on synthetic data, `make test` runs the tests.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
PRESET ?= tiny
# empty: run_all's default, demo_out (synthetic) or demo_out-<name>-<hash> per DATA root (never shared)
WORK ?=

.PHONY: install demo test test-slow bench lint clean

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "need $(PY) (python 3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	# torch/torchvision first and exactly pinned: pip takes them from this disk, never a multi-GB download.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python tools/run_all.py $(if $(WORK),--work $(WORK),) --preset $(PRESET) $(if $(DATA),--data-root $(DATA),)

test: install
	KAGGLE_KIT_NO_PROGRESS=1 $(BIN)/python -m pytest -q

test-slow: install
	KAGGLE_KIT_NO_PROGRESS=1 $(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check kaggle_kit tools tests benchmarks

clean:
	rm -rf $(if $(WORK),$(WORK),demo_out demo_out-*) .pytest_cache
