# The README's two commands: `make demo` and `make test`. Each builds .venv on first use.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev,ml]'
	touch $(STAMP)

demo: $(STAMP)
	@bash scripts/docker-up.sh || echo "note: no Docker Engine; the demo skips its sandboxed ML jobs" >&2
	$(VENV)/bin/warden demo

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check platform tests migrations
	$(VENV)/bin/ruff format --check platform tests migrations
	$(VENV)/bin/mypy

bench: $(STAMP)
	bash scripts/bench.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .warden-demo bench-results
