# offhook: every target installs what it needs from nothing (Debian bookworm, as root or
# with sudo), idempotently, with pinned versions. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make
VM_DIR := host/offhook/vm
MPY_STUBS := $(VENV)/mpy-stubs
MPY_STUBS_PIN := micropython-rp2-rpi-pico-stubs==1.27.0.post1
PYTEST_ARGS ?=

# Debian packages each area needs (installed only when missing).
APT_BASE := python3 python3-venv python3-dev gcc nodejs
APT_SOFTPHONE := baresip-core tmux
# Metrics: Debian's Chromium, driven by Playwright in the agent panel's headless test.
APT_METRICS := chromium
# Audio core: speech synthesis for test signals, the anchors (SpeexDSP, WebRTC 0.3), a PulseAudio
# server for the integration test, PortAudio (pyaudio builds against it) and ALSA's pulse plugin.
APT_AUDIO := espeak-ng libspeexdsp-dev libwebrtc-audio-processing-dev pulseaudio pulseaudio-utils \
	portaudio19-dev libasound2-plugins g++ pkg-config
AEC3_WHEEL_PIN := aec-audio-processing==1.0.1
# The floor: Mosquitto (MQTT 5 broker) and PostgreSQL 15 for tests/floor; PostgreSQL refuses root,
# so the tests run it as this unprivileged system user.
APT_FLOOR := mosquitto mosquitto-clients postgresql
FLOOR_PG_USER := offhook-pg

.PHONY: help venv vm test lint run bench soak dist clean floor

help:
	@echo "make run    start offhook on the simulated desk unit (or a real one when plugged in)"
	@echo "make test   all tests except slow/soak, plus lint, type checks and mpy-cross"
	@echo "make lint   ruff, mypy on host/, firmware type-checked against MicroPython stubs"
	@echo "make bench  every benchmark, printing a table of figures"
	@echo "make floor  a demo floor: Mosquitto, PostgreSQL, central, 3 daemons, 300 load desks; prints the wallboard URL"
	@echo "make soak   long runs: 1,000,000 fuzz cases per runtime, atheris, a 30-minute call loop"
	@echo "make venv   .venv/ with the host package (editable) and the test/lint tools"
	@echo "make dist   build the host wheel and sdist into dist/"

$(STAMPS):
	mkdir -p $(STAMPS)

$(STAMPS)/apt-base: scripts/apt-ensure | $(STAMPS)
	scripts/apt-ensure $(APT_BASE)
	@command -v npm >/dev/null || scripts/apt-ensure npm
	touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: host/pyproject.toml host/constraints.txt $(STAMPS)/apt-base
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c host/constraints.txt -e 'host[dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade --target $(MPY_STUBS) $(MPY_STUBS_PIN)
	touch $@

vm: $(STAMPS)/vm
$(STAMPS)/vm: $(VM_DIR)/package.json $(VM_DIR)/package-lock.json $(STAMPS)/apt-base
	npm ci --prefix $(VM_DIR) --no-audit --no-fund --loglevel=error
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff check --config firmware/ruff.toml host/offhook/linkproto.py host/offhook/hidframe.py host/offhook/usbids.py
	$(BIN)/ruff format --check .
	$(BIN)/mypy --config-file host/pyproject.toml host/offhook
	rm -rf $(STAMPS)/device-tree
	$(BIN)/python -c 'import sys, pathlib, offhook.firmware as f; f.stage(pathlib.Path(sys.argv[1]))' $(STAMPS)/device-tree
	cd $(STAMPS)/device-tree && MYPYPATH=$(abspath $(MPY_STUBS)):lib $(abspath $(BIN))/mypy \
		--config-file $(abspath firmware/mypy.ini) --custom-typeshed-dir $(abspath $(MPY_STUBS)) .

$(STAMPS)/apt-softphone: scripts/apt-ensure | $(STAMPS)
	scripts/apt-ensure $(APT_SOFTPHONE)
	touch $@

$(STAMPS)/apt-metrics: scripts/apt-ensure | $(STAMPS)
	scripts/apt-ensure $(APT_METRICS)
	touch $@

$(STAMPS)/apt-floor: scripts/apt-ensure | $(STAMPS)
	scripts/apt-ensure $(APT_FLOOR)
	id -u $(FLOOR_PG_USER) >/dev/null 2>&1 || $$( [ $$(id -u) -eq 0 ] || echo sudo ) useradd -r -M -s /usr/sbin/nologin $(FLOOR_PG_USER)
	touch $@

$(STAMPS)/apt-audio: scripts/apt-ensure | $(STAMPS)
	scripts/apt-ensure $(APT_AUDIO)
	touch $@

# pyaudio (the real-time path) builds from source against portaudio19-dev.
$(STAMPS)/venv-audio: host/pyproject.toml host/constraints.txt $(STAMPS)/venv $(STAMPS)/apt-audio
	$(BIN)/python -m pip install -q --disable-pip-version-check -c host/constraints.txt -e 'host[realtime]'
	touch $@

# Benchmark-only: the WebRTC 0.3 shim, PESQ/STOI, and WebRTC AEC3 from PyPI. AEC3 compiles
# webrtc-audio-processing 2.1 from source (minutes), so its wheel is cached in .make/wheels.
$(STAMPS)/audio-shim/libwebrtc03shim.so: tests/bench/audio/shim/webrtc03_shim.cc $(STAMPS)/apt-audio
	mkdir -p $(@D)
	g++ -O2 -shared -fPIC -std=c++11 $$(pkg-config --cflags webrtc-audio-processing) $< -o $@ \
		$$(pkg-config --libs webrtc-audio-processing)

$(STAMPS)/bench-audio: host/pyproject.toml host/constraints.txt $(STAMPS)/venv-audio $(STAMPS)/audio-shim/libwebrtc03shim.so
	ls $(STAMPS)/wheels/aec_audio_processing-*.whl >/dev/null 2>&1 || \
		$(BIN)/python -m pip wheel -q --disable-pip-version-check --no-deps -w $(STAMPS)/wheels $(AEC3_WHEEL_PIN)
	$(BIN)/python -m pip install -q --disable-pip-version-check --find-links $(STAMPS)/wheels \
		-c host/constraints.txt -e 'host[bench]'
	touch $@

# pytest exit code 5 means no test was collected: that is a failure, never a pass.
test: venv vm lint $(STAMPS)/apt-softphone $(STAMPS)/apt-metrics $(STAMPS)/venv-audio $(STAMPS)/apt-floor
	$(BIN)/python -m pytest -m "not slow and not soak" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: venv vm $(STAMPS)/bench-audio $(STAMPS)/apt-softphone $(STAMPS)/apt-floor
	$(BIN)/python -m tests.bench

# Long runs, never in `make test`: fuzzing (1,000,000 cases per runtime, and atheris), the call loop.
SOAK_MINUTES ?= 30
soak: venv vm $(STAMPS)/apt-softphone
	$(BIN)/python -m pip install -q --disable-pip-version-check -c host/constraints.txt atheris
	$(BIN)/python tests/reliability/atheris_link.py -runs=1000000 -print_final_stats=1
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m pytest -m soak -s -p no:cacheprovider tests/reliability

# A demo floor on this machine until Ctrl-C (tests/floor/demo.py); FLOOR_ARGS="--desks 500 --port 9443".
floor: venv vm $(STAMPS)/apt-floor
	$(BIN)/python -m tests.floor.demo $(FLOOR_ARGS)

# The demo: baresip lines, the daemon, and the simulated unit with its TUI (a real unit when plugged in).
run: venv vm $(STAMPS)/apt-softphone
	$(BIN)/offhook demo

dist: venv
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --outdir dist host

clean:
	rm -rf $(STAMPS) dist .pytest_cache .mypy_cache .ruff_cache
