#!/usr/bin/env bash
# The production payload image for the tests: Debian bookworm minbase + python3 as a SIF.
# Production jobs run `flashlink sim ...` inside a container; no registry is reachable here, so
# this image brings only the interpreter (bookworm's /usr/bin/python3.11, the one the project
# venv is made from) and the job binds the project's venv and sources read-only at their own
# paths, the way HEP sites provide software from a read-only CVMFS bind. Sites use the
# self-contained image of images/payload.def / images/Containerfile instead (docs/production.md).
#
#   $FLASHLINK_CI_CACHE/payload/rootfs          the bookworm root (about 110 MB)
#   $FLASHLINK_CI_CACHE/payload/payload.sif     the SIF built from it by the apptainer wrapper
#   $FLASHLINK_CI_CACHE/payload/lock            flock: one install at a time
# CI cost: debootstrap minbase + python3 and a squashfs of the root, about 1-2 min cold, run in
# parallel with the other installs by ./dev setup; nothing on a warm cache.
SVC=payload
source "$(dirname "$0")/../lib.sh"

PAYLOAD_DIR=$FLASHLINK_CI_CACHE/payload
ROOTFS=$PAYLOAD_DIR/rootfs
SIF=$PAYLOAD_DIR/payload.sif
WRAPPER=$FLASHLINK_CI_CACHE/apptainer/bin/apptainer
# libstdc++6/libgomp1: C++ wheels (pythia8mc, onnxruntime, torch) link them from the system.
PACKAGES=python3,libstdc++6,libgomp1,ca-certificates

svc_install() {
    local t0=$SECONDS
    mkdir -p "$PAYLOAD_DIR"
    exec 7>"$PAYLOAD_DIR/lock"
    flock 7
    local m
    { findmnt -rn -o TARGET | grep -F "$ROOTFS/" || true; } | sort -r | while read -r m; do
        umount -l "$m" && log "detached leftover mount $m"
    done
    debootstrap_root bookworm "$ROOTFS" --include="$PACKAGES"
    log "bookworm root ready: $((SECONDS - t0)) s"
    # After the debootstrap, so ./dev setup runs both at once; apptainer.sh serializes itself.
    bash "$CI_DIR/services/apptainer.sh" install
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$ROOTFS/etc/hosts"
    : >"$ROOTFS/etc/resolv.conf"
    local want
    want=$(printf '%s\n' "$PACKAGES" "$(sha256sum "${BASH_SOURCE[0]}")" | sha256sum | cut -c1-16)
    if [ ! -f "$SIF" ] || [ "$(cat "$SIF.id" 2>/dev/null)" != "$want" ]; then
        local s0=$SECONDS
        "$WRAPPER" -q build --force "$SIF.new" "$ROOTFS" >"$PAYLOAD_DIR/build.log" 2>&1 \
            || { tail -n 20 "$PAYLOAD_DIR/build.log" >&2; die "apptainer build of the payload SIF failed"; }
        mv "$SIF.new" "$SIF"
        echo "$want" >"$SIF.id"
        log "built $SIF ($(du -h "$SIF" | cut -f1)) in $((SECONDS - s0)) s"
    fi
    chmod 755 "$PAYLOAD_DIR"
    chmod 644 "$SIF"
}

svc_check() {
    [ -x "$ROOTFS/usr/bin/python3" ] || { echo "the payload root $ROOTFS has no python3"; return 1; }
    [ -f "$SIF" ] || { echo "the payload SIF $SIF is missing"; return 1; }
    bash "$CI_DIR/services/apptainer.sh" check
}

svc_start() {
    local rundir=$1
    env_set "$rundir" PAYLOAD_SIF "$SIF"
    env_set "$rundir" PAYLOAD_ROOTFS "$ROOTFS"
    env_set "$rundir" APPTAINER "$WRAPPER"
}

svc_stop() {
    :
}

main_dispatch "$@"
