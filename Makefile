# widecube — every set-up step lives here; a fresh machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export WIDECUBE_STORAGE ?= $(CURDIR)/widecube-data

DEMO_H5AD   := demo/pbmc.h5ad
DEMO_CELLS  ?= 50000
DEMO_GENES  ?= 20000

.PHONY: install demo demo-data test test-unit bench bench-floor bench-scale bench-serve bench-access bench-aggregate bench-readers bench-report screenshots chromium wrk vendor lint clean bench-atlas bench-embedding

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DEMO_H5AD): | $(STAMP)
	mkdir -p demo
	$(BIN)/widecube demo-data $(DEMO_H5AD) --cells $(DEMO_CELLS) --genes $(DEMO_GENES)

demo-data: $(DEMO_H5AD)

# Build the demo dataset, ingest it (a new version each run), serve the UI (/), API and docs on :8000.
demo: $(STAMP) $(DEMO_H5AD)
	$(BIN)/widecube ingest $(DEMO_H5AD) --dataset pbmc --groupby cell_type --groupby donor --groupby cell_type,donor --visibility public --classification open
	$(BIN)/widecube serve --host 127.0.0.1 --port 8000

# Debian's Chromium for the browser tests (tests/web/test_web.py drives /usr/bin/chromium; Playwright
# never downloads a browser). CI runs as root on a clean machine, so the install lives here.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# wrk (Debian's) for the serving benchmark.
wrk:
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)

# Three pytest workers (pytest-xdist), each taking whole test files so that module-scoped fixtures
# (an ingested dataset, a server) are built once per file; most tests wait on subprocesses,
# servers, a browser or the disk (a loaded run of the whole suite kept the workers' process trees
# at 0.84 cores on average), so three workers on two cores finish before two.
# Bytecode is cached even where the environment says PYTHONDONTWRITEBYTECODE (this machine's does):
# otherwise every pytest worker compiles and assert-rewrites every test module again (18.7 against
# 13.0 CPU-s to collect) and every CLI, server and Dask process it starts compiles widecube's sources
# (2.4 against 2.1 CPU-s to import the pipeline and queries).
# Tests marked `alone` assert a latency against the wall clock: they run after the others, by
# themselves, where the other workers' ingests cannot take the two cores from them.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest
test: lint chromium
	$(PYTEST) -n 3 --dist loadfile --no-loadscope-reorder --durations=25 -m "not alone"
	$(PYTEST) -m alone

# The fast unit layer alone (no ingest of a whole dataset, no browser, server process or PostgreSQL).
test-unit: $(STAMP)
	$(PYTEST) -n 2 -q -m "not slow and not browser and not subprocess and not postgres"

# Every benchmark entry point, then the report. Each run is recorded as one JSON file in
# benchmarks/results/ (refused from a working tree with uncommitted changes unless
# WIDECUBE_BENCH_FORCE=1, and then marked dirty); benchmarks/RESULTS.md and the README's numbers
# are generated from those files only.
bench: $(STAMP) wrk chromium
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/floor.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/aggregate.py $(AGGREGATE_ON)
	$(BIN)/python benchmarks/readers.py
	$(BIN)/python benchmarks/quantile_kernel.py
	$(BIN)/python benchmarks/access.py
	$(BIN)/python benchmarks/scale.py scheduler
	$(BIN)/python benchmarks/scale.py serve
	$(BIN)/python benchmarks/scale.py ingest --dataset b1m
	$(BIN)/python benchmarks/atlas.py
	$(BIN)/python benchmarks/embedding.py
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/capacity.py

# Issue 14: the ingest by `cluster` step by step beside its floors (h5py read, one numba pass) and
# scanpy, on the Poisson B100k (generated once by benchmarks/poisson.py, ~3 min) and the demo B100k
# (~15 min with both; `--quick` for an 8,000-cell smoke run).
bench-floor: $(STAMP)
	$(BIN)/python benchmarks/floor.py $(FLOOR_ARGS)

# Regenerate benchmarks/RESULTS.md and the README's numbers from benchmarks/results/*.json
# (runs nothing; tests/test_bench_report.py fails when the committed files are not current).
bench-report: $(STAMP)
	$(BIN)/python benchmarks/report.py

# Only the scale-out benchmarks (issue 12): the scheduler at the task count of a 10^7 x 50,000
# ingest (~1 min), serving from S3 after warm vs local disk (~5 min), and B1M on 2 Dask workers
# and on a local S3 server (LocalBucket) against the single process (the 16 GB upload and two
# rounds of 3 ingests of B1M, each ratio taken within a round: about 25 minutes on 2026-12-05;
# a smoke run of the same code:
# make bench-scale SCALE_DATASET=quick SCALE_ARGS=--no-record). Then the
# report and docs/capacity.md, which is derived from the recorded runs.
SCALE_DATASET ?= b1m
SCALE_ARGS ?=
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py scheduler $(SCALE_ARGS)
	$(BIN)/python benchmarks/scale.py serve $(SCALE_ARGS)
	$(BIN)/python benchmarks/scale.py ingest --dataset $(SCALE_DATASET) $(SCALE_ARGS)
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/capacity.py

# Only the serving benchmark (B100k: in-process, HTTP, wrk).
bench-serve: $(STAMP) wrk
	$(BIN)/python benchmarks/serve.py

# Only the cross-dataset gene query benchmark (issue 13: 20 genes across 100 small datasets).
bench-atlas: $(STAMP)
	$(BIN)/python benchmarks/atlas.py

# Only the embedding tab at a million points (issue 15: smooth = p95 frame time while panning and
# zooming <= 33.3 ms) in headless Chromium: first draw, pan/zoom frames, colour by a gene, and the
# WebGL painter forced as the peer (~3 min; a smoke run: EMBEDDING_ARGS="--cells 200000 --no-record").
EMBEDDING_ARGS ?=
bench-embedding: $(STAMP) chromium
	$(BIN)/python benchmarks/embedding.py $(EMBEDDING_ARGS)

# Only the access benchmark (issue 11: what authorization costs the dot-plot query, in-process,
# over HTTP and under wrk) on the demo dataset (made and ingested as `make demo` does); add the
# same in-process figures on a PostgreSQL catalog with ACCESS_ARGS=--postgres[=URL].
ACCESS_ARGS ?=
bench-access: $(STAMP) wrk $(DEMO_H5AD)
	$(BIN)/python benchmarks/access.py --input $(DEMO_H5AD) $(ACCESS_ARGS)

# On-the-fly aggregate (10 genes over a filter keeping half the cells) vs anndata/zarr + numpy.
# Default: ingest the small `quick` dataset (a smoke run, not recorded). On an ingested store,
# recorded in benchmarks/results/: make bench-aggregate AGG_STORAGE=<storage> AGG_DATASET=b1m
AGG_STORAGE ?=
AGG_DATASET ?=
AGGREGATE_ON = $(if $(AGG_STORAGE),--storage $(AGG_STORAGE) --dataset $(AGG_DATASET))
bench-aggregate: $(STAMP)
	$(BIN)/python benchmarks/aggregate.py $(AGGREGATE_ON)

# Only the readers (wide CSV vs pandas; 10x h5 and MTX vs h5ad).
bench-readers: $(STAMP)
	$(BIN)/python benchmarks/readers.py

# A PNG of each UI view (dot plot, heatmap, embedding) into docs/, from a demo dataset.
screenshots: $(STAMP) chromium
	WIDECUBE_SCREENSHOTS=$(CURDIR)/docs $(BIN)/python -m pytest tests/web/test_web.py -k screenshots -q -p no:cacheprovider

# Refresh the vendored Apache Arrow JS reader (committed; the UI needs no network at run time).
ARROW_JS := 21.2.0
vendor:
	rm -rf build/arrow-js && mkdir -p build/arrow-js
	cd build/arrow-js && npm pack --silent apache-arrow@$(ARROW_JS) && tar xzf apache-arrow-$(ARROW_JS).tgz
	cp build/arrow-js/package/Arrow.es2015.min.js src/widecube/web/static/vendor/apache-arrow.min.js
	cp build/arrow-js/package/LICENSE.txt src/widecube/web/static/vendor/apache-arrow.LICENSE.txt
	cp build/arrow-js/package/NOTICE.txt src/widecube/web/static/vendor/apache-arrow.NOTICE.txt
	rm -rf build/arrow-js

# One formatting regime: ruff format (no `fmt: skip` markers); `make test` runs this first.
lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m ruff format --check src tests benchmarks
	$(BIN)/python -m mypy src
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) demo widecube-data benchmarks/out build
