#!/usr/bin/env bash
# Usage: tools/fix_rosidl_exports.sh VENV_DIR PYTHON
# The rosidl wheels export CMake files that hard-code the wheel builder's Python and numpy
# include paths; point them at VENV_DIR's Python (idempotent). Used by setup_venv.sh and
# colcon_check.sh before anything runs rosidl's CMake generators.
set -euo pipefail
VENV_DIR="$1"
PY="$2"
INC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$PY" -c "import numpy; print(numpy.get_include())")
for f in "$VENV_DIR"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
  sed -i -e "s#/opt/python/cp[0-9]*-cp[0-9]*/include/python3\.[0-9]*#$INC#g" \
         -e "s#/opt/python/cp[0-9]*-cp[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$NPINC#g" "$f"
done
