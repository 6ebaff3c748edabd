## Ketch developer targets. `make help` lists them.
PY ?= .venv/bin/python

.PHONY: help lock proto check lint test test-unit test-int test-e2e bench

help: ## this list
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

lock: ## re-resolve requirements.lock to the newest allowed releases (then ./scripts/setup.sh)
	./scripts/lock.sh

proto: ## regenerate ketch/v1 from proto/ketch/v1
	$(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/ketch/v1/*.proto
	$(PY) scripts/proto_comments.py
	$(PY) scripts/kinds_index.py

lint: ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m mypy

check: lint ## lint and the stub-freshness tests
	$(PY) -m pytest -q tests/unit/test_generated_stubs.py tests/unit/cli/test_explain_schema.py

test: ## every test tier
	$(PY) -m pytest -q

test-unit: ## fast pure tests
	$(PY) -m pytest -q tests/unit

test-int: ## real API server on loopback
	$(PY) -m pytest -q tests/integration

test-e2e: ## real control plane and agents as processes
	$(PY) -m pytest -q tests/e2e

bench: ## benchmarks (print ratios against in-run baselines)
	$(PY) bench/api.py
