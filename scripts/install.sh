#!/usr/bin/env bash
# Install everything tsubo needs on a fresh Debian 12 machine (run as root, from anywhere):
# Debian packages (busybox-static for test images, the peer runtimes for benchmarks, ...)
# and a virtualenv in .venv with tsubo and its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
packages=(
  python3 python3-venv       # the interpreter tsubo runs on (Debian's, not a pyenv shim)
  busybox-static             # the userland of test and demo containers
  libseccomp2                # linux.seccomp is applied through libseccomp
  iproute2 procps nftables   # ip/ps/nft: used by tests (leak checks) and `tsubo-runtime ps`
  iperf3                     # throughput through a published port (bench/network_ports.py)
  runc crun hyperfine        # peers and the timer for bench/
  podman conmon              # a real OCI client of tsubo-runtime (tests/e2e) and a peer
  containernetworking-plugins iptables  # podman's bridge (CNI) in the e2e tests' netns
  containerd                 # a real OCI client through its runc shim (tests/e2e, bench/)
  tini catatonit             # real inits for containers (engine --init)
  libzstd1 zstd              # zstd layers are read through libzstd; zstd(1) makes test layers
  docker-registry skopeo     # a real registry on 127.0.0.1 and an independent client (tests)
  umoci apache2-utils        # reference unpacker (tests); htpasswd for the basic-auth registry
  tcpdump graphviz           # tsubo lab capture (in a node's netns); lab graph --format svg
  buildah                    # the reference builder: `buildah bud` of the same Dockerfile (tests)
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's interpreter, explicitly: a pyenv shim on PATH costs ~80 ms a start.
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
# The commands are launchers/tsubo and launchers/tsubo-runtime, as pip installs them for
# anyone (`pip install .` gives the same speed: docs/performance.md).
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# Bytecode now, so the first container start does not pay for compiling.
.venv/bin/python -I -m compileall -q src >/dev/null
echo "tsubo installed: $(.venv/bin/tsubo-runtime --version | head -1)"
