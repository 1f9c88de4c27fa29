# The two commands of the README's quick start, plus helpers. Each sets up .venv first
# (created if missing, reinstalled when pyproject.toml changes).
#
#   make run     # set up, then run the whole study on the default preset (CPU)
#   make test    # set up, then run the test suite (make test-fast: the unit tests only)
#
# Variables: PYTHON (interpreter for the venv, default python3), ARGS (extra snakemake
# arguments, e.g. ARGS="--configfile workflow/presets/smoke.yaml"), PYTEST_ARGS.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# the results folder `make docs` reads (a kept benchmark run: make docs RESULTS=/tmp/bench/default/results)
RESULTS ?= results
PYTEST_ARGS ?=

.PHONY: setup run smoke test test-fast bench report docs clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

setup: $(STAMP)

# First the configuration of the command line is checked in one line (dlrepro.config),
# including what Snakemake itself reports as a traceback before the Snakefile runs: a
# --configfile that is missing, not YAML or not a mapping; a malformed --config entry.
CHECK = $(PY) -m dlrepro check-config
# ... which also names each file a data set still lacks: the Snakefile then does not repeat it
CHECKED = DLREPRO_CONFIG_CHECKED=1

# LOGGER: Snakemake's console; `rich` (snakemake-logger-plugin-rich) shows a progress display
# instead of a block per job; LOGGER= gives Snakemake's own lines.
LOGGER ?= rich
LOG_ARGS = $(if $(LOGGER),--logger $(LOGGER))

run: $(STAMP)
	@$(CHECK) $(ARGS)
	$(CHECKED) $(VENV)/bin/snakemake --profile profiles/cpu $(LOG_ARGS) $(ARGS)

smoke: $(STAMP)
	@$(CHECK) --configfile workflow/presets/smoke.yaml $(ARGS)
	$(CHECKED) $(VENV)/bin/snakemake --profile profiles/cpu $(LOG_ARGS) --configfile workflow/presets/smoke.yaml $(ARGS)

# Speed and memory benchmarks (README "Performance"); ARGS names some of them, e.g.
# ARGS="sampling mfu" or ARGS=--quick. The benchmark-only packages (transformers, for the
# sampler comparison) go to their own prefix, $(BENCH_PREFIX), which only the benchmarks
# put on sys.path: installed into the venv, torchmetrics (imported by Lightning) would
# import transformers in every training job, seconds of start-up each. The tests need it
# too (the sampler is checked token for token against Hugging Face generate), and so do the
# tracker tests (compute.logger: TensorBoard, MLflow's file store, W&B offline), whose
# packages are the `trackers` extra for users and live in the same prefix for the tests, and
# the muP cross-check (microsoft/mup, without its unused torchvision dependency).
BENCH_PREFIX := $(VENV)/bench
BENCH_STAMP := $(BENCH_PREFIX)/.installed-stamp
$(BENCH_STAMP): $(STAMP) Makefile
	$(PY) -m pip install --quiet --prefix $(BENCH_PREFIX) 'transformers>=5' \
	    'tensorboard>=2.14' 'mlflow-skinny>=2.8' 'wandb>=0.17'
	$(PY) -m pip install --quiet --prefix $(BENCH_PREFIX) --no-deps 'mup==1.0.0'
	@touch $@

# The suite on TEST_WORKERS processes (pytest-xdist, --dist loadfile: a file's tests run on
# one worker, one after another, in the order tests/conftest.py gives the files; the smoke
# run is built once and shared). TEST_WORKERS=0 runs it in one process. `make test-fast`:
# the unit tests only (not marked slow or slurm: no workflow runs), the loop while editing.
# docs/developing.md, "Test tiers and timings". (Not --dist loadgroup: with pytest 9.2 its
# xdist_group marks are silently ignored, pytest-dev/pytest-xdist#1386.)
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP) $(BENCH_STAMP)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP) $(BENCH_STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow and not slurm" $(PYTEST_ARGS)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks $(ARGS)

clean:
	rm -rf results/data results/logs results/.checkpoints .snakemake

# Regenerate every number, table, figure and command output of README.md and docs/ from a
# run (after `make run`; RESULTS=<folder> reads another run's results/, SMOKE_RESULTS=<folder>
# a smoke run's for its time): the figures, the workflow's rule graph, and every block
# between `<!-- begin:NAME -->` and `<!-- end:NAME -->` (python -m dlrepro report docs), and the
# coverage table of docs/claims.md (python -m dlrepro report coverage: a few minutes of simulation).
# (PYTHONHASHSEED=0: Snakemake lists the rule graph's edges in set order, which a random hash seed reshuffles)
SMOKE_RESULTS ?=
docs: $(STAMP)
	mkdir -p docs/figures
	cp $(RESULTS)/figures/*.png docs/figures/
	{ echo '# Rule graph of the default preset'; echo; echo '```mermaid'; \
	  PYTHONHASHSEED=0 $(VENV)/bin/snakemake --rulegraph mermaid-js 2>/dev/null; echo '```'; } > docs/rulegraph.md
	$(PY) -m dlrepro report docs --results $(RESULTS) $(if $(SMOKE_RESULTS),--smoke-results $(SMOKE_RESULTS))
	$(PY) -m dlrepro report coverage --write docs/claims.md

# Snakemake's self-contained HTML report of every figure (after a run).
# (it first checks that results/ was made under the configuration of ARGS: results/run.yaml;
# if not, one line names the ARGS to pass, and nothing is rendered)
report: $(STAMP)
	@$(CHECK) $(ARGS)
	@$(PY) -m dlrepro report check-run $(ARGS)
	$(VENV)/bin/snakemake --profile profiles/cpu $(ARGS) --report results/report.html
