# The README's commands. Each creates .venv/ in the repo root and installs what it needs.
PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-airflow-$(AIRFLOW_VERSION)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow-home/$(AIRFLOW_VERSION)
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False

.PHONY: install test test-ui test-fast test-deployment lint demo emulator bench soak clean

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
test: $(STAMP)
	@if [ -x $(CHROMIUM) ]; then $(PY) -m pytest -q -p no:cacheprovider tests; \
	else echo "$(NO_CHROMIUM)"; $(PY) -m pytest -q -p no:cacheprovider tests --ignore=tests/ui; fi

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

clean:
	rm -rf $(VENV) .airflow-home .pytest_cache
