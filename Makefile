# packnet_ros: `make demo` runs the main job, `make test` the test suite.
# Both create or reuse the local virtual environment (.venv) from nothing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.packnet_ros_ready
DATA ?= ../shared/data
OUT ?= outputs/demo
PYTEST_ARGS ?=
# What `make lint` (ruff, ruff.toml) and `make typecheck` (mypy, mypy.ini) check.
LINT_PATHS ?= packnet_ros test launch tools
MYPY_PACKAGES ?= packnet_ros/networks packnet_ros/geometry packnet_ros/losses packnet_ros/io packnet_ros/completion \
	packnet_ros/pipeline.py packnet_ros/inference.py packnet_ros/weights.py packnet_ros/node_config.py \
	packnet_ros/checkpoint.py packnet_ros/scale.py packnet_ros/odometry.py packnet_ros/online.py \
	packnet_ros/adaptation.py packnet_ros/pointcloud.py packnet_ros/imageproc.py packnet_ros/msgdata.py \
	packnet_ros/jsonio.py packnet_ros/machine.py

# Network rule: every process that starts rclpy stays on loopback, in its own domain.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1

.PHONY: venv demo lint typecheck test test-fast colcon-check clean

$(STAMP): requirements.txt setup.py package.xml CMakeLists.txt msg/*.msg tools/setup_venv.sh
	bash tools/setup_venv.sh $(VENV)
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/packnet-ros demo --data $(DATA)/kitti_tiny --out $(OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)

typecheck: $(STAMP)
	$(VENV)/bin/mypy $(MYPY_PACKAGES)

# CI (.ci/run): lint, then typecheck, then the suite (prints the 25 slowest tests).
test: $(STAMP) lint typecheck
	$(PY) -m pytest test -ra --durations=25 $(PYTEST_ARGS)

# unit tests only (no ROS processes, no training)
test-fast: $(STAMP)
	$(PY) -m pytest test -ra -m "not slow" $(PYTEST_ARGS)

# The ROS-machine path: colcon build of this package in a throwaway venv of the ROS 2
# wheels (build/colcon_venv, without the editable install), then start the installed
# packnet_node once and check it runs from the install space (tools/colcon_check.sh).
colcon-check:
	bash tools/colcon_check.sh

clean:
	rm -rf build outputs .pytest_cache
