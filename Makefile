# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build on disk here; on a GPU box use e.g. TORCH_SPEC="torch>=2.4,<2.14" with the CUDA index.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= runs/demo
DEMO_ARGS ?= --quick
PYTEST_ARGS ?=

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/crossadapt demo --out $(DEMO_OUT) $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py --quick
	$(PY) benchmarks/projection.py --quick
	$(PY) benchmarks/online.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
