# leuk: `make demo` starts the Gradio app on the bundled demo models; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)
export OMP_NUM_THREADS ?= 2
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test dashboard install browser demo-assets bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (never playwright's own download).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "warning: /usr/bin/chromium missing and apt-get unavailable; browser tests will be skipped"; fi; \
	fi

demo: $(STAMP)
	$(PY) app.py

dashboard: $(STAMP)
	$(VENV)/bin/streamlit run streamlit_app/app.py

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 $(PYTEST_ARGS)

# Regenerates the committed demo weights, samples and bundled results (seeded; see README).
demo-assets: $(STAMP)
	$(PY) train/make_demo_assets.py

bench: $(STAMP)
	$(PY) bench/run_all.py --tiny

clean:
	rm -rf $(VENV) .pytest_cache
