#!/usr/bin/env bash
# HTCondor 23.x (Debian trixie) as a single-host minicondor pool on 127.0.0.1.
# See shared/reference/real-services-batch.md §2-3 for every fact and pitfall behind this script.
SVC=htcondor
source "$(dirname "$0")/../lib.sh"

ROOT=$FLASHLINK_CI_CACHE/htcondor/root
# The checkout this script belongs to (CI clones it anywhere) and its venv: production jobs run
# this installation's `flashlink` from a read-only bind at the same path, as HEP sites provide
# software from CVMFS, so the pool's root must see them where the plugin's Pods say they are.
REPO=$(cd "$CI_DIR/.." && pwd -P)
VENV_DIR=${FLASHLINK_VENV:-$REPO/.venv}
# Bump when the install recipe changes, so a cached root is rebuilt.
RECIPE=2
STAMP=$ROOT/.flashlink-htcondor-$RECIPE

in_root() { chroot "$ROOT" "$@"; }

svc_install() {
    [ -f "$STAMP" ] && { log "cached root $ROOT is ready"; return 0; }
    local t0=$SECONDS
    apt_update_once
    ensure_ci_user
    ensure_work_dir
    debootstrap_root trixie "$ROOT"
    log "trixie minbase root ready after $((SECONDS - t0)) s"
    local t1=$SECONDS
    cp /etc/hosts "$ROOT/etc/hosts"
    # Recommends pull in ~70 packages a pool does not need (measured 123 pkgs with, see reference).
    in_root apt-get -q -o DPkg::Lock::Timeout=900 update >/dev/null
    # bubblewrap and rootless podman (with runc: crun fails on this kernel's hybrid cgroups) so
    # jobs can run containers, as on a worker node of an HTCondor CE.
    in_root apt-get -q -y --no-install-recommends install htcondor bubblewrap podman runc uidmap \
        >/dev/null || die "apt-get install htcondor bubblewrap podman inside $ROOT failed"
    in_root apt-get clean
    mkdir -p "$ROOT/etc/containers/containers.conf.d"
    printf '[engine]\nruntime = "runc"\n' >"$ROOT/etc/containers/containers.conf.d/50-flashlink-runc.conf"
    log "htcondor, bubblewrap and podman installed in the root in $((SECONDS - t1)) s"
    # Jobs run as the submitting user; the same uid/gid must exist in the root.
    local gid
    gid=$(id -g "$CI_USER")
    in_root getent group "$gid" >/dev/null || in_root groupadd -g "$gid" "$CI_USER"
    in_root id -u "$CI_USER" >/dev/null 2>&1 \
        || in_root useradd -m -u "$CI_UID" -g "$gid" -s /bin/bash "$CI_USER"
    # Rootless podman in jobs maps the container's uids through these ranges.
    local f
    for f in subuid subgid; do
        grep -q "^$CI_USER:" "$ROOT/etc/$f" 2>/dev/null || echo "$CI_USER:100000:65536" >>"$ROOT/etc/$f"
    done
    in_root condor_version | head -n 1 >&2
    touch "$STAMP"
    log "htcondor root built in $((SECONDS - t0)) s ($(du -sm "$ROOT" | cut -f1) MB)"
}

svc_check() {
    [ -f "$STAMP" ] || { echo "no HTCondor root at $ROOT"; return 1; }
    id -u "$CI_USER" >/dev/null 2>&1 || { echo "user $CI_USER is missing"; return 1; }
    return 0
}

# The pool's settings. Everything a run writes lives under RUNDIR (visible at the same path in the
# root) or on the tmpfs mounted on the root's /run, so two runs never share state.
write_pool_config() {
    local rundir=$1 port=$2
    cat >"$rundir/condor_config" <<EOF
include : /etc/condor/condor_config
use ROLE: CentralManager
use ROLE: Submit
use ROLE: Execute
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
# Shared port on a free port: another pool (or a developer's condor) may hold 9618.
COLLECTOR_HOST = 127.0.0.1:$port
SHARED_PORT_PORT = $port
# Else the daemons also advertise and use this VM's IPv6 address (fd00::2).
ENABLE_IPV6 = False
UID_DOMAIN = localdomain
FILESYSTEM_DOMAIN = localdomain
TRUST_UID_DOMAIN = True
LOG = $rundir/log
SPOOL = $rundir/spool
EXECUTE = $rundir/execute
CRED_STORE_DIR = $rundir/cred_dir
RUN = /run/condor
LOCK = /run/condor/lock
SEC_PASSWORD_DIRECTORY = $rundir/passwords.d
SEC_TOKEN_SYSTEM_DIRECTORY = $rundir/tokens.d
# FS for the daemons and in-root tools; IDTOKENS for the host-side 25.x wheel, whose FS
# authentication fails against 23.x ("Directory name doesn't match server's network address").
SEC_DEFAULT_AUTHENTICATION = REQUIRED
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS
SEC_DEFAULT_INTEGRITY = REQUIRED
SEC_DEFAULT_ENCRYPTION = OPTIONAL
ALLOW_DAEMON = condor@\$(UID_DOMAIN) root@\$(UID_DOMAIN)
ALLOW_NEGOTIATOR = condor@\$(UID_DOMAIN) root@\$(UID_DOMAIN)
ALLOW_ADMINISTRATOR = root@\$(UID_DOMAIN) condor@\$(UID_DOMAIN)
ALLOW_WRITE = *
ALLOW_READ = *
# Short cycles: a job then starts 2-9 s after submission instead of ~1 min.
SCHEDD_INTERVAL = 5
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_CYCLE_DELAY = 5
STARTER_UPDATE_INTERVAL = 5
SHADOW_QUEUE_UPDATE_INTERVAL = 10
UPDATE_INTERVAL = 5
RUNBENCHMARKS = 0
# No systemd and cgroup v1 hybrid here: let the starter track jobs without a cgroup.
BASE_CGROUP =
EOF
    # What the host-side htcondor2 bindings read (CONDOR_CONFIG). A client reads its token only
    # from a file owned by its own uid ("read_secure_file: file must be owned by uid 0, was uid
    # 2000" for root reading flashci's file), so each local user gets its own copy of the
    # $CI_USER token under tokens/<user name>; $(USERNAME) is the uid running the client.
    cat >"$rundir/client_config" <<EOF
COLLECTOR_HOST = 127.0.0.1:$port
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
ENABLE_IPV6 = False
UID_DOMAIN = localdomain
FILESYSTEM_DOMAIN = localdomain
SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS
SEC_TOKEN_DIRECTORY = $rundir/tokens/\$(USERNAME)
EOF
}

# The read-only software binds of inner.sh: the checkout and the venv (when it lives elsewhere),
# unless a bind above already shows them (under the work or cache directory, or /tmp).
software_binds() {
    local dir real
    for dir in "$REPO" "$VENV_DIR"; do
        real=$(realpath -m "$dir")
        case "$real/" in
            "$FLASHLINK_CI_WORK"/*|"$FLASHLINK_CI_CACHE"/*|/tmp/*|"$REPO"/?*) continue ;;
        esac
        [ -d "$real" ] || continue
        printf 'mkdir -p "$R"%q\nmount --bind %q "$R"%q\nmount -o remount,bind,ro "$R"%q\n' \
            "$real" "$real" "$real" "$real"
    done
}

# Runs inside `unshare --mount`: bind mounts, pivot_root into the root, then condor_master.
# pivot_root rather than chroot: the kernel refuses CLONE_NEWUSER to a chrooted process, so
# containers in jobs (bwrap, rootless podman) need a real root switch (reference §3).
write_inner() {
    local rundir=$1
    cat >"$rundir/inner.sh" <<EOF
set -euo pipefail
R=$(printf %q "$ROOT")
# The root must be a mount point, else the starter's own mount unshare fails with EINVAL.
mount --bind "\$R" "\$R"
mount -t proc proc "\$R/proc"
# rbind, not a fresh sysfs: runc needs the cgroup mounts under /sys/fs/cgroup.
mount --rbind /sys "\$R/sys"
mount --rbind /dev "\$R/dev"
mount --bind /tmp "\$R/tmp"
mount -t tmpfs -o mode=755 tmpfs "\$R/run"
mkdir -p "\$R$FLASHLINK_CI_WORK" "\$R$FLASHLINK_CI_CACHE"
mount --bind $(printf %q "$FLASHLINK_CI_WORK") "\$R$FLASHLINK_CI_WORK"
mount --bind $(printf %q "$FLASHLINK_CI_CACHE") "\$R$FLASHLINK_CI_CACHE"
mount -o remount,bind,ro "\$R$FLASHLINK_CI_CACHE"
$(software_binds)
cd "\$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
mkdir -p /run/condor/lock /run/lock
chown -R condor:condor /run/condor
echo \$\$ >$(printf %q "$rundir/condor_master.pid")
exec /usr/sbin/condor_master -f
EOF
}

# in_pool RUNDIR CMD... : run CMD inside the pool's mount namespace and root, with its config.
in_pool() {
    local rundir=$1; shift
    nsenter -t "$(cat "$rundir/condor_master.pid")" -m -r \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CONDOR_CONFIG="$rundir/condor_config" "$@"
}

slot_advertised() {
    in_pool "$1" condor_status -af Name | grep -q '^slot' \
        && in_pool "$1" condor_status -schedd -af Name | grep -q .
}

svc_start() {
    local rundir port t0=$SECONDS
    rundir=$(realpath "$1")
    case "$rundir/" in
        "$FLASHLINK_CI_WORK"/*) ;;
        *) die "RUNDIR must be under $FLASHLINK_CI_WORK (the only host dir the pool sees at the same path), got $rundir" ;;
    esac
    svc_check >/dev/null || die "$(svc_check); run: ./dev setup htcondor"
    [ ! -f "$rundir/condor_master.pid" ] || ! kill -0 "$(cat "$rundir/condor_master.pid")" 2>/dev/null \
        || die "a pool already runs from $rundir (pid $(cat "$rundir/condor_master.pid")); stop it first"
    ensure_work_dir
    cp /etc/hosts "$ROOT/etc/hosts"
    port=$(free_port)
    local cuid cgid
    cuid=$(in_root id -u condor)
    cgid=$(in_root id -g condor)
    rm -rf "$rundir"/{log,spool,execute,cred_dir,passwords.d,tokens.d,tokens}
    mkdir -p "$rundir"/{log,spool,execute,cred_dir,passwords.d,tokens.d,tokens}
    # The startd chmods EXECUTE as the condor user: it must own it.
    chown "$cuid:$cgid" "$rundir/log" "$rundir/spool" "$rundir/execute"
    chmod 700 "$rundir/passwords.d" "$rundir/tokens.d" "$rundir/cred_dir"
    write_pool_config "$rundir" "$port"
    write_inner "$rundir"
    rm -f "$rundir/condor_master.pid"
    # A start that fails half-way leaves nothing running.
    # shellcheck disable=SC2064
    trap "svc_stop $(printf %q "$rundir")" EXIT
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 CONDOR_CONFIG="$rundir/condor_config" \
        setsid unshare --mount --propagation private bash "$rundir/inner.sh" \
        >"$rundir/master.out" 2>&1 </dev/null &
    wait_until 20 test -s "$rundir/condor_master.pid" \
        || { cat "$rundir/master.out" >&2; die "condor_master did not start; see $rundir/master.out"; }
    readlink "/proc/$(cat "$rundir/condor_master.pid")/ns/mnt" >"$rundir/mntns"
    # The collector makes the pool's IDTOKENS signing key on its first start.
    wait_until 30 test -s "$rundir/passwords.d/POOL" \
        || die "no signing key $rundir/passwords.d/POOL after 30 s; see $rundir/log/CollectorLog"
    # Both root (the flashlink plugin in CI) and $CI_USER submit as $CI_USER@localdomain.
    local user
    for user in root "$CI_USER"; do
        install -d -m 700 -o "$user" "$rundir/tokens/$user"
        in_pool "$rundir" condor_token_create -identity "$CI_USER@localdomain" \
            >"$rundir/tokens/$user/token" || die "condor_token_create failed"
        chown "$user:" "$rundir/tokens/$user/token"
        chmod 600 "$rundir/tokens/$user/token"
    done
    wait_until 60 slot_advertised "$rundir" \
        || die "no slot or schedd advertised after 60 s; logs in $rundir/log"
    env_set "$rundir" CONDOR_CONFIG "$rundir/client_config"
    env_set "$rundir" HTCONDOR_COLLECTOR "127.0.0.1:$port"
    env_set "$rundir" HTCONDOR_ROOT "$ROOT"
    env_set "$rundir" HTCONDOR_SUBMIT_USER "$CI_USER"
    env_set "$rundir" HTCONDOR_IDENTITY "$CI_USER@localdomain"
    env_set "$rundir" HTCONDOR_TOKENS "$rundir/tokens"
    env_set "$rundir" HTCONDOR_POOL_CONFIG "$rundir/condor_config"
    trap - EXIT
    log "pool on 127.0.0.1:$port up in $((SECONDS - t0)) s (condor_master pid $(cat "$rundir/condor_master.pid"))"
}

# pids_in_ns NS : every process whose mount namespace is NS (the pool's daemons and jobs).
pids_in_ns() {
    local ns=$1 p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
    done
    return 0
}

ns_empty() { [ -z "$(pids_in_ns "$1")" ]; }

svc_stop() {
    local rundir=$1 ns="" pid
    [ -f "$rundir/mntns" ] && ns=$(cat "$rundir/mntns")
    if [ -f "$rundir/condor_master.pid" ]; then
        pid=$(cat "$rundir/condor_master.pid")
        # A stop racing a start that had not yet recorded the namespace: read it from the master.
        if [ -z "$ns" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = condor_master ]; then
            ns=$(readlink "/proc/$pid/ns/mnt")
        fi
        # A stale pidfile whose PID now belongs to another process: that process is not ours.
        if [ -n "$ns" ] && [ "$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" != "$ns" ]; then
            rm -f "$rundir/condor_master.pid"
        fi
    fi
    # condor_master stops its daemons on TERM (2-3 s measured) and exits last.
    stop_pidfile "$rundir/condor_master.pid" 30
    if [ -n "$ns" ]; then
        # Anything still in the pool's namespace (a stuck starter, a job) goes by its own PID;
        # with the last process gone the kernel drops the namespace and every mount made in it,
        # so nothing is ever mounted in the host's namespace.
        local left
        left=$(pids_in_ns "$ns")
        if [ -n "$left" ]; then
            log "killing leftovers of the pool: $left"
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null || true
            wait_until 10 ns_empty "$ns" || die "processes still in namespace $ns: $(pids_in_ns "$ns")"
        fi
        rm -f "$rundir/mntns"
    fi
    return 0
}

main_dispatch "$@"
