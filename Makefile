# Shortcuts for the two README commands (which work without make: python3 scripts/dev.py run|test).
PYTHON ?= python3

.PHONY: run test lint bench

run:
	$(PYTHON) scripts/dev.py run

test:
	$(PYTHON) scripts/dev.py test

lint:
	$(PYTHON) scripts/dev.py venv
	.venv/bin/ruff check provenance tests bench

bench:
	$(PYTHON) scripts/dev.py venv
	for script in bench/*.py; do .venv/bin/python "$$script" || exit 1; done
