# Two entry points (see README): `make demo` and `make test`.
# Both create .venv if missing and install segzoo with the pinned versions of constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.segzoo-installed
DEMO_CONFIG := configs/fcn/fcn8s_vgg16-bn_shapes-64x64.yaml
DEMO_DIR := work_dirs/demo/$(shell date +%Y%m%d-%H%M%S)

.PHONY: install demo test lint clean gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: install
	$(BIN)/segzoo train $(DEMO_CONFIG) --work-dir $(DEMO_DIR)

# the suite in 2 worker processes (pytest-xdist; 1 torch thread each): ~1.6x faster on 2 cores,
# whose time goes mostly to single-threaded Python and subprocess start-up
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# CUDA tests + GPU benchmarks in one command (docs/benchmarks.md, "Running the GPU check"); needs
# no venv: it runs the machine's python3 with this checkout on PYTHONPATH (and .whl/ wheels if any)
gpu-check:
	bash benchmarks/gpu_check.sh

lint: install
	$(BIN)/python -m pip install -q ruff && $(BIN)/ruff check segzoo tests benchmarks

clean:
	rm -rf work_dirs build *.egg-info .pytest_cache
