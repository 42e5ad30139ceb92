# widecube — every set-up step lives here; a fresh machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export WIDECUBE_STORAGE ?= $(CURDIR)/widecube-data

DEMO_H5AD   := demo/pbmc.h5ad
DEMO_CELLS  ?= 50000
DEMO_GENES  ?= 20000

.PHONY: install demo demo-data test bench lint clean

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

# Build the demo dataset, ingest it (a new version each run), serve API + docs on :8000.
demo: $(STAMP) $(DEMO_H5AD)
	$(BIN)/widecube ingest $(DEMO_H5AD) --dataset pbmc --groupby cell_type --groupby donor --groupby cell_type,donor
	$(BIN)/widecube serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo widecube-data benchmarks/out
