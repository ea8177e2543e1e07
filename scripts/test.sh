#!/usr/bin/env bash
# The whole test suite: lint, types, then unit and real-kernel tests (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests bench scripts examples
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
