# Rewind: `make run` serves the console, `make test` runs the whole suite.
# Both set up what they need on a fresh machine (system packages too, when root).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
# Python caches compiled modules in __pycache__ (ignored by git). A machine that turns that off makes every
# process Rewind or the suite starts compile Rewind's modules again: 0.4 s of CPU each, hundreds of times a suite.
unexport PYTHONDONTWRITEBYTECODE

# Debian packages each target needs, as "command:package" pairs.
RUN_SYSTEM := git:git gpg:gnupg
# The demo sandbox runs on PostgreSQL when it can: installed as root, else the demo uses SQLite files.
RUN_OPTIONAL := initdb:postgresql
# ip, unshare: the stop tests stand a second network namespace up as "another host".
TEST_SYSTEM := $(RUN_SYSTEM) initdb:postgresql chromium:chromium ip:iproute2 unshare:util-linux

.PHONY: run test lint format system-run system-test clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: requirements.txt $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

# Install missing Debian packages; initdb is looked for where Debian puts it, off PATH.
# A second argument "optional": missing packages are only reported when not root.
define install_system
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1; then \
	    missing="$$missing $$pkg"; fi; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif [ "$(2)" = optional ]; then echo "not installed:$$missing (as root: apt-get install$$missing); the demo uses SQLite"; \
	  else echo "missing system packages:$$missing (install them as root: apt-get install$$missing)"; exit 1; fi; \
	fi
endef

system-run:
	$(call install_system,$(RUN_SYSTEM))
	$(call install_system,$(RUN_OPTIONAL),optional)

system-test:
	$(call install_system,$(TEST_SYSTEM))

# The port is checked first: a second `make run`, or another program on it, is said before anything starts.
# Stopping it (Ctrl-C) stops the demo sandbox it started too (gunicorn.conf.py's on_exit).
run: system-run $(VENV)/.run-installed
	@$(BIN)/python -m app.bindcheck
	$(BIN)/flask db upgrade
	$(BIN)/flask rewind init-admin
	$(BIN)/flask rewind demo --skip-if-configured
	REWIND_DEMO_STOP_ON_EXIT=1 $(BIN)/gunicorn -c gunicorn.conf.py

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Test files are shared among TEST_WORKERS processes (pytest-xdist); a file's tests stay together,
# so its module-scoped fixtures (a built demo, a server) are set up once. TEST_WORKERS=0: one process.
# Three on two cores: much of the suite waits (servers starting, browsers, PostgreSQL), and a third
# process fills those waits (the same suite: 5 min 47 s against 6 min 43 s with two, within the hour).
# A fourth gains nothing: with three the cores are busy to the end (vmstat: 2 % idle); four took 563 s
# against 516-560 s with three, on 2026-11-27.
TEST_WORKERS ?= 3

test: system-test $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache
