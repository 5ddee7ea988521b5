#!/usr/bin/env bash
# Apptainer for the tests: Debian sid's apptainer in a debootstrap root, run through a wrapper
# command that behaves like an `apptainer` binary on the host. No daemon: `start` checks that the
# wrapper answers and writes APPTAINER (the wrapper), TEST_IMAGE_SIF and TEST_IMAGE_DIR.
#
# Facts behind the choices (measured here, see real-services-storage.md section 4):
# - only Debian sid packages apptainer (1.4.5); it needs glibc 2.38, bookworm has 2.36, so it runs
#   in its own root. Inside a chroot it aborts ("weak chrooted environment"): the wrapper enters
#   the root with unshare --mount + pivot_root instead.
# - root here lacks CAP_SYS_RESOURCE, so the setuid/root flow of exec/run fails ("Requesting
#   capability set ... while permitted capability set is 0x1fffeffffff"); exec/run/shell/instance
#   work with --userns, which the wrapper adds. `build` from a directory needs nothing extra;
#   def-file builds need --fakeroot (root has a subuid range in the sid root for that).
# - sid's Release files are "expired" against this machine's clock (Nov 2026): apt in the root
#   runs with Acquire::Check-Valid-Until=false.
#
# Layout under $FLASHLINK_CI_CACHE/apptainer:
#   root/                  the sid root (debootstrap minbase + SID_PACKAGES)
#   bin/apptainer          the wrapper; put it first on PATH or call it by path
#   libexec/enter          builds the mount view and pivot_roots into it (see enter_text below
#                          for exactly which host paths are visible inside)
#   newroot/               where each call mounts its view (in its own namespace; empty on the host)
#   images/flashlink-test.sif (+ .id)   the test image as a SIF, rebuilt when the rootfs changes
source "$(dirname "$0")/image.sh"
SVC=apptainer

APPTAINER_HOME=$FLASHLINK_CI_CACHE/apptainer
SID_ROOT=$APPTAINER_HOME/root
WRAPPER=$APPTAINER_HOME/bin/apptainer
ENTER=$APPTAINER_HOME/libexec/enter
NEWROOT=$APPTAINER_HOME/newroot
SIF=$APPTAINER_HOME/images/flashlink-test.sif
SID_PACKAGES=(apptainer squashfuse fuse2fs e2fsprogs gocryptfs)

sid_apt_install() {
    local stamp=$SID_ROOT/.flashlink-apptainer want
    want=${SID_PACKAGES[*]}
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    local t0=$SECONDS
    cp /etc/resolv.conf "$SID_ROOT/etc/resolv.conf"
    # A private mount namespace: the /proc, /dev, /sys mounts vanish when apt is done.
    unshare --mount --propagation private -- bash -euc '
        R=$1; shift
        mount -t proc proc "$R/proc"
        mount --rbind /sys "$R/sys"
        mount --rbind /dev "$R/dev"
        mount -t tmpfs tmpfs "$R/tmp"
        chroot "$R" apt-get -q -o Acquire::Check-Valid-Until=false update
        chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
            -o Acquire::Check-Valid-Until=false install --no-install-recommends "$@"
        chroot "$R" apt-get clean
    ' sid-apt "$SID_ROOT" "${SID_PACKAGES[@]}" >"$APPTAINER_HOME/apt.log" 2>&1 \
        || { tail -n 20 "$APPTAINER_HOME/apt.log" >&2; die "apt-get install ${SID_PACKAGES[*]} in the sid root failed (log: $APPTAINER_HOME/apt.log)"; }
    echo "$want" >"$stamp"
    log "apt ${SID_PACKAGES[*]} in the sid root: $((SECONDS - t0)) s ($(chroot "$SID_ROOT" dpkg-query -W -f '${Version}' apptainer))"
}

sid_configure() {
    # `apptainer build` needs /etc/hosts.
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$SID_ROOT/etc/hosts"
    # --fakeroot: root gets a subordinate range (newuidmap works for the real root). The CI user
    # must NOT have one: in its user namespace the root-owned newuidmap shows as nobody and
    # apptainer stops ("newuidmap must be owned by the root user"); without an entry it falls back
    # to a root-mapped namespace, which builds def files over root-owned images (measured).
    local f
    for f in subuid subgid; do
        printf 'root:100000:65536\n' >"$SID_ROOT/etc/$f"
    done
    # Mount points for the wrapper's binds that a non-root caller cannot add to the root itself.
    local d rest
    for d in /work "$FLASHLINK_CI_WORK" "$FLASHLINK_CI_CACHE"; do
        rest=${d#/}
        mkdir -p "$SID_ROOT/${rest%%/*}"
    done
    # Helpers (mksquashfs, squashfuse, newuidmap) from the sid root only: by default apptainer
    # searches the caller's PATH first, and host directories on it are visible inside.
    grep -q '^binary path = ' "$SID_ROOT/etc/apptainer/apptainer.conf" \
        || echo 'binary path = /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            >>"$SID_ROOT/etc/apptainer/apptainer.conf"
    # Apptainer looks the caller up in the root's passwd/group (the wrapper adds other callers
    # per call; the CI user is known, so add it once here).
    grep -q "^$CI_USER:" "$SID_ROOT/etc/passwd" || getent passwd "$CI_USER" >>"$SID_ROOT/etc/passwd"
    grep -q "^$CI_USER:" "$SID_ROOT/etc/group" || getent group "$CI_USER" >>"$SID_ROOT/etc/group"
}

write_wrapper() {
    mkdir -p "$APPTAINER_HOME/bin" "$APPTAINER_HOME/libexec" "$NEWROOT"
    local tmp
    tmp=$(mktemp "$APPTAINER_HOME/bin/.apptainer.XXXXXX")
    local enter_q
    enter_q=$(printf '%q' "$ENTER")
    cat >"$tmp" <<EOF
#!/bin/bash
# flashlink CI: Debian sid's apptainer, entered with unshare + pivot_root (written by
# ci/services/apptainer.sh; see $ENTER for what is visible inside).
if [ "\$(id -u)" = 0 ]; then
    exec unshare --mount --propagation private -- $enter_q "\$@"
fi
# Not root: a user namespace owning the mount namespace (the caller is uid 0 in it only while the
# view is built; enter maps it back to the caller's own uid before apptainer runs).
exec unshare --user --map-root-user --mount --propagation private -- $enter_q "\$@"
EOF
    chmod 755 "$tmp"
    mv "$tmp" "$WRAPPER"
    tmp=$(mktemp "$APPTAINER_HOME/libexec/.enter.XXXXXX")
    { printf '#!/bin/bash\nSID_ROOT=%q\nNEWROOT=%q\nCI_WORK=%q\nCI_CACHE=%q\n' \
        "$SID_ROOT" "$NEWROOT" "$FLASHLINK_CI_WORK" "$FLASHLINK_CI_CACHE"
      enter_text; } >"$tmp"
    chmod 755 "$tmp"
    mv "$tmp" "$ENTER"
}

# The body of libexec/enter. It runs in a fresh mount namespace (and, for a non-root caller, a
# user namespace where it is uid 0), builds the view on a bind of the sid root and pivot_roots
# into it. Cost: about 0.12 s per call (26 mounts), measured; apptainer exec itself takes 0.22 s.
enter_text() {
    cat <<'EOF'
# What is visible inside (the same path as on the host, so a caller's paths mean the same):
#   the sid root's own system (/usr /etc /var/lib/apptainer ...), read-write for root;
#   /dev /proc /sys from the host (recursive binds), a fresh tmpfs on /run;
#   host directories, each bound at its own path when it exists and is searchable:
#     /tmp /var/tmp /home /work /root $HOME $TMPDIR $APPTAINER_TMPDIR $APPTAINER_CACHEDIR,
#     the CI work and cache dirs, the current directory, every path in
#     $FLASHLINK_APPTAINER_BIND (colon-separated), the sources in $APPTAINER_BIND/$APPTAINER_BINDPATH,
#     and, for every absolute path in the arguments (also inside --opt=a,b:c values), the path
#     itself when it is a directory, else its parent directory when that exists
#     (so `build /x/out.sif /y/rootfs` and `-B /data:/mnt` just work);
#   never the host's /, /bin, /boot, /dev, /etc, /lib*, /proc, /run, /sbin, /sys, /usr, /var,
#   /var/lib, /var/lib/apptainer or anything below the system ones: they would hide the sid
#   root's apptainer. Such paths (e.g. `exec img cat /etc/os-release`) are left to the root.
set -euo pipefail
shopt -s dotglob nullglob
die() { echo "flashlink apptainer wrapper: $*" >&2; exit 255; }
caller_path=${PATH:-}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# util-linux 2.42 (Debian sid/forky) moved pivot_root to util-linux-extra.
command -v pivot_root >/dev/null || die "pivot_root not found (util-linux, or util-linux-extra on newer Debian): install it to use this wrapper"
cwd=$(pwd -P 2>/dev/null || pwd)
# The wrapper of a non-root caller ran us as uid 0 of a new user namespace: the real uid is the
# owner of that namespace, read from uid_map ("0 <host uid> 1").
read -r _ host_uid _ </proc/self/uid_map
read -r _ host_gid _ </proc/self/gid_map
in_userns=0
[ "$host_uid" != 0 ] && in_userns=1
# Refuse to run in the caller's mount namespace. The wrapper execs us through `unshare --mount`
# (no fork), so our parent is the caller and its namespace must differ from ours. Run directly,
# pivot_root below would move the root of every process of the machine into the sid root
# (it happened once during development; recovering took a remount of the root device).
# (A non-root caller runs us in its own new user namespace, where pivot_root cannot reach the
# initial mount namespace and the parent's namespace cannot be read: nothing to check then.)
own_ns=$(readlink /proc/self/ns/mnt)
parent_ns=$(readlink "/proc/$PPID/ns/mnt" 2>/dev/null || true)
if [ "$in_userns" = 0 ] && { [ -z "$parent_ns" ] || [ "$own_ns" = "$parent_ns" ]; }; then
    die "$0 must run in a private mount namespace (it is started by the apptainer wrapper next to it, through unshare --mount); refusing to pivot_root the caller's namespace"
fi

protected() {
    case $1 in
        / | /bin | /bin/* | /boot | /boot/* | /dev | /dev/* | /etc | /etc/* | /lib | /lib/* | \
        /lib32 | /lib32/* | /lib64 | /lib64/* | /libx32 | /libx32/* | /proc | /proc/* | /run | \
        /run/* | /sbin | /sbin/* | /sys | /sys/* | /usr | /usr/* | /var | /var/lib | \
        /var/lib/apptainer | /var/lib/apptainer/*) return 0 ;;
    esac
    return 1
}

cands=()
add_dir() {
    local p=$1
    [[ $p == /* ]] || return 0
    p=$(realpath -ms -- "$p")
    [ -d "$p" ] && [ -x "$p" ] || return 0
    protected "$p" && return 0
    cands+=("$p")
}
add_arg_path() {
    local p=$1
    [[ $p == /* ]] || return 0
    if [ -d "$p" ]; then add_dir "$p"
    elif [ -d "$(dirname -- "$p")" ]; then add_dir "$(dirname -- "$p")"
    fi
}

add_dir "$CI_WORK"; add_dir "$CI_CACHE"
for p in /tmp /var/tmp /home /work /root "${HOME:-}" "${TMPDIR:-}" "${APPTAINER_TMPDIR:-}" \
         "${APPTAINER_CACHEDIR:-}" "$cwd"; do
    add_dir "$p"
done
IFS=: read -r -a extra <<<"${FLASHLINK_APPTAINER_BIND:-}"
for p in "${extra[@]}"; do add_dir "$p"; done
IFS=, read -r -a extra <<<"${APPTAINER_BIND:-},${APPTAINER_BINDPATH:-}"
for p in "${extra[@]}"; do add_arg_path "${p%%:*}"; done
for arg in "$@"; do
    [[ $arg == -*=* ]] && arg=${arg#*=}
    IFS=',:' read -r -a extra <<<"$arg"
    for p in "${extra[@]}"; do add_arg_path "$p"; done
done

# Keep the outermost of nested candidates (a recursive bind of /tmp already shows /tmp/x).
targets=()
while IFS= read -r p; do
    keep=1
    for t in "${targets[@]}"; do
        [[ $p == "$t" || $p == "$t"/* ]] && { keep=0; break; }
    done
    [ $keep = 1 ] && targets+=("$p")
done < <(printf '%s\n' "${cands[@]}" | sort -u)

is_target() { local t; for t in "${targets[@]}"; do [ "$1" = "$t" ] && return 0; done; return 1; }
is_ancestor() { local t; for t in "${targets[@]}"; do [[ $t == "$1"/* ]] && return 0; done; return 1; }

N=$NEWROOT
# The root of the view is a bind of the whole sid root, not a tmpfs with /usr bound into it:
# apptainer derives its install prefix from /proc/self/exe, which its inner mount namespace
# shows relative to the root of the mount holding the binary ("/lib/x86_64-linux-gnu/..." from a
# bind of /usr, measured), and then looks for /lib/var/lib/apptainer and fails.
mount --bind "$SID_ROOT" "$N"

# unfold REL: cover $N/REL with a tmpfs that shows $SID_ROOT/REL entry by entry (binds and
# symlinks), so mount points for targets below REL are made on the tmpfs, never in the cached root.
unfold() {
    local rel=$1 e name p
    mount -t tmpfs -o mode=755 flashlink-apptainer "$N$rel"
    [ -d "$SID_ROOT$rel" ] && chmod --reference="$SID_ROOT$rel" "$N$rel"
    for e in "$SID_ROOT$rel"/*; do
        name=${e##*/}
        p=$rel/$name
        is_target "$p" && continue
        if [ -L "$e" ]; then
            ln -s "$(readlink "$e")" "$N$p"
        elif [ -d "$e" ]; then
            mkdir "$N$p"
            if is_ancestor "$p"; then unfold "$p"; else mount --bind "$e" "$N$p"; fi
        else
            : >"$N$p"
            mount --bind "$e" "$N$p"
        fi
    done
}

for d in dev proc sys; do
    mount --rbind "/$d" "$N/$d"
done
mount -t tmpfs -o mode=755 run "$N/run"
mkdir -m 1777 "$N/run/lock"

bound=()
for t in "${targets[@]}"; do
    rest=${t#/}
    top=/${rest%%/*}
    if [ ! -e "$SID_ROOT$top" ] && [ ! -L "$SID_ROOT$top" ]; then
        # A top-level directory the sid root lacks: only root may add the (empty) mount point.
        if [ "$in_userns" = 1 ] || ! mkdir "$SID_ROOT$top" 2>/dev/null; then
            echo "flashlink apptainer wrapper: not binding $t: $top is missing in the sid root and only root can add it (apptainer.sh install adds /work and the CI dirs)" >&2
            continue
        fi
    fi
    if [ -L "$SID_ROOT$top" ]; then
        echo "flashlink apptainer wrapper: not binding $t: $top is a symlink in the sid root" >&2
        continue
    fi
    bound+=("$t")
done
targets=("${bound[@]}")
# Unfold each top-level directory that holds a target below it (/var for /var/tmp, /srv for
# /srv/flashlink-ci); a top-level target itself (/tmp, /home, /work) is bound over the sid one.
for e in "$SID_ROOT"/*; do
    p=/${e##*/}
    [ -d "$e" ] && [ ! -L "$e" ] && ! is_target "$p" && is_ancestor "$p" && unfold "$p"
done
for t in "${targets[@]}"; do
    if [ -L "$N${t%/*}" ]; then
        echo "flashlink apptainer wrapper: not binding $t: a parent is a symlink in the sid root" >&2
        continue
    fi
    mkdir -p "$N$t"
    mount --rbind "$t" "$N$t"
    # A bind of a directory that holds $NEWROOT copies the half-built view: drop that copy.
    if [[ $NEWROOT == "$t"/* ]] && mountpoint -q "$N$NEWROOT"; then
        umount -l "$N$NEWROOT"
    fi
done

# Apptainer looks the caller up in the root's passwd/group: add the host's entries when missing.
for db in passwd group; do
    id_=$host_uid
    [ $db = group ] && id_=$host_gid
    if ! awk -F: -v i="$id_" '$3 == i { f = 1 } END { exit !f }' "$SID_ROOT/etc/$db"; then
        { cat "$SID_ROOT/etc/$db"; getent "$db" "$id_" || true; } >"$N/run/.flashlink-$db"
        mount --bind "$N/run/.flashlink-$db" "$N/etc/$db"
    fi
done

# pivot_root(".", "."): the old root ends up stacked on the new one and is detached at once
# (pivot_root(2), NOTES), so no put_old directory has to exist in the sid root.
cd "$N"
pivot_root . .
umount -l .
cd /
cd "$cwd" 2>/dev/null || die "the current directory $cwd is not visible in the sid root (it is a system path there); run from another directory"

export PATH="${caller_path:+$caller_path:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
[ -n "${SHLVL:-}" ] && export SHLVL=$((SHLVL - 1))

# exec/run/shell/instance/test need --userns here (no CAP_SYS_RESOURCE for the setuid flow).
args=("$@")
i=0
while [ $i -lt ${#args[@]} ] && [[ ${args[$i]} == -* ]]; do i=$((i + 1)); done
sub=${args[$i]:-}
case $sub in
    exec | run | shell | test | instance)
        pos=$((i + 1))
        if [ "$sub" = instance ]; then
            [ "${args[$pos]:-}" = start ] || [ "${args[$pos]:-}" = run ] || pos=-1
            pos=$((pos + 1))
        fi
        if [ $pos -gt 0 ]; then
            add=1
            for a in "${args[@]:$pos}"; do
                case $a in --userns | -u | --fakeroot | -f) add=0 ;; esac
            done
            [ $add = 1 ] && args=("${args[@]:0:$pos}" --userns "${args[@]:$pos}")
        fi
        ;;
esac

if [ $in_userns = 1 ]; then
    # Back to the caller's own uid/gid (a nested user namespace), so apptainer runs unprivileged
    # as the caller: what it writes to bound host directories belongs to the caller.
    exec unshare --user --map-user="$host_uid" --map-group="$host_gid" -- /usr/bin/apptainer "${args[@]}"
fi
exec /usr/bin/apptainer "${args[@]}"
EOF
}

# build_sif: the test image as a SIF, from the rootfs plus apptainer's metadata (runscript, env).
build_sif() {
    local want have staging t0=$SECONDS runscript environment
    runscript=$(printf '#!/bin/sh\nif [ $# -eq 0 ]; then set -- %s; fi\nexec %s "$@"' \
        "$IMAGE_DEFAULT_ARG" "$IMAGE_ENTRYPOINT")
    environment="export $IMAGE_ENV_KEY=$IMAGE_ENV_VALUE"
    want=$(cat "$IMAGE_DIR/rootfs.id")-$(printf '%s\n' "$runscript" "$environment" | sha256sum | cut -c1-8)
    have=$(cat "$SIF.id" 2>/dev/null || true)
    [ -f "$SIF" ] && [ "$have" = "$want" ] && return 0
    mkdir -p "$(dirname "$SIF")"
    staging=$(mktemp -d "$APPTAINER_HOME/images/.staging.XXXXXX")
    flock -s "$IMAGE_LOCK" cp -a "$ROOTFS/." "$staging/"
    mkdir -p "$staging/.singularity.d/env"
    printf '%s\n' "$runscript" >"$staging/.singularity.d/runscript"
    chmod 755 "$staging/.singularity.d/runscript"
    printf '%s\n' "$environment" >"$staging/.singularity.d/env/90-environment.sh"
    chmod 644 "$staging/.singularity.d/env/90-environment.sh"
    "$WRAPPER" -q build --force "$SIF.new" "$staging" >"$APPTAINER_HOME/build.log" 2>&1 \
        || { rm -rf "$staging"; tail -n 20 "$APPTAINER_HOME/build.log" >&2; die "apptainer build of the test SIF failed"; }
    rm -rf "$staging"
    mv "$SIF.new" "$SIF"
    echo "$want" >"$SIF.id"
    log "built $SIF ($(du -h "$SIF" | cut -f1)) in $((SECONDS - t0)) s"
}

# Apptainer mounts a SIF with squashfuse when it runs unprivileged (always here: --userns).
# Debian's udev makes /dev/fuse 0666; this machine has no udev and leaves it 0600 (measured), so
# the CI user got "fuse: failed to open /dev/fuse: Permission denied". Do what udev would do.
ensure_fuse_access() {
    [ -c /dev/fuse ] || die "/dev/fuse is missing: the kernel needs the fuse module for apptainer"
    chmod 0666 /dev/fuse
}

svc_install() {
    local t0=$SECONDS
    bash "$CI_DIR/services/image.sh" install
    # One install at a time: a second one would debootstrap over the first or clobber its SIF.
    mkdir -p "$APPTAINER_HOME"
    exec 8>"$APPTAINER_HOME/install.lock"
    flock 8
    ensure_ci_user
    # An interrupted debootstrap leaves /proc and /sys mounted in the root, and debootstrap_root
    # then removes an unfinished root with rm -rf: detach anything mounted below it first.
    local m
    { findmnt -rn -o TARGET | grep -F "$SID_ROOT/" || true; } | sort -r | while read -r m; do
        umount -l "$m" && log "detached leftover mount $m"
    done
    debootstrap_root sid "$SID_ROOT"
    log "sid root ready: $((SECONDS - t0)) s"
    sid_apt_install
    sid_configure
    write_wrapper
    ensure_fuse_access
    build_sif
    chmod 755 "$APPTAINER_HOME" "$APPTAINER_HOME/images"
}

svc_check() {
    [ -x "$SID_ROOT/usr/bin/apptainer" ] || { echo "apptainer is not installed in the sid root $SID_ROOT"; return 1; }
    [ -x "$WRAPPER" ] || { echo "the apptainer wrapper $WRAPPER is missing"; return 1; }
    [ -f "$SIF" ] || { echo "the test SIF $SIF is missing"; return 1; }
    bash "$CI_DIR/services/image.sh" check
}

svc_start() {
    local rundir=$1 out
    # The wrapper is regenerated so a changed recipe takes effect without a new install.
    write_wrapper
    ensure_fuse_access
    out=$("$WRAPPER" version 2>&1) || die "'$WRAPPER version' failed: $out"
    log "apptainer $out"
    env_set "$rundir" APPTAINER "$WRAPPER"
    env_set "$rundir" TEST_IMAGE_SIF "$SIF"
    env_set "$rundir" TEST_IMAGE_DIR "$ROOTFS"
}

svc_stop() {
    # Every call of the wrapper lives in its own mount namespace: nothing to unmount here.
    :
}

main_dispatch "$@"
