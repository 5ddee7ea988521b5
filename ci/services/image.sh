#!/usr/bin/env bash
# The tiny test image: a busybox-static root filesystem directory that apptainer.sh turns into a
# SIF, podman.sh imports as localhost/flashlink-test:latest and bwrap runs as it is.
# A helper, not a fixture service: `image.sh install` builds it, `image.sh check` tells if it is there.
#
#   $FLASHLINK_CI_CACHE/image/rootfs      the root filesystem (about 2 MB)
#   $FLASHLINK_CI_CACHE/image/rootfs.id   hash of what it was built from; consumers re-import when it changes
#   $FLASHLINK_CI_CACHE/image/lock        flock: exclusive while building, shared while a consumer reads
#
# What the image holds, so tests can tell the runtimes' semantics apart:
#   /entrypoint.sh         prints "entrypoint:" followed by its arguments (Podman ENTRYPOINT; the
#                          SIF runscript runs it with "$@", or with "default-arg" when given none)
#   FLASHLINK_TEST_IMAGE=1 set by the image (Podman ENV, SIF environment; bwrap has no image env)
#   /etc/passwd            root and flashci (uid 2000, the CI user of ci/lib.sh)
#   /dev /proc /sys /tmp   empty: a fakeroot/userns build cannot create device nodes
#   every file owned by root: an unprivileged `apptainer build --fakeroot` maps only uid 0 and
#                          fails on any other owner ("failed to change uid and gids", measured)
SVC=image
source "$(dirname "$0")/../lib.sh"

IMAGE_DIR=$FLASHLINK_CI_CACHE/image
ROOTFS=$IMAGE_DIR/rootfs
IMAGE_LOCK=$IMAGE_DIR/lock
BUSYBOX_PKG=busybox-static
# Read by the consumers (apptainer.sh, podman.sh) so all three runtimes see the same metadata.
IMAGE_ENTRYPOINT=/entrypoint.sh
IMAGE_DEFAULT_ARG=default-arg
IMAGE_ENV_KEY=FLASHLINK_TEST_IMAGE
IMAGE_ENV_VALUE=1

# The id changes when this recipe or the busybox binary changes, and only then.
image_wanted_id() {
    { sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
      sha256sum /bin/busybox | cut -d' ' -f1; } | sha256sum | cut -c1-16
}

image_build() {
    local new=$IMAGE_DIR/rootfs.new applet
    rm -rf "$new"
    mkdir -p "$new"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var/tmp,dev,proc,sys,tmp}
    chmod 1777 "$new/tmp" "$new/var/tmp"
    chmod 700 "$new/root"
    cp /bin/busybox "$new/bin/busybox"
    # --list-full prints each applet with its install dir (bin/sh, usr/bin/env, ...).
    while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        ln -sf /bin/busybox "$new/$applet"
    done < <(/bin/busybox --list-full)
    [ -x "$new/bin/sh" ] || die "busybox --list-full gave no bin/sh; is $BUSYBOX_PKG broken?"
    cat >"$new/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
$CI_USER:x:$CI_UID:$CI_UID:flashlink CI user:/home/$CI_USER:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$new/etc/group" <<EOF
root:x:0:
$CI_USER:x:$CI_UID:
nogroup:x:65534:
EOF
    printf '127.0.0.1 localhost\n' >"$new/etc/hosts"
    : >"$new/etc/resolv.conf"
    printf '#!/bin/sh\necho entrypoint: "$@"\n' >"$new$IMAGE_ENTRYPOINT"
    chmod 755 "$new$IMAGE_ENTRYPOINT"
    image_wanted_id >"$new/.flashlink-image-id"
    rm -rf "$ROOTFS"
    mv "$new" "$ROOTFS"
    cp "$ROOTFS/.flashlink-image-id" "$IMAGE_DIR/rootfs.id"
}

svc_install() {
    mkdir -p "$IMAGE_DIR"
    # apptainer.sh and podman.sh both call this, possibly at the same time.
    exec 9>"$IMAGE_LOCK"
    flock 9
    if [ ! -x /bin/busybox ] || ! dpkg -s "$BUSYBOX_PKG" >/dev/null 2>&1; then
        apt_update_once
        apt_install "$BUSYBOX_PKG"
    fi
    if [ -x "$ROOTFS/bin/sh" ] && [ "$(cat "$IMAGE_DIR/rootfs.id" 2>/dev/null)" = "$(image_wanted_id)" ]; then
        log "test image rootfs up to date: $ROOTFS"
    else
        local t0=$SECONDS
        image_build
        log "built test image rootfs $ROOTFS ($(du -sh "$ROOTFS" | cut -f1)) in $((SECONDS - t0)) s"
    fi
    exec 9>&-
}

svc_check() {
    [ -x "$ROOTFS/bin/sh" ] && [ -f "$IMAGE_DIR/rootfs.id" ] \
        || { echo "test image rootfs missing at $ROOTFS (run: bash ci/services/image.sh install)"; return 1; }
}

svc_start() { die "the test image is not a service; use 'image.sh install' (apptainer/podman/bwrap use it)"; }
svc_stop() { svc_start; }

# Sourced by apptainer.sh and podman.sh for the paths and metadata above; run, it dispatches.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main_dispatch "$@"
fi
