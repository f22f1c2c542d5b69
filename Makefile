# Two commands do everything, each with its own set-up:
#   make lab    create .venv, install the package (editable) with its pinned dependencies, open JupyterLab
#   make test   the same set-up, then pytest for the package, the package built into a wheel and used from a
#               fresh environment outside the repository (tests/wheel), nbval over every notebook (quick
#               mode), and every lesson run and its widgets moved in JupyterLab in a real browser (tests/browser)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
LAB_FLAGS ?=
# JupyterLab refuses to run as root unless told; containers and CI often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
PYTEST_FLAGS ?=

.PHONY: lab test test-package test-wheel test-notebooks test-browser check-python-versions lint lock clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e ".[lessons,dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(ROOT_FLAG) $(LAB_FLAGS)

test: test-package test-wheel test-notebooks test-browser

test-package: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) --ignore=tests/browser tests

# Builds the wheel (from an sdist), installs it without -e and offline into a fresh virtual environment that
# reuses .venv's pinned packages but not its editable install, and uses it from a folder outside the repository.
test-wheel: $(STAMP)
	$(BIN)/python tests/wheel/run_wheel_test.py

test-notebooks: $(STAMP)
	METALEARN_LITE_QUICK=1 $(BIN)/python -m pytest $(PYTEST_FLAGS) --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

# Starts `make lab` itself (quick mode) and drives Debian's chromium with Playwright (installed with apt-get
# when missing and run as root; else a skip, or a failure when CI is set). Screenshots and response times go
# to tests/browser/screenshots/; METALEARN_LITE_README_SCREENSHOTS=1 also writes docs/screenshots/.
test-browser: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) -p no:cacheprovider tests/browser

# Asks pip (dry run, package index) whether every pin resolves on each Python that requires-python declares.
check-python-versions: $(STAMP)
	$(BIN)/python requirements/check_python_versions.py

lint: $(STAMP)
	$(BIN)/ruff check .

lock:
	rm -rf /tmp/metalearn-lock && $(PYTHON) -m venv /tmp/metalearn-lock
	/tmp/metalearn-lock/bin/python -m pip install -q "torch==2.13.0" -e ".[lessons,dev]"
	( echo "# Tested versions, pinned. Both README commands (make lab, make test) install with -c this file."; \
	  echo "# Regenerate after an upgrade: make lock"; \
	  /tmp/metalearn-lock/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/+cpu//' ) \
	  > $(CONSTRAINTS)

clean:
	rm -rf $(VENV)
