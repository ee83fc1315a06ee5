# webli-builder. `make test` and `make demo` work on a fresh machine: they create
# the venv, install the pinned Python packages and, as root, the Debian packages.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WEBLI := $(VENV)/bin/webli
CONFIG ?= run.yaml
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
# Debian packages: fonts to render the demo's and the OCR tests' multi-script text images (CJK included); wget for
# the realweb WARC benchmark; chromium to check the card's HTML renders; tesseract with the OSD model, 33 language packs and
# the script packs of every script WebLI's languages are written in.
TESSERACT_LANGS := eng deu fra spa ita por nld pol ces swe dan nor fin hun ron tur vie ind \
	rus ukr bul ell ara fas heb hin ben tam tha chi-sim chi-tra jpn kor
TESSERACT_SCRIPTS := latn cyrl grek arab hebr deva hans hant jpan hang thai
APT_PACKAGES := fonts-dejavu-core fonts-noto-core fonts-noto-cjk wget chromium tesseract-ocr tesseract-ocr-osd \
	$(addprefix tesseract-ocr-,$(TESSERACT_LANGS)) $(addprefix tesseract-ocr-script-,$(TESSERACT_SCRIPTS))
export NO_ALBUMENTATIONS_UPDATE := 1
# Tests, the demo and the benchmarks never download weights; stage targets may (an open_clip pretrained tag).
test test-fast demo bench: export HF_HUB_OFFLINE := 1

STAGES := crawl download ocr dedup score select train card bootstrap-filter
.PHONY: install system-deps test test-fast demo bench lint lock clean run $(STAGES)

install: $(STAMP) $(SYSTEM_STAMP)

# torch's CUDA build and its NVIDIA libraries take about 6.5 GB in the venv
VENV_MIN_FREE_GB := 7

$(STAMP): requirements.lock pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  where=$(dir $(abspath $(VENV))); free=$$(df -P -BG $$where | awk 'NR==2 {print $$4+0}'); \
	  if [ "$$free" -lt $(VENV_MIN_FREE_GB) ]; then \
	    echo "error: $$free GB free under $$where; the venv needs about $(VENV_MIN_FREE_GB) GB"; \
	    echo "       free some space (old venvs, /tmp) or set VENV=/path/on/a/larger/disk/.venv"; exit 1; \
	  fi; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision are pinned in the lock (2.14.1 / 0.29.1 install from local disk here)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

$(SYSTEM_STAMP): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "error: missing Debian packages: $$missing"; \
	    echo "       run: sudo apt-get install -y --no-install-recommends $$missing   (or run make as root)"; exit 1; \
	  fi; \
	fi
	@mkdir -p $(VENV) && touch $@

system-deps: $(SYSTEM_STAMP)

test: install
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m webli.demo

bench: install
	$(PY) benchmarks/run_all.py

lint: install
	$(VENV)/bin/ruff check webli tests benchmarks

$(STAGES) run: install
	@test -f $(CONFIG) || { echo "error: $(CONFIG) not found; pass CONFIG=path/to/run.yaml (see configs/)"; exit 2; }
	$(WEBLI) $@ --config $(CONFIG)

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^webli-builder' > requirements.lock

clean:
	rm -rf demo-output .pytest_cache
