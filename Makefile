# kaggle_kit: `make demo` runs the main job on synthetic data, `make test` runs the tests.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
PRESET ?= tiny
# empty: run_all's default, demo_out (synthetic) or demo_out-<name>-<hash> per DATA root (never shared)
WORK ?=
# optional: OUT=path/submission.csv (a copy of the final submission), METRIC=default|mlebench (what the tuner
# optimises; run_all picks mlebench by itself on an MLE-bench folder)
OUT ?=
METRIC ?=
# optional: SEED=N, the synthetic data's seed (another seed: another data set, its own work folder)
SEED ?=
# the whole job's wall time (kk run --budget): members timed on this machine, every fold's length planned to
# fit; BUDGET= (empty) trains the configs' hand-set epochs instead
BUDGET ?= 15m

.PHONY: install lock demo test test-fast test-slow bench lint clean

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "need $(PY) (python 3.11 or 3.12)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# constraints.txt holds the exact tested set (pyproject.toml only ranges), so this install is reproducible.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	# torch/torchvision first, at constraints.txt's exact versions: pip takes them from this disk, never a
	# multi-GB download.
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	# the metric kernels compiled into numba's on-disk cache now (~10 s), not in the first kk score
	$(BIN)/python -m kaggle_kit score --warmup
	touch $@

install: $(VENV)/.installed

# After a deliberate upgrade inside the venv: write its exact set back to constraints.txt.
lock: install
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(kaggle_kit|pip|setuptools)=='; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

demo: install
	$(BIN)/python tools/run_all.py $(if $(WORK),--work $(WORK),) --preset $(PRESET) $(if $(DATA),--data-root $(DATA),) \
		$(if $(OUT),--out $(OUT),) $(if $(METRIC),--metric $(METRIC),) $(if $(SEED),--seed $(SEED),) $(if $(BUDGET),--budget $(BUDGET),)

test: install
	KAGGLE_KIT_NO_PROGRESS=1 $(BIN)/python -m pytest -q

# what needs no training (the post-processing, the metric, data, formats, the tuner on fake maps): ~1 min
FAST_TESTS := tests/test_architecture.py tests/test_config.py tests/data tests/io tests/metric tests/post tests/tune
test-fast: install
	KAGGLE_KIT_NO_PROGRESS=1 $(BIN)/python -m pytest -q $(FAST_TESTS)

test-slow: install
	KAGGLE_KIT_NO_PROGRESS=1 $(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check kaggle_kit tools tests benchmarks

clean:
	rm -rf $(if $(WORK),$(WORK),demo_out demo_out-*) .pytest_cache
