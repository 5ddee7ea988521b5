# Shared helpers for the service scripts in ci/services/. Source it, don't run it.
#
# Conventions every ci/services/<name>.sh follows (see README, "Test services"):
#   <name>.sh install        install packages / build roots, idempotent, cached under $FLASHLINK_CI_CACHE
#   <name>.sh check          exit 0 when installed and usable, else print one line saying why and exit 1
#   <name>.sh start RUNDIR   start on 127.0.0.1 with free ports, PIDs in RUNDIR/*.pid, client settings
#                            in RUNDIR/env (KEY=VALUE, values shell-quoted), return once it answers
#   <name>.sh stop RUNDIR    stop by PID, undo mounts, remove what start left outside RUNDIR
set -euo pipefail

FLASHLINK_CI_CACHE=${FLASHLINK_CI_CACHE:-/var/cache/flashlink-ci}
# Scratch visible at the same path to the host, to batch jobs and inside the service roots.
# Not under /tmp: HTCondor mounts a private /tmp in each job (MOUNT_UNDER_SCRATCH).
FLASHLINK_CI_WORK=${FLASHLINK_CI_WORK:-/srv/flashlink-ci}
CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST_PYTHON=/usr/bin/python3
# The unprivileged user that submits batch jobs (HTCondor refuses jobs from root).
CI_USER=${FLASHLINK_CI_USER:-flashci}
CI_UID=${FLASHLINK_CI_UID:-2000}
export DEBIAN_FRONTEND=noninteractive

log() { printf '[%(%H:%M:%S)T %s] %s\n' -1 "${SVC:-ci}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_install PKG... : waits for the dpkg lock, so service installs may run in parallel.
apt_install() {
    apt-get -q -y -o DPkg::Lock::Timeout=900 install --no-install-recommends "$@" >/dev/null
}

apt_update_once() {
    local stamp=$FLASHLINK_CI_CACHE/.apt-updated
    mkdir -p "$FLASHLINK_CI_CACHE"
    if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720)" ]; then
        apt-get -q -o DPkg::Lock::Timeout=900 update >/dev/null
        touch "$stamp"
    fi
}

# free_port [STEP...] : a TCP port P on 127.0.0.1 such that P and every P+STEP are free.
free_port() {
    "$HOST_PYTHON" - "$@" <<'PY'
import random, socket, sys
steps = [0] + [int(s) for s in sys.argv[1:]]
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
for _ in range(500):
    p = random.randrange(20000, 30000)
    if all(free(p + s) for s in steps):
        print(p)
        break
else:
    sys.exit("no free port found")
PY
}

# random_hex BYTES : a fresh secret as 2*BYTES hex digits (passwords, access keys).
random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# wait_until SECONDS CMD... : retry CMD every 0.2 s until it succeeds or SECONDS pass.
wait_until() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

# env_set RUNDIR KEY VALUE : record a client setting for the tests (and for `source`).
# Written to env.partial and renamed to env only once start succeeded, so a refused second
# start never wipes the settings of the instance that is running.
env_set() { printf '%s=%q\n' "$2" "$3" >>"$1/env.partial"; }

# stop_pidfile FILE [SECONDS] : TERM the process, KILL it after SECONDS (default 10).
stop_pidfile() {
    local f=$1 limit=${2:-10} pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local end=$((SECONDS + limit))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

ensure_ci_user() {
    id -u "$CI_USER" >/dev/null 2>&1 || useradd -m -u "$CI_UID" -s /bin/bash "$CI_USER"
}

ensure_work_dir() {
    mkdir -p "$FLASHLINK_CI_WORK/work"
    chmod 1777 "$FLASHLINK_CI_WORK/work"
}

# debootstrap_root SUITE DIR [EXTRA_ARGS...] : a minbase Debian root, cached, policy-rc.d denying starts.
debootstrap_root() {
    local suite=$1 dir=$2; shift 2
    [ -f "$dir/.flashlink-ready" ] && return 0
    apt_install debootstrap
    rm -rf --one-file-system "$dir"   # never into a proc/sys a failed run left mounted
    mkdir -p "$(dirname "$dir")"
    debootstrap --variant=minbase "$@" "$suite" "$dir" http://deb.debian.org/debian >"$dir.debootstrap.log" 2>&1 \
        || die "debootstrap $suite failed, see $dir.debootstrap.log"
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod +x "$dir/usr/sbin/policy-rc.d"
    touch "$dir/.flashlink-ready"
}

# main_dispatch "$@" : call the install/check/start/stop function the script defines.
main_dispatch() {
    local cmd=${1:-}
    case "$cmd" in
        install) shift; local t0=$SECONDS; svc_install "$@"; log "installed in $((SECONDS - t0)) s" ;;
        check) shift; svc_check "$@" ;;
        start|stop)
            shift
            [ $# -eq 1 ] || die "usage: $0 $cmd RUNDIR"
            mkdir -p "$1"
            if [ "$cmd" = start ]; then
                rm -f "$1/env.partial"
                local t0=$SECONDS
                svc_start "$1"
                touch "$1/env.partial"
                mv "$1/env.partial" "$1/env"
                log "started in $((SECONDS - t0)) s; settings in $1/env"
            else
                svc_stop "$1"
            fi
            ;;
        *) die "usage: $0 install|check|start RUNDIR|stop RUNDIR" ;;
    esac
}
