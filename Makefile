# packnet_ros: `make demo` runs the main job, `make test` the test suite.
# Both create or reuse the local virtual environment (.venv) from nothing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.packnet_ros_ready
DATA ?= ../shared/data
OUT ?= outputs/demo
PYTEST_ARGS ?=

# Network rule: every process that starts rclpy stays on loopback, in its own domain.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test test-fast colcon-check clean

$(STAMP): requirements.txt setup.py package.xml CMakeLists.txt msg/*.msg tools/setup_venv.sh
	bash tools/setup_venv.sh $(VENV)
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/packnet-ros demo --data $(DATA)/kitti_tiny --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest test -ra $(PYTEST_ARGS)

# unit tests only (no ROS processes, no training)
test-fast: $(STAMP)
	$(PY) -m pytest test -ra -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf build outputs .pytest_cache
