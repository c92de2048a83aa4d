# make demo  - execute notebooks/quickstart.ipynb on the embedded default and show its results
# make test  - run the whole test suite; it includes a smoke test on Python 3.10
#              (tests/test_python310.py, its own venv .venv-3.10, rebuilt only when
#              pyproject.toml changes), found as PYTHON310=..., else a python3.10
#              that really runs, else pyenv's versions/3.10*; skipped, saying why, without one
# make bench - run every benchmark in bench/ and write bench/RESULTS.md
# make mutate - mutation testing of the pure modules (MODULES="limits retry" for some)
#
# The project's environment is .venv with Python 3.12 (supported kernels are
# 3.10 and 3.12, the FC runtimes Lithops >= 3.8 runs on: the client's Python
# must match the runtime's). Found as: PYTHON=..., else a python3.12 that
# really runs, else pyenv's versions/3.12*.

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean venv browser mutate

venv: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; \
	py="$(PYTHON)"; \
	if [ -z "$$py" ] && python3.12 --version >/dev/null 2>&1; then py=python3.12; fi; \
	if [ -z "$$py" ]; then \
	  root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
	  for c in $$root/versions/3.12*/bin/python3.12; do [ -x "$$c" ] && py="$$c"; done; \
	fi; \
	if [ -z "$$py" ] || ! "$$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then \
	  echo "error: no working Python 3.12 found. Install one (e.g. 'pyenv install 3.12') or run 'make PYTHON=/path/to/python3.12 ...'." >&2; \
	  exit 1; \
	fi; \
	if [ ! -x "$(PY)" ]; then echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); fi; \
	echo "installing fc_magic and its test tools into $(VENV) (pip's log: $(VENV)/install.log)"; \
	if ! { $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[test]'; } \
	     > $(VENV)/install.log 2>&1; then \
	  tail -n 25 $(VENV)/install.log >&2; \
	  echo "error: pip could not install fc_magic; the whole log is $(VENV)/install.log" >&2; \
	  exit 1; \
	fi
	@touch $@

# pip's own output (and setuptools' notes about editable installs) goes to
# $(VENV)/install.log, shown only when the install fails.
demo: $(STAMP)
	@$(VENV)/bin/fc-magic run notebooks/quickstart.ipynb --output notebooks/quickstart.executed.ipynb

test: $(STAMP) browser
	$(PY) -m pytest

# The browser test (tests/test_browser.py) drives JupyterLab with Debian's
# chromium through Playwright (installed by '.[test]'; Playwright cannot
# download browsers here). As root, install chromium if it is missing;
# otherwise the test skips and says why.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: chromium could not be installed; tests/test_browser.py will skip" >&2; \
	fi

bench: $(STAMP)
	$(PY) bench/run_all.py

# Not part of 'make test': mutmut (the '.[mutate]' extra) over requirements, capture,
# preflight, runtime cache, results, retry, progress, pricing and limits with their fast
# tests only; the score is the last line, surviving mutants are listed above it.
mutate: $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutate]'
	$(PY) tools/mutate.py $(MODULES)

clean:
	rm -rf $(VENV) .venv-3.10 .venv-3.10.lock bench/.work test-artifacts notebooks/*.executed.ipynb .mutate
