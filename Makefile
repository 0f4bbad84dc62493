# Workspace root. Quick start:  make demo   |   make test-all
# Each project has its own .venv and Makefile (setup, test, test-gpu, smoke, table); these targets loop over them.
PROJECTS := high_to_low superrelora llm_trm hier_bd3lm llm_streamline
PYTHON ?= python3
SHARED_PY := shared_utils/.venv/bin/python

.PHONY: help setup demo test-all test-root test-bad-inputs test-gpu gpu-check bench table lint clean $(PROJECTS)

# Create every environment (shared_utils' own, then one per project). Idempotent: seconds when nothing changed.
setup:
	$(MAKE) -C shared_utils setup
	@for p in $(PROJECTS); do $(MAKE) -C $$p setup || exit 1; done

# Every project's end-to-end `smoke` pipeline on embedded defaults (CPU, offline), then one combined table.
demo:
	$(PYTHON) tools/workspace.py demo

# shared_utils tests, workspace conformance tests, then each project's default tier in its own env.
# Keeps going after a failure; one summary line per project and a final "N passed, N failed".
test-all:
	$(PYTHON) tools/workspace.py test-all

# Workspace conformance tests (stdlib + pytest), run in shared_utils' env. The bad-input corpus needs the project
# envs, so it is its own target (and its own step of test-all, after the projects).
test-root:
	$(MAKE) -C shared_utils setup
	$(SHARED_PY) -m pytest tests -q -m "not gpu and not slow" --ignore=tests/test_bad_inputs.py

# Bad-input corpus: every case of tests/bad_inputs/cases_<project>.py must exit non-zero with one clear line.
test-bad-inputs:
	$(MAKE) -C shared_utils setup
	$(SHARED_PY) -m pytest tests/test_bad_inputs.py -q

test-gpu:
	@for p in $(PROJECTS); do $(MAKE) -C $$p test-gpu; done

# On a CUDA machine (<= 5 min on one H200): every project's gpu tier, one bf16 train step + eval with MFU per
# project (its gpu_check.py), hier_bd3lm plans (vLLM or HF), accelerate / DeepSpeed launches -> results/gpu_check.*
# Without CUDA: one line, exit 2. GPU_CHECK_ARGS="--dry-run" runs the plan on CPU (tiny models).
gpu-check:
	@$(PYTHON) tools/gpu_check.py $(GPU_CHECK_ARGS)

# One performance table: matmul peaks, then every project's `make bench` (each <= 4 min), merged into
# results/bench.json + .md and BENCHMARKS.md (<= 20 min on 2 cores). BENCH_ARGS="--merge-only" re-merges only.
bench:
	$(MAKE) -C shared_utils setup
	$(SHARED_PY) tools/bench.py $(BENCH_ARGS)

table:
	@for p in $(PROJECTS); do $(MAKE) -C $$p table || exit 1; done

lint:
	$(MAKE) -C shared_utils setup
	$(SHARED_PY) -m pip install -q "ruff>=0.5" 2>/dev/null | grep -v "is ignored" || true
	$(SHARED_PY) -m ruff check .

help:
	@echo "make demo             every project's smoke pipeline (CPU, offline), one table"
	@echo "make test-all         every default test tier + the bad-input corpus; N passed, N failed (what CI runs)"
	@echo "make setup            all environments (idempotent)"
	@echo "make test-root        workspace conformance and tools tests"
	@echo "make test-bad-inputs  the bad-input corpus (tests/bad_inputs/cases_<project>.py)"
	@echo "make test-gpu         every project's gpu test tier"
	@echo "make gpu-check        on CUDA: gpu tiers, bf16 train step + eval + MFU per project, launches -> results/gpu_check.*"
	@echo "make bench            matmul peaks + every project's benchmark -> results/bench.*, BENCHMARKS.md"
	@echo "make table            every project's results table (long)"
	@echo "make lint             ruff over the workspace"

clean:
	rm -rf .reports
	@for p in shared_utils $(PROJECTS); do $(MAKE) -C $$p clean; done
