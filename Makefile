# One virtual environment in the checkout; every target sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install; this machine's pip takes these wheels from local disk.
TORCH ?= torch==2.14.1 torchvision==0.29.1
INSTALLED := $(VENV)/.installed
STUBS := src/recognizer/v1/recognizer_pb2.py src/recognizer/v2/inference/grpc_service_pb2.py
PROTOS := $(shell find proto -name '*.proto')
# The contract as released: buf breaking checks proto/ against it (proto/breaking/README.md).
RELEASED := proto/breaking/recognizer-v1.binpb

.PHONY: install proto serve test lint ci format clean screenshots image-test

PERF_ANALYZER := $(BIN)/perf_analyzer

install: $(INSTALLED) $(STUBS) $(PERF_ANALYZER)

# tritonclient pins protobuf<7, older than the runtime our generated stubs need; what else
# it needs is in the dev extra, so it is installed without its pins.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps 'tritonclient[grpc]==2.73.0'
	touch $@

# perf_analyzer from PyPI's wheel, runnable on Debian 12 (the script says how).
$(PERF_ANALYZER): benchmarks/install_perf_analyzer.sh | $(INSTALLED)
	bash benchmarks/install_perf_analyzer.sh $(VENV)

# Stubs are generated from proto/ (also by every package build), never edited by hand.
proto $(STUBS): $(PROTOS) hatch_build.py | $(INSTALLED)
	$(BIN)/python hatch_build.py

serve: install
	$(BIN)/recognizer serve $(ARGS)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests clients benchmarks deploy hatch_build.py
	$(BIN)/ruff format --check src tests clients benchmarks deploy hatch_build.py
	$(BIN)/mypy
	$(BIN)/mypy benchmarks
	$(BIN)/python hatch_build.py --image $(VENV)/proto.binpb
	$(BIN)/buf lint $(VENV)/proto.binpb --path recognizer/v1/recognizer.proto
	$(BIN)/buf breaking $(VENV)/proto.binpb --against $(RELEASED) --path recognizer

# What CI runs (.ci/run): the lint, then the tests. The page's tests need Debian's chromium,
# which pip cannot install: .ci/run installs it first (apt-get install chromium).
ci: lint test

# The screenshots of the page that docs/http.md shows (docs/screenshots/): serves the default model and
# drives Debian's chromium; Chinese labels need a CJK font (apt-get install fonts-noto-cjk).
screenshots: install
	$(BIN)/python tests/screenshots.py docs/screenshots

# The container image, built and run for real with podman (minutes; not part of `make ci`).
# Needs podman, runc and mmdebstrap (apt-get install podman runc mmdebstrap). The CPU
# target's torch comes from PyTorch's CPU index where it can be reached; where it cannot
# (this project's machines) the test builds with PyPI's torch, which runs on the CPU too:
#   make image-test IMAGE_TORCH="torch==2.14.1+cpu torchvision==0.29.1+cpu" \
#     IMAGE_TORCH_INDEX=https://download.pytorch.org/whl/cpu
IMAGE_TORCH ?= torch==2.14.1 torchvision==0.29.1
IMAGE_TORCH_INDEX ?=
image-test: install
	$(BIN)/pytest tests/deploy/test_image.py --image -rA \
		--image-build-arg "TORCH_PACKAGES=$(IMAGE_TORCH)" \
		--image-build-arg "TORCH_INDEX_URL=$(IMAGE_TORCH_INDEX)"

format: install
	$(BIN)/ruff check --fix src tests clients benchmarks deploy hatch_build.py
	$(BIN)/ruff format src tests clients benchmarks deploy hatch_build.py

clean:
	rm -rf $(VENV) src/recognizer/v1/*_pb2*.py* src/recognizer/v2/inference/*_pb2*.py* .pytest_cache .mypy_cache .ruff_cache
