#!/usr/bin/env bash
# The whole test suite: lint, types, then unit and real-kernel tests (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests bench scripts examples
.venv/bin/mypy
# pytest runs in a mount namespace of its own with private propagation: what the tests
# mount (overlays, /run/netns pins, the tmpfs containerd's shim and podman's CNI need over
# /run/containerd and /var/lib) never reaches the host's mount table, and goes with the
# namespace even if a test dies half-way. Networks are the tests' own netns fixtures.
exec unshare --mount --propagation private .venv/bin/python -m pytest -q "$@"
