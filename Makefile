# The same commands run locally and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean proto

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing can pull a CUDA build in its place
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[torch,avatar,pipecat,livekit,dev]'
	touch $(STAMP)

setup: $(STAMP)

# The whole system on the demo avatar: open http://localhost:3000/index.html
run: setup
	$(VENV)/bin/lipstream serve --models-dir models

# Debian packages the tests use: a real talking-head video with speech (opencv-doc), real
# speech recordings (pocketsphinx-testdata), the browser the console tests drive (chromium) and
# `ip netns` for the private network their WebRTC call runs in (iproute2).
TEST_FILES := /usr/share/doc/opencv-doc/examples/data/Megamind.avi \
              /usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav \
              /usr/bin/chromium \
              /usr/sbin/ip
TEST_DEBS  := opencv-doc pocketsphinx-testdata chromium iproute2

$(TEST_FILES):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_DEBS) >/dev/null

test: setup $(TEST_FILES)
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/lipstream bench model
	$(VENV)/bin/lipstream bench e2e

clean:
	rm -rf $(VENV) build *.egg-info

# Regenerate the gRPC code from the .proto (tests/service checks it is up to date).
proto: setup
	$(PY) -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src --grpc_python_out=src \
	  src/lipstream/service/lipsync.proto
