#!/bin/sh
# tsubo in-container probe (busybox ash). Installed as /probe in the test rootfs.
#
# Prints one `key=value` line per fact on stdout; multi-valued facts repeat the key. Nothing
# else goes to stdout; errors go to stderr. Every check is guarded: one failing check never
# stops the others (no `set -e`). Facts about "the probe" are read from /proc/$$ (the shell
# itself), never /proc/self (that would be a child such as `cat`).
#
# Keys (see tests/probe.py for the parser):
#   probe.version, probe.done        first and last line; probe.done=1 means it ran to the end
#   pid, ppid, hostname, domainname
#   uid, gid, euid, egid, user, group (one per supplementary group, from /proc/$$/status), id
#   CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp   as in /proc/$$/status (hex/int)
#   umask, cwd (pwd -P), cwd.link (readlink /proc/$$/cwd)
#   fd=N TARGET                      each fd open in the probe shell, except its own script fd
#   fd.script=N TARGET               the fd ash holds on the script itself (/probe)
#   nprocs, proc=PID                 processes visible in /proc (counted in-shell: no children)
#   mount=MOUNTPOINT FSTYPE          from /proc/$$/mountinfo, in order
#   mountopts=MOUNTPOINT OPTS SUPEROPTS
#   masked.PATH=empty|nonempty|missing|error
#   rofs.PATH=yes | missing | no <error message, or "writable">
#   dev=NAME TYPE+PERMS OCTAL MAJ:MIN  one per /dev entry (stat); link targets as devlink=NAME T
#   ptmx.link, pts.ptmx (TYPE+PERMS OCTAL MAJ:MIN), shm.mode
#   rlimit.RLIMIT_X=SOFT HARD        from /proc/$$/limits ("unlimited" kept as is)
#   ulimit=LINE                      `ulimit -a` lines
#   env.NAME=VALUE                   the probe's initial environment (/proc/$$/environ)
#   cgroup=LINE                      /proc/$$/cgroup lines
#   ns.TYPE=LINK                     readlink /proc/$$/ns/TYPE
#   oom_score_adj

kv() { printf '%s=%s\n' "$1" "$2"; }

echo "probe.version=1"

# --- identity --------------------------------------------------------------------------
probe_ids() {
	kv pid "$$"
	kv ppid "${PPID:-}"
	h=$(hostname 2>/dev/null) || h=$(cat /proc/sys/kernel/hostname 2>/dev/null)
	kv hostname "$h"
	d=$(cat /proc/sys/kernel/domainname 2>/dev/null) && kv domainname "$d"
	kv id "$(id 2>/dev/null)"
	kv user "$(id -un 2>/dev/null)"
}

# --- /proc/$$/status: uid/gid/groups/caps/nnp/seccomp ------------------------------------
probe_status() {
	while read -r k rest; do
		# shellcheck disable=SC2086
		case $k in
		Uid:) set -- $rest; kv uid "$1"; kv euid "$2" ;;
		Gid:) set -- $rest; kv gid "$1"; kv egid "$2" ;;
		Groups:) for g in $rest; do kv group "$g"; done ;;
		CapInh: | CapPrm: | CapEff: | CapBnd: | CapAmb: | NoNewPrivs: | Seccomp:)
			kv "${k%:}" "$rest" ;;
		esac
	done </proc/$$/status
}

probe_misc() {
	kv umask "$(umask)"
	kv cwd "$(pwd -P 2>/dev/null)"
	kv cwd.link "$(readlink /proc/$$/cwd 2>/dev/null)"
	a=$(cat /proc/$$/oom_score_adj 2>/dev/null) && kv oom_score_adj "$a"
}

# --- open fds of the probe shell ----------------------------------------------------------
# The listing runs in a subshell: the parent shell only waits, holding no extra pipe or
# directory fd, so the list is exactly what the probe has open.
probe_fds() {
	(
		for f in /proc/$$/fd/*; do
			[ -e "$f" ] || [ -L "$f" ] || continue
			n=${f##*/}
			t=$(readlink "$f" 2>/dev/null) || t="?"
			if [ "$t" = "$PROBE_SCRIPT" ]; then
				kv fd.script "$n $t"
			else
				kv fd "$n $t"
			fi
		done
	)
}

# --- processes visible --------------------------------------------------------------------
probe_procs() {
	n=0
	for d in /proc/[0-9]*; do
		[ -d "$d" ] || continue
		n=$((n + 1))
		kv proc "${d#/proc/}"
	done
	kv nprocs "$n"
}

# --- mounts ---------------------------------------------------------------------------------
probe_mounts() {
	while read -r _id _parent _majmin _root mp opts rest; do
		rest=" $rest"
		after=${rest#* - }
		# after = "FSTYPE SOURCE SUPEROPTS"
		# shellcheck disable=SC2086
		set -- $after
		kv mount "$mp ${1:-?}"
		kv mountopts "$mp $opts ${3:-}"
	done </proc/$$/mountinfo
}

# --- masked paths: do they read as empty? --------------------------------------------------
reads_empty() {
	p=$1
	if [ ! -e "$p" ] && [ ! -L "$p" ]; then
		echo missing
	elif [ -d "$p" ]; then
		if l=$(ls -A "$p" 2>/dev/null); then
			if [ -z "$l" ]; then echo empty; else echo nonempty; fi
		else
			echo error
		fi
	elif head -c 1 "$p" >/dev/null 2>&1; then
		c=$(head -c 1 "$p" 2>/dev/null | wc -c)
		if [ "$c" -eq 0 ] 2>/dev/null; then echo empty; else echo nonempty; fi
	else
		echo error
	fi
}

probe_masked() {
	for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/acpi \
		/proc/scsi /proc/interrupts /proc/latency_stats /proc/timer_stats /proc/asound \
		/sys/firmware; do
		kv "masked.$p" "$(reads_empty "$p")"
	done
}

# --- read-only paths: does a write fail with EROFS? ----------------------------------------
# A file is opened for append and nothing is written: on a read-only mount open() itself
# fails with EROFS, and on a writable one nothing changes (so /proc/sysrq-trigger is never
# triggered). A directory gets `touch -c` (utimensat checks the mount first). Without
# CAP_DAC_OVERRIDE, or as non-root, the answer may be EACCES/EPERM ("no ..."). The mount
# flags themselves are in the mountopts= lines.
probe_rofs() {
	for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /proc/fs; do
		if [ ! -e "$p" ]; then
			kv "rofs.$p" missing
			continue
		fi
		if [ -d "$p" ]; then
			# utimensat() on the directory itself: mnt_want_write() comes first -> EROFS
			msg=$(touch -c "$p" 2>&1) && msg="writable"
		else
			msg=$( { : >>"$p"; } 2>&1) && msg="writable"
		fi
		case $msg in
		*"Read-only file system"*) kv "rofs.$p" yes ;;
		*) kv "rofs.$p" "no $(printf '%s' "$msg" | tr '\n' ' ')" ;;
		esac
	done
}

# --- /dev -----------------------------------------------------------------------------------
dev_line() {
	s=$(stat -c '%A %a %t %T' "$1" 2>/dev/null) || return 1
	# shellcheck disable=SC2086
	set -- $s
	echo "$1 $2 $((0x$3)):$((0x$4))"
}

probe_dev() {
	for f in /dev/* /dev/.[!.]*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		n=${f#/dev/}
		if [ -L "$f" ]; then
			kv dev "$n l $(readlink "$f" 2>/dev/null)"
			kv devlink "$n $(readlink "$f" 2>/dev/null)"
		else
			l=$(dev_line "$f") && kv dev "$n $l"
		fi
	done
	ls -l /dev 2>/dev/null | while IFS= read -r line; do kv dev.ls "$line"; done
	if [ -L /dev/ptmx ]; then
		kv ptmx.link "$(readlink /dev/ptmx)"
	elif [ -e /dev/ptmx ]; then
		kv ptmx.link "(not a symlink)"
	else
		kv ptmx.link "(missing)"
	fi
	l=$(dev_line /dev/pts/ptmx) && kv pts.ptmx "$l"
	m=$(stat -c '%a' /dev/shm 2>/dev/null) && kv shm.mode "$m"
}

# --- rlimits ----------------------------------------------------------------------------------
rlimit_name() {
	case $1 in
	Max_cpu_time) echo CPU ;;
	Max_file_size) echo FSIZE ;;
	Max_data_size) echo DATA ;;
	Max_stack_size) echo STACK ;;
	Max_core_file_size) echo CORE ;;
	Max_resident_set) echo RSS ;;
	Max_processes) echo NPROC ;;
	Max_open_files) echo NOFILE ;;
	Max_locked_memory) echo MEMLOCK ;;
	Max_address_space) echo AS ;;
	Max_file_locks) echo LOCKS ;;
	Max_pending_signals) echo SIGPENDING ;;
	Max_msgqueue_size) echo MSGQUEUE ;;
	Max_nice_priority) echo NICE ;;
	Max_realtime_priority) echo RTPRIO ;;
	Max_realtime_timeout) echo RTTIME ;;
	*) echo "$1" ;;
	esac
}

probe_rlimits() {
	set -f
	while IFS= read -r line; do
		case $line in Limit*) continue ;; esac
		# shellcheck disable=SC2086
		set -- $line
		name=""
		while [ $# -gt 0 ]; do
			case $1 in [0-9]* | unlimited) break ;; esac
			name="$name${name:+_}$1"
			shift
		done
		[ $# -ge 2 ] && kv "rlimit.RLIMIT_$(rlimit_name "$name")" "$1 $2"
	done </proc/$$/limits
	set +f
	ulimit -a 2>/dev/null | while IFS= read -r line; do kv ulimit "$line"; done
}

# --- environment, cgroups, namespaces --------------------------------------------------------
probe_env() {
	if [ -r /proc/$$/environ ]; then
		tr '\0' '\n' </proc/$$/environ | while IFS= read -r line; do
			[ -n "$line" ] && echo "env.$line"
		done
	else
		env | while IFS= read -r line; do echo "env.$line"; done
	fi
}

probe_cgroup() {
	while IFS= read -r line; do kv cgroup "$line"; done </proc/$$/cgroup
}

probe_ns() {
	for f in /proc/$$/ns/*; do
		l=$(readlink "$f" 2>/dev/null) && kv "ns.${f##*/}" "$l"
	done
}

PROBE_SCRIPT=$(readlink -f "$0" 2>/dev/null) || PROBE_SCRIPT=$0

# fds first and with no redirection on the call (ash would park a copy of the redirected fd
# at 10+ for the duration, and it would show in the listing); then the rest.
probe_fds || echo "probe: probe_fds failed" >&2
for check in probe_ids probe_status probe_misc probe_procs probe_mounts probe_masked \
	probe_rofs probe_dev probe_rlimits probe_env probe_cgroup probe_ns; do
	"$check" || echo "probe: $check failed" >&2
done

echo "probe.done=1"
exit 0
