#!/usr/bin/env bash
# bubblewrap from Debian (0.8.0 on bookworm: not setuid, it uses unprivileged user namespaces, so it
# works for root and for the CI user alike) and the test image directory to run it on.
# No daemon: `start` checks that a command runs in the image and writes BWRAP, TEST_IMAGE_DIR.
source "$(dirname "$0")/image.sh"
SVC=bwrap

svc_install() {
    bash "$CI_DIR/services/image.sh" install
    if ! command -v bwrap >/dev/null; then
        apt_update_once
        apt_install bubblewrap
    fi
}

svc_check() {
    command -v bwrap >/dev/null || { echo "bwrap is not installed"; return 1; }
    bash "$CI_DIR/services/image.sh" check
}

svc_start() {
    local rundir=$1 out
    out=$(bwrap --ro-bind "$ROOTFS" / --proc /proc --dev /dev --unshare-all /bin/echo ok 2>&1) \
        || die "bwrap could not run the test image $ROOTFS: $out"
    [ "$out" = ok ] || die "bwrap in $ROOTFS printed '$out', expected 'ok'"
    env_set "$rundir" BWRAP "$(command -v bwrap)"
    env_set "$rundir" TEST_IMAGE_DIR "$ROOTFS"
}

svc_stop() {
    :
}

main_dispatch "$@"
