# The two commands of the README: `make dev` (set up and start everything) and `make test` (set up and test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup sr-libs browser dev dev-direct worker test lint bench bench-sr bench-quality bench-api bench-thumbnails bench-pipeline bench-metadata clean

# The super-resolution runtime (requirements-sr.txt) declares opencv-python, which would put a second cv2 next
# to opencv-python-headless; its only other dependency (Pillow) is ours already, hence --no-deps.
$(STAMP): pyproject.toml requirements-sr.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sr]'
	$(BIN)/pip install --quiet --no-deps -r requirements-sr.txt
	touch $(STAMP)

setup: $(STAMP) sr-libs

# Debian packages, installed when missing and allowed (root, or sudo with apt): never their recommended packages
# (Chromium's would bring systemd and a printer stack), and when another process holds apt's or dpkg's lock, it is
# waited for (up to 10 minutes) instead of given up: install waits by itself (DPkg::Lock::Timeout), update is
# retried while its lock is taken.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET ?= DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -qq -o DPkg::Lock::Timeout=600
CAN_APT = command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null; }
define apt_install
	for attempt in $$(seq 60); do \
		if out=$$($(APT_GET) update 2>&1); then break; fi; \
		case "$$out" in \
			*"Could not get lock"*|*"Unable to lock"*) echo "waiting for the apt lock another process holds"; sleep 10;; \
			*) echo "$$out"; break;; \
		esac; \
	done; \
	$(APT_GET) install -y --no-install-recommends $(1) >/dev/null
endef

# The SR weights' wheel has a native module of its own (the engine's runtime before ncnn's own package) that links
# libvulkan.so.1 and libomp.so.5: the tests and bench/sr.py compare the engine's output with it. libvulkan.so.1 is
# also what SR_DEVICE=vulkan needs. Installed with apt when missing and allowed (root); otherwise a warning.
SR_LIBS_PRESENT = $(BIN)/python -c "import ctypes; ctypes.CDLL('libvulkan.so.1'); ctypes.CDLL('libomp.so.5')" 2>/dev/null
sr-libs:
	@if ! $(SR_LIBS_PRESENT) && $(CAN_APT); then $(call apt_install,libvulkan1 libomp5); fi; \
	if ! $(SR_LIBS_PRESENT); then \
		echo "warning: the super-resolution tests against the weights' own runtime need the system libraries"; \
		echo "         libvulkan.so.1 and libomp.so.5 (Debian/Ubuntu: sudo apt-get install libvulkan1 libomp5)."; \
	fi

# The browser tests drive the system's Chromium through its chromedriver, and the metadata tests run exiftool
# (Debian packages; nothing is downloaded at run time). Without them those tests skip (outside CI).
TEST_PACKAGES := chromium chromium-driver libimage-exiftool-perl
TEST_PACKAGES_PRESENT ?= command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v exiftool >/dev/null
browser:
	@if $(TEST_PACKAGES_PRESENT); then :; \
	elif $(CAN_APT); then \
		{ $(call apt_install,$(TEST_PACKAGES)); } || echo "warning: could not install $(TEST_PACKAGES); those tests will skip"; \
	else \
		echo "warning: the browser and metadata tests need $(TEST_PACKAGES) (Debian packages); they will skip"; \
	fi

# Webhooks in development may go to a receiver on this machine over http (loopback only; never private networks).
DEV_WEBHOOKS := WEBHOOK_ALLOWED_NETWORKS='["127.0.0.0/8","::1/128"]' WEBHOOK_ALLOW_HTTP=true

dev: setup          ## Temporal dev server + worker + API on 127.0.0.1:8000
	$(DEV_WEBHOOKS) $(BIN)/album-enhance dev

dev-direct: setup   ## API only, batches run in-process (no Temporal)
	$(DEV_WEBHOOKS) $(BIN)/album-enhance dev --direct

worker: setup       ## one more worker against TEMPORAL_ADDRESS
	$(BIN)/python worker.py

test: setup browser ## the whole suite (PostgreSQL too when TEST_DATABASE_URL is set)
	$(BIN)/pytest

lint: setup         ## ruff, ruff format and mypy (strict for the source), as .pre-commit-config.yaml lists them
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

bench: setup        ## imaging benchmark; writes bench/results/
	$(BIN)/python -m bench.imaging

bench-metadata: setup  ## what carrying EXIF/XMP/IPTC over costs per image; writes bench/results/metadata.*
	$(BIN)/python -m bench.metadata

bench-sr: setup     ## SR runtimes against the fp32 bound; writes bench/results/sr.*
	$(BIN)/python -m bench.sr

bench-quality: setup  ## full-reference quality benchmark; writes bench/results/quality.* and docs/images/
	$(BIN)/python -m bench.quality

bench-api: setup    ## API load benchmark on PostgreSQL (BENCH_DATABASE_URL names the server); writes bench/results/
	$(BIN)/python -m bench.api

bench-thumbnails: setup  ## API memory for 16 first-time thumbnails of 59.99 MP PNGs; writes bench/results/thumbnails.*
	$(BIN)/python -m bench.thumbnails

bench-pipeline: setup  ## batches in each mode and API latency, on PostgreSQL (--postgres names the server)
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
