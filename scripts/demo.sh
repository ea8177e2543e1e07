#!/usr/bin/env bash
# The seed's part 1, done by tsubo-runtime: a busybox shell isolated by namespaces, cgroups
# and pivot_root, from an OCI bundle — then the create/start/state/kill/delete lifecycle.
set -euo pipefail
cd "$(dirname "$0")/.."
runtime=$PWD/.venv/bin/tsubo-runtime
work=$(mktemp -d /tmp/tsubo-demo.XXXXXX)
state=$work/state
# The demo's cgroups go under a parent of its own, removed at the end like everything else.
export TSUBO_CGROUP_PARENT="tsubo-demo-$$"
# The demo runs in the machine's own network namespace: its containers get no network (no
# default bridge, no firewall rules on this host) unless a step asks for one.
export TSUBO_DEFAULT_NETWORK=none
registry_netns="tsubo-demo-reg-$$"
registry_pid=""
cleanup() {
  "$runtime" --root "$state" delete --force demo-sleeper >/dev/null 2>&1 || true
  if [ -d "$work/engine" ]; then
    for id in $(.venv/bin/tsubo --root "$work/engine" ps -aq 2>/dev/null); do
      .venv/bin/tsubo --root "$work/engine" rm -f "$id" >/dev/null 2>&1 || true
    done
    # the engine's monitor idles ~2 s after its last container, then exits: wait for it,
    # or it would outlive the demo (and write into the folder removed below)
    for _ in $(seq 100); do [ -e "$work/engine/run/monitor.sock" ] || break; sleep 0.1; done
  fi
  if [ -n "${registry_pid:-}" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
  ip netns delete "$registry_netns" 2>/dev/null || true
  rm -rf "$work"
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "$hierarchy$TSUBO_CGROUP_PARENT" ] && rmdir "$hierarchy$TSUBO_CGROUP_PARENT" 2>/dev/null
  done
  true
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# 1. A root folder: busybox-static and one symlink per applet (the seed's $ROOTFS).
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/bundle/rootfs/bin/$applet"
done
mkdir -p "$work/bundle/rootfs/"{proc,sys,dev,tmp,etc}

# 2. A config: tsubo-runtime writes runc's default, we set a command, a hostname and limits
#    (the seed's `cgexec -g cpu,memory`).
step tsubo-runtime spec --bundle "$work/bundle"
"$runtime" spec --bundle "$work/bundle"
.venv/bin/python - "$work/bundle/config.json" <<'PY'
import json, os, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["sh", "-c", """
echo "pid of this shell: $$ (PID 1 of its own pid namespace)"
echo "hostname: $(hostname)"
echo "processes it can see:"; ps
echo "root folder: $(ls /)"
echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) bytes"
echo "cpu quota: $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) / $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) us"
echo "capabilities: $(grep CapEff /proc/self/status)"
"""]
config["hostname"] = "container1"
config["linux"]["cgroupsPath"] = f"/{os.environ['TSUBO_CGROUP_PARENT']}/container1"
config["linux"]["namespaces"].append({"type": "cgroup"})
config["linux"]["resources"].update({
    "memory": {"limit": 64 * 1024 * 1024},
    "cpu": {"quota": 50000, "period": 100000},
    "pids": {"limit": 64},
})
json.dump(config, open(path, "w"), indent=2)
PY

step tsubo-runtime run --bundle bundle container1
"$runtime" --root "$state" run --bundle "$work/bundle" container1

# 3. The lifecycle, split as the OCI spec describes it.
.venv/bin/python - "$work/bundle/config.json" <<'PY'
import json, os, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["args"] = ["sleep", "600"]
config["linux"]["cgroupsPath"] = f"/{os.environ['TSUBO_CGROUP_PARENT']}/demo-sleeper"
json.dump(config, open(path, "w"), indent=2)
PY
step tsubo-runtime create --bundle bundle demo-sleeper
"$runtime" --root "$state" create --bundle "$work/bundle" demo-sleeper
step tsubo-runtime state demo-sleeper
"$runtime" --root "$state" state demo-sleeper
step tsubo-runtime start demo-sleeper '&&' tsubo-runtime list
"$runtime" --root "$state" start demo-sleeper
"$runtime" --root "$state" list
step tsubo-runtime exec demo-sleeper ps
"$runtime" --root "$state" exec demo-sleeper ps
step tsubo-runtime kill demo-sleeper KILL '&&' tsubo-runtime delete demo-sleeper
"$runtime" --root "$state" kill demo-sleeper KILL
for _ in $(seq 50); do
  "$runtime" --root "$state" state demo-sleeper | grep -q '"stopped"' && break
  sleep 0.1
done
"$runtime" --root "$state" delete demo-sleeper
"$runtime" --root "$state" list
# 4. The engine: named containers with a monitor each, a root overlaid on the folder.
tsubo="$PWD/.venv/bin/tsubo --root $work/engine"
step tsubo run --rm --rootfs rootfs sh -c "'echo hello from \$(hostname)'"
$tsubo run --rm --rootfs "$work/bundle/rootfs" sh -c 'echo hello from $(hostname)'
step tsubo run -d --name web --memory 64m --rootfs rootfs sh -c "'while :; do date; sleep 1; done'"
$tsubo run -d --name web --memory 64m --rootfs "$work/bundle/rootfs" sh -c 'while :; do date; sleep 1; done'
step tsubo ps '&&' tsubo exec web ps
$tsubo ps -a
$tsubo exec web ps
sleep 1.2
step tsubo logs --tail 2 web
$tsubo logs --tail 2 web
step tsubo stop -t 1 web '&&' tsubo rm web
$tsubo stop -t 1 web
$tsubo ps -a
$tsubo rm web

# 5. Images, offline: the same root folder as a tarball, imported as an image.
step tsubo import -c "'CMD [\"sh\", \"-c\", \"echo hello from an image\"]'" busybox.tar.gz busybox
tar -C "$work/bundle/rootfs" -czf "$work/busybox.tar.gz" .
$tsubo import -c 'CMD ["sh", "-c", "echo hello from an image"]' "$work/busybox.tar.gz" busybox
step tsubo images '&&' tsubo run --rm busybox
$tsubo images
$tsubo run --rm busybox

# 5b. A real registry (Debian's docker-registry), alone in a throwaway network namespace:
# push the image there, forget it, pull it back.
if [ -x /usr/bin/docker-registry ]; then
  ip netns add "$registry_netns"
  ip -n "$registry_netns" link set lo up
  mkdir -p "$work/registry"
  printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\nlog:\n  level: error\n' \
    "$work/registry" > "$work/registry.yml"
  ip netns exec "$registry_netns" /usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 50); do ip netns exec "$registry_netns" bash -c '</dev/tcp/127.0.0.1/5000' 2>/dev/null && break; sleep 0.1; done
  in_netns() { ip netns exec "$registry_netns" "$@"; }
  step tsubo tag busybox 127.0.0.1:5000/demo/busybox:1 '&&' tsubo push 127.0.0.1:5000/demo/busybox:1
  $tsubo tag busybox 127.0.0.1:5000/demo/busybox:1
  in_netns $tsubo push 127.0.0.1:5000/demo/busybox:1
  step tsubo rmi busybox 127.0.0.1:5000/demo/busybox:1 '&&' tsubo pull 127.0.0.1:5000/demo/busybox:1
  $tsubo rmi busybox 127.0.0.1:5000/demo/busybox:1 >/dev/null
  in_netns $tsubo pull 127.0.0.1:5000/demo/busybox:1
  step tsubo run --rm 127.0.0.1:5000/demo/busybox:1
  $tsubo run --rm 127.0.0.1:5000/demo/busybox:1
  $tsubo rmi 127.0.0.1:5000/demo/busybox:1 >/dev/null
  kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; registry_pid=""
  ip netns delete "$registry_netns"
else
  $tsubo rmi busybox >/dev/null
fi

# 6. The same through the Python API (examples/api.py).
step python examples/api.py rootfs
.venv/bin/python examples/api.py "$work/bundle/rootfs" "$work/engine"
echo
echo "demo done: every namespace, mount, cgroup and state file is gone again."
