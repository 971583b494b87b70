#!/usr/bin/env bash
# Boots systemd as PID 1 of private namespaces (pid, mount, network, uts, ipc, cgroup) over a
# minimal root, for tests of what needs systemd as PID 1 (`pimesh bench run --compare
# systemd-run`) on machines whose own PID 1 is something else (CI, containers). Root only.
#
#   scripts/systemd-container.sh start ROOT [DIR...]   ROOT: an empty directory. Prints the host
#                                                       pid of its systemd once it is running.
#   scripts/systemd-container.sh stop PID ROOT          Ends it and removes ROOT.
#
# The root has the host's /usr and /opt read-only, each DIR at its own path (read-write), a
# private /etc with the host's users and groups, and tmpfs /run and /tmp; its network holds
# only loopback. systemd gets a cgroup v2 tree of its own, below a cgroup made for it in the
# host's, so that stopping the container leaves nothing in the host's hierarchy. On a hybrid
# host (cgroup v1 controllers) that tree has no controllers: systemd tracks the services'
# processes but accounts no memory or pids for them, less work than on a Pi's cgroup v2.
set -euo pipefail

cgroup_parent() {
  # The host's cgroup v2 hierarchy: /sys/fs/cgroup itself, or /sys/fs/cgroup/unified on a hybrid host.
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then echo /sys/fs/cgroup
  elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then echo /sys/fs/cgroup/unified
  else echo "systemd-container: no cgroup v2 hierarchy on this host" >&2; exit 1; fi
}

case "${1:-}" in
start)
  root=$2; shift 2
  [ "$(id -u)" = 0 ] || { echo "systemd-container: run as root" >&2; exit 1; }
  mkdir -p "$root"/{usr,opt,etc/systemd/system,run,tmp,proc,sys,dev,var/tmp,root}
  for l in bin sbin lib lib64; do [ -e "$root/$l" ] || ln -s "usr/$l" "$root/$l"; done
  # Users and groups for the lead's lookups; no password hashes.
  cp /etc/passwd /etc/group /etc/nsswitch.conf "$root/etc/"
  ln -sf ../usr/lib/os-release "$root/etc/os-release"
  : > "$root/etc/machine-id"
  # A target of its own: the host's enabled units are not in this root's /etc.
  cat > "$root/etc/systemd/system/container.target" <<'UNIT'
[Unit]
Description=systemd-container.sh
Requires=basic.target
After=basic.target
UNIT
  cgroup="$(cgroup_parent)/systemd-container-$$"
  mkdir "$cgroup"
  echo "$cgroup" > "$root.cgroup"
  # Paths reach the inner shells as arguments, never as code. The unshare process joins the
  # cgroup first: the new cgroup namespace is rooted there.
  inner='
    root=$1; shift
    mount --bind /usr "$root/usr"; mount -o remount,bind,ro "$root/usr"
    if [ -d /opt ]; then mount --bind /opt "$root/opt"; mount -o remount,bind,ro "$root/opt"; fi
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=755 tmpfs "$root/run"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    # After the tmpfs mounts, so that a DIR below /tmp or /run is not hidden by them.
    for dir in "$@"; do mkdir -p "$root$dir" && mount --bind "$dir" "$root$dir"; done
    exec chroot "$root" env container=systemd-container /lib/systemd/systemd --system --unit=container.target'
  setsid bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec unshare --pid --fork --kill-child --mount --net --uts --ipc --cgroup --propagation private bash -c "$@"' \
    _ "$cgroup" "$inner" _ "$root" "$@" > "$root.log" 2>&1 < /dev/null &
  holder=$!
  for _ in $(seq 1 300); do
    # setsid execs in place, or (when it runs as a group leader) forks first.
    pid=$(pgrep -P "$holder" -x systemd || pgrep -P "$(pgrep -P "$holder" -x unshare || echo 0)" -x systemd || true)
    state=""
    [ -n "$pid" ] && state=$(nsenter -t "$pid" -a -r systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) echo "$pid"; exit 0 ;; esac
    sleep 0.1
  done
  echo "systemd-container: systemd did not come up within 30 s:" >&2
  cat "$root.log" >&2
  kill -9 "$holder" 2>/dev/null || true
  exec "$0" stop "${pid:-0}" "$root"
  ;;
stop)
  pid=$2; root=$3
  if [ "$pid" -gt 1 ] 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -f "$root.cgroup" ]; then
    cgroup=$(cat "$root.cgroup")
    # Empty once every process in it is gone: children first.
    for _ in $(seq 1 50); do
      find "$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$cgroup" ] || break
      sleep 0.1
    done
    if [ -d "$cgroup" ]; then
      echo "systemd-container: $cgroup is not empty; kept (and $root.cgroup, which names it)" >&2
      exit 1
    fi
    rm -f "$root.cgroup"
  fi
  rm -rf "$root" "$root.log"
  ;;
*)
  sed -n '2,13p' "$0"; exit 2 ;;
esac
