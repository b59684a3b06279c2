# Tongban: the two commands are `make run` and `make test`; the other targets are the CI steps.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PACKAGES := -e services/kit -e services/org -e services/user -e services/auth -e services/message -e gateway
SRC    := services/kit/src services/org/src services/user/src services/auth/src services/message/src gateway/src
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-quick browser venv lint format typecheck pytest contracts contracts-check bench clean constraints

run: venv ## start NATS, every service and the gateway with demo data; Ctrl-C stops
	$(BIN)/tongban-dev

test: venv lint typecheck pytest ## lint, type check, unit + integration + contract tests

test-quick: venv ## the inner loop: lint and the unit tier (no servers, seconds)
	$(BIN)/ruff check services gateway tests bench
	$(BIN)/python -m pytest -q -m unit $(PYTEST_ARGS) || test $$? -eq 5

$(STAMP): constraints.txt requirements-dev.txt services/kit/pyproject.toml services/org/pyproject.toml services/user/pyproject.toml services/auth/pyproject.toml services/message/pyproject.toml gateway/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "pip==$$(sed -n 's/^pip==//p' constraints.txt)"
	$(BIN)/python -m pip install -q -r requirements-dev.txt $(PACKAGES)
	@touch $(STAMP)

venv: $(STAMP)

# the browser tests drive Debian's chromium headless; CI installs it when missing (root, or sudo without a password)
browser:
	@command -v chromium >/dev/null 2>&1 || test -x "$${TONGBAN_CHROMIUM:-/usr/bin/chromium}" || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null; \
	  else sudo -n apt-get install -y -q chromium >/dev/null; fi; }

lint: venv
	$(BIN)/ruff check services gateway tests bench
	$(BIN)/ruff format --check services gateway tests bench

format: venv
	$(BIN)/ruff format services gateway tests bench
	$(BIN)/ruff check --fix services gateway tests bench

typecheck: venv
	$(BIN)/mypy $(SRC)

# exit code 5 means "no tests collected"; anything else non-zero fails. Test files are spread over
# PYTEST_WORKERS processes (pytest-xdist; each file stays in one, so its module fixtures start once)
PYTEST_WORKERS ?= 2
pytest: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || test $$? -eq 5

contracts: venv ## regenerate contracts/ from the code
	$(BIN)/python -m tongban_kit.contracts write

contracts-check: venv
	$(BIN)/python -m tongban_kit.contracts check

bench: venv ## run the benchmarks (needs PostgreSQL, NATS, wrk; see bench/README.md)
	$(BIN)/python bench/jwt_bench.py
	$(BIN)/python bench/org_bench.py
	$(BIN)/python bench/user_bench.py
	$(BIN)/python bench/auth_bench.py
	$(BIN)/python bench/gateway_bench.py

constraints: venv ## re-pin every installed package
	{ echo "# Pinned versions of every dependency (name==version only). Regenerate with: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' | grep -v '^#' ; \
	  echo "pip==$$($(BIN)/python -m pip --version | cut -d' ' -f2)"; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
