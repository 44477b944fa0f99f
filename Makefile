# Entry points for a fresh machine: `make demo` and `make test` (both install first; see scripts/install.sh).
.PHONY: install demo test

install:
	scripts/install.sh

demo: install
	.venv/bin/pgsieve demo

test: install
	scripts/test.sh
