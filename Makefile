# The README's commands. Each creates .venv/ in the repo root and installs what it needs.
PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-airflow-$(AIRFLOW_VERSION)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow-home/$(AIRFLOW_VERSION)
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False

.PHONY: install test test-ui test-fast test-deployment lint demo emulator bench soak clean test-lowest test-wheel docs

# A venv built for another Airflow version is rebuilt from scratch: 2.x and 3.x ship different
# distributions into the same `airflow` package, so installing one over the other is unsafe.
$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[test,lint]' "apache-airflow==$(AIRFLOW_VERSION)"
	rm -f $(VENV)/.installed-airflow-*
	touch $(STAMP)

install: $(STAMP)

## make test: the whole suite (unit, hook vs emulator, end-to-end DAGs, system test) on AIRFLOW_VERSION.
## The browser tests (tests/ui) need Debian's Chromium; without it they are left out with one line.
CHROMIUM ?= /usr/bin/chromium
NO_CHROMIUM := SKIPPED tests/ui (browser tests): no $(CHROMIUM); install it with: apt-get update && apt-get install -y chromium
## Two pytest-xdist workers: the tests that start Airflow's services run one at a time on one of them
## (tests/conftest.py groups them), the in-process tests on the other. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)
test: $(STAMP)
	@if [ -x $(CHROMIUM) ]; then $(PY) -m pytest -q -p no:cacheprovider $(PARALLEL) tests; \
	else echo "$(NO_CHROMIUM)"; $(PY) -m pytest -q -p no:cacheprovider $(PARALLEL) tests --ignore=tests/ui; fi

## make test-ui: only the browser tests (Airflow 3.x UI in Chromium, against the emulator).
test-ui: $(STAMP)
	@if [ -x $(CHROMIUM) ]; then $(PY) -m pytest -q -p no:cacheprovider tests/ui; \
	else echo "$(NO_CHROMIUM)"; fi

## make test-deployment: CeleryExecutor + PostgreSQL + Redis, 2 workers, 2 triggerers, real kills (needs
## `apt-get install -y postgresql redis-server`; prints the figures quoted in docs/production.md).
test-deployment: $(STAMP)
	$(PY) -m pytest -q -s -p no:cacheprovider tests/deployment

lint: $(STAMP)
	$(VENV)/bin/ruff check airflow_provider_flowservice tests example_dags benchmarks scripts
	$(VENV)/bin/mypy airflow_provider_flowservice

## make demo: start the embedded emulator and run the backfill example for one interval.
demo: $(STAMP)
	$(PY) scripts/demo.py

emulator: $(STAMP)
	$(VENV)/bin/flow-service-emulator --port 8765

## make test-lowest: on the lowest versions the metadata allows, on both Airflow lines (2.11.0, our
## floor, and 3.3.2), every runtime dependency installed at its declared floor (or the line's own,
## where Airflow requires more) and checked; then a stated subset of the suite, the parts that use a
## dependency directly: the hooks (requests, aiohttp), the trigger, retries, auth, the connection,
## provider registration through Airflow's CLI (common-compat), and the example DAGs run by real
## Airflow. Not operators/, sensors/, reliability/ nor system/, to keep CI in its time budget
## (`LOWEST_TESTS=tests` runs everything).
LOWEST_LINES ?= 2.11.0 3.3.2
LOWEST_TESTS ?= tests/hooks tests/triggers tests/e2e/test_example_dags.py tests/test_retry.py \
  tests/test_auth.py tests/test_connection.py tests/test_provider_registration.py tests/test_packaging.py
test-lowest:
	set -e; for line in $(LOWEST_LINES); do \
	  venv=.venv-lowest-$$line; home=$(CURDIR)/.airflow-home/lowest-$$line; \
	  skip=$$(test "$$line" = 2.11.0 || echo "--skip apache-airflow"); \
	  rm -rf $$venv $$home; $(PYTHON) -m venv $$venv; \
	  $$venv/bin/python -m pip install --quiet --disable-pip-version-check uv; \
	  $$venv/bin/uv pip install --quiet --python $$venv/bin/python "apache-airflow==$$line"; \
	  $$venv/bin/python scripts/dependency_floors.py constraints $$skip > $$venv/floors.txt; \
	  $$venv/bin/uv pip install --quiet --python $$venv/bin/python --resolution lowest-direct \
	    -c $$venv/floors.txt -e . "apache-airflow==$$line"; \
	  $$venv/bin/uv pip freeze --python $$venv/bin/python | grep -v '^-e' > $$venv/installed.txt; \
	  $$venv/bin/uv pip install --quiet --python $$venv/bin/python -c $$venv/installed.txt \
	    pytest pytest-asyncio pytest-timeout jsonschema; \
	  echo "== Airflow $$line, lowest versions:"; \
	  $$venv/bin/python scripts/dependency_floors.py check $$skip; \
	  AIRFLOW_HOME=$$home $$venv/bin/python -m pytest -q -p no:cacheprovider $(LOWEST_TESTS); \
	done

## make test-wheel: build the sdist and the wheel, `twine check --strict` them, install the wheel
## (not -e) into a fresh venv and run the example DAG shipped in it against the emulator.
WHEEL_VENV ?= .venv-wheel
test-wheel: $(STAMP)
	rm -rf dist $(WHEEL_VENV) .demo/wheel
	$(VENV)/bin/uv build --quiet --python $(PY) --sdist --wheel --out-dir dist .
	$(VENV)/bin/twine check --strict dist/*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(WHEEL_VENV)/bin/uv pip install --quiet --python $(WHEEL_VENV)/bin/python dist/*.whl \
	  "apache-airflow==$(AIRFLOW_VERSION)"
	FLOWSERVICE_DEMO_INSTALLED=1 $(WHEEL_VENV)/bin/python scripts/demo.py

## make docs: the documentation site (MkDocs + Material + mkdocstrings) into site/, --strict.
DOCS_VENV ?= .venv-docs
DOCS_TOOLS := "mkdocs>=1.6" "mkdocs-material>=9.5" "mkdocstrings[python]>=0.26"
$(DOCS_VENV)/.installed:
	rm -rf $(DOCS_VENV)
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(DOCS_VENV)/bin/uv pip install --quiet --python $(DOCS_VENV)/bin/python $(DOCS_TOOLS)
	touch $@

docs: $(DOCS_VENV)/.installed
	$(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(DOCS_VENV) site .venv-lowest-* $(WHEEL_VENV) dist .airflow-home .pytest_cache
