#!/usr/bin/env bash
# Check the ROS-machine path (`make colcon-check`, run by CI after `make test`):
#   1. a throwaway venv (build/colcon_venv) with the ROS 2 wheels and the rest of
#      requirements.txt, plus colcon and ament_cmake_pytest, but WITHOUT the editable
#      packnet_ros of .venv (which would shadow the install space);
#   2. `colcon build --packages-select packnet_ros` in a scratch workspace
#      (build/colcon_ws, src/packnet_ros -> this checkout), BUILD_TESTING on;
#   3. the install space: ament index, share/ files, the test registered with CTest, and
#      that `import packnet_ros` (package, node module, generated msg) resolves under
#      install/ and nowhere in the source tree;
#   4. the installed lib/packnet_ros/packnet_node started once (untrained PackNetSlim01 at
#      width 0.25) until it logs `ready:`, then stopped with SIGINT; every packnet_ros
#      module it loaded must come from the install space.
# Needs only python3 (3.10+), cmake and a C compiler; installs everything else from the
# package index. Network rule: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and an own
# ROS_DOMAIN_ID (default 43) for the node.
# Usage: tools/colcon_check.sh      env: PYTHON (python3), COLCON_CHECK_DOMAIN_ID (43),
#        KEEP_COLCON_VENV=1 reuses an existing build/colcon_venv (faster local reruns).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
CV=$ROOT/build/colcon_venv
WS=$ROOT/build/colcon_ws
INSTALL=$WS/install/packnet_ros
T0=$SECONDS
step() { echo "[colcon-check] ($((SECONDS - T0)) s) $*"; }
fail() { echo "[colcon-check] FAILED: $*" >&2; exit 1; }

# Nothing of the caller's environment may leak in: not .venv's ament prefix (the Makefile
# exports it), not a bootstrapped LD_LIBRARY_PATH of .venv's ROS wheels, not PYTHONPATH.
unset PYTHONPATH LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE VIRTUAL_ENV PYTHONHOME \
      COLCON_PREFIX_PATH AMENT_CURRENT_PREFIX
export PIP_DISABLE_PIP_VERSION_CHECK=1
RUN_DIR=$(mktemp -d)  # checks run here: neither the checkout nor the workspace is the cwd
trap 'rm -rf "$RUN_DIR"' EXIT

# -- 1. throwaway venv ------------------------------------------------------------------
if [ "${KEEP_COLCON_VENV:-0}" = 1 ] && [ -x "$CV/bin/colcon" ]; then
  step "reusing $CV (KEEP_COLCON_VENV=1)"
else
  step "creating throwaway venv $CV"
  rm -rf "$CV"
  mkdir -p "$ROOT/build"
  "$PYTHON" -m venv "$CV"
fi
export VIRTUAL_ENV=$CV PATH=$CV/bin:$PATH AMENT_PREFIX_PATH=$CV CMAKE_PREFIX_PATH=$CV
PY=$CV/bin/python
step "installing requirements.txt + ros-ament-cmake-pytest==2.7.3 + colcon-common-extensions==0.3.0"
"$PY" -m pip install -q -r requirements.txt 'ros-ament-cmake-pytest==2.7.3' 'colcon-common-extensions==0.3.0' \
  2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import rclpy, torch, colcon_core" || fail "rclpy/torch/colcon not importable in $CV"
if (cd "$RUN_DIR" && "$PY" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('packnet_ros') else 1)"); then
  fail "packnet_ros is importable in $CV before the build (it must come from the install space only)"
fi

# The rosidl wheels' CMake exports hard-code the wheel builder's include paths: fix them.
bash "$ROOT/tools/fix_rosidl_exports.sh" "$CV" "$PY"

# -- 2. colcon build in a scratch workspace ---------------------------------------------
step "colcon build --packages-select packnet_ros in $WS (src/packnet_ros -> $ROOT)"
rm -rf "$WS"
mkdir -p "$WS/src"
ln -s "$ROOT" "$WS/src/packnet_ros"
TB=$SECONDS
( cd "$WS" && colcon --log-base log build --base-paths src --packages-select packnet_ros \
    --event-handlers console_cohesion+ summary+ \
    --cmake-args -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON ) \
  > "$WS/colcon_build.log" 2>&1 || { tail -60 "$WS/colcon_build.log" >&2; fail "colcon build (log: $WS/colcon_build.log)"; }
step "colcon build ok in $((SECONDS - TB)) s ($(grep -E '^Summary:' "$WS/colcon_build.log" || true))"
[ -x "$INSTALL/lib/packnet_ros/packnet_node" ] || fail "no $INSTALL/lib/packnet_ros/packnet_node"
CTEST_LIST=$(ctest --test-dir "$WS/build/packnet_ros" -N) || fail "ctest -N"
grep -q 'packnet_ros_unit' <<<"$CTEST_LIST" || fail "pytest suite not registered with CTest (ament_add_pytest_test)"

# -- 3. the install space, as a ROS user sources it ---------------------------------------
set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
source "$WS/install/setup.bash"
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${COLCON_CHECK_DOMAIN_ID:-43}
step "checking imports and data files from the install space"
( cd "$RUN_DIR" && INSTALL="$INSTALL" ROOT="$ROOT" python - ) <<'PYEOF' || fail "install-space check"
import importlib
import os
import re
import sys

install, root = os.path.realpath(os.environ['INSTALL']), os.environ['ROOT']
import packnet_ros
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from packnet_ros.msg import DepthStats

# the module the installed executable runs (scripts/packnet_node: `from <module> import main`)
with open(os.path.join(install, 'lib', 'packnet_ros', 'packnet_node')) as f:
    node_module = re.search(r'^from (\S+) import main', f.read(), re.M).group(1)
node = importlib.import_module(node_module)
files = {'packnet_ros': packnet_ros.__file__, node_module: node.__file__,
         'packnet_ros.msg (generated)': sys.modules[DepthStats.__module__].__file__}
for name, path in files.items():
    real = os.path.realpath(path)
    assert real.startswith(install + os.sep), f'{name} imported from {real}, not from {install}'
    print(f'[colcon-check]   {name}: {path}')
assert not any(os.path.realpath(p or '.') == os.path.realpath(root) for p in sys.path), sys.path
prefix = os.path.realpath(get_package_prefix('packnet_ros'))
share = get_package_share_directory('packnet_ros')
assert prefix == install, f'ament index: packnet_ros at {prefix}, not {install}'
for rel in ('package.xml', 'launch/packnet.launch.py', 'config/packnet.yaml',
            'config/fastdds_large_messages.xml', 'msg/DepthStats.msg'):
    assert os.path.isfile(os.path.join(share, rel)), f'{rel} not installed in {share}'
print(f'[colcon-check]   ament index: {share} (package.xml, launch/, config/, msg/)')
PYEOF

# -- 4. start the installed node once ---------------------------------------------------
NODE_LOG=$WS/packnet_node.log
step "starting $INSTALL/lib/packnet_ros/packnet_node (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, discovery LOCALHOST)"
( cd "$RUN_DIR" && exec env PYTHONVERBOSE=1 "$INSTALL/lib/packnet_ros/packnet_node" --ros-args \
    -p checkpoint:=untrained -p network:=PackNetSlim01 -p network_width:=0.25 ) > "$NODE_LOG" 2>&1 &
NODE_PID=$!
TN=$SECONDS
ready=0
while [ $((SECONDS - TN)) -lt "${COLCON_CHECK_NODE_TIMEOUT:-120}" ]; do
  if grep -q 'ready:' "$NODE_LOG"; then ready=1; break; fi
  kill -0 "$NODE_PID" 2>/dev/null || break
  sleep 1
done
if kill -0 "$NODE_PID" 2>/dev/null; then
  kill -INT "$NODE_PID" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$NODE_PID" 2>/dev/null || true
fi
wait "$NODE_PID" 2>/dev/null && rc=0 || rc=$?
if [ "$ready" != 1 ]; then
  grep -v -E '^(#|import |Python |Type |\s*$)' "$NODE_LOG" | tail -40 >&2
  fail "packnet_node did not log 'ready:' within ${COLCON_CHECK_NODE_TIMEOUT:-120} s (exit $rc, log: $NODE_LOG)"
fi
step "node ready after $((SECONDS - TN)) s, stopped with SIGINT (exit $rc):"
grep -m1 'ready:' "$NODE_LOG" | sed 's/^/[colcon-check]   /'
# PYTHONVERBOSE lists every module source the node loaded: all of packnet_ros must be installed copies.
loaded=$(grep -oE "(code object from|matches) '?[^ ']*/packnet_ros/[^ ']*\.py" "$NODE_LOG" \
         | sed -E "s/^(code object from|matches) '?//" | sort -u)
n_loaded=$(printf '%s\n' "$loaded" | grep -c . || true)
[ "$n_loaded" -gt 0 ] || fail "no packnet_ros module sources found in the node's import trace ($NODE_LOG)"
foreign=$(printf '%s\n' "$loaded" | grep -v "^$INSTALL/" || true)
[ -z "$foreign" ] || fail "packnet_node loaded packnet_ros modules outside $INSTALL:
$foreign"
step "node loaded $n_loaded packnet_ros module files, all under $INSTALL"

echo "[colcon-check] OK in $((SECONDS - T0)) s: colcon build of packnet_ros against the ROS 2 wheels" \
     "(ament_cmake, rosidl msg/, Python package, scripts, launch/config share files, CTest" \
     "registration), imports from the install space, installed packnet_node started and stopped."
