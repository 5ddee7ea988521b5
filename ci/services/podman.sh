#!/usr/bin/env bash
# Podman from Debian with runc, and the test image imported as localhost/flashlink-test:latest
# for root and for the unprivileged CI user. No daemon: `start` only checks and writes the settings.
#
# Facts behind the choices (measured on these machines, see real-services-batch.md section 3):
# - the kernel runs hybrid cgroups (v1 controllers + an almost empty cgroup2 at /unified); crun
#   refuses that ("cgroups in hybrid mode not supported"), runc works -> runtime = runc.
# - rootless podman (the CI user) works with --network=none or --network=host; the default
#   slirp4netns fails on /dev/net/tun. Root may use the default bridge network.
# Settings written by start: PODMAN (the command), TEST_IMAGE_PODMAN, TEST_IMAGE_DIR.
source "$(dirname "$0")/image.sh"
SVC=podman

PODMAN_TEST_IMAGE=localhost/flashlink-test:latest
# A drop-in, so Debian's /usr/share/containers/containers.conf and any admin file stay as they are.
RUNC_CONF=/etc/containers/containers.conf.d/50-flashlink-runc.conf
ROOTFS_LABEL=org.flashlink.rootfs-id

# as_user USER CMD... : run CMD as USER (root: directly), from / so no private cwd is needed.
as_user() {
    local user=$1; shift
    if [ "$user" = root ]; then
        "$@"
    else
        (cd / && runuser -u "$user" -- "$@")
    fi
}

ensure_subids() {
    # Rootless podman maps container uids onto the user's subordinate range (newuidmap).
    local f
    mkdir -p "$FLASHLINK_CI_CACHE"
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        ( flock 8
          grep -q "^$CI_USER:" "$f" || echo "$CI_USER:100000:65536" >>"$f"
        ) 8>"$FLASHLINK_CI_CACHE/.subid.lock"
    done
}

# podman_import USER : import the rootfs into USER's image store unless it is already current.
podman_import() {
    local user=$1 want have old t0=$SECONDS
    want=$(cat "$IMAGE_DIR/rootfs.id")
    have=$(as_user "$user" podman image inspect --format "{{index .Labels \"$ROOTFS_LABEL\"}}" \
        "$PODMAN_TEST_IMAGE" 2>/dev/null || true)
    [ "$have" = "$want" ] && return 0
    old=$(as_user "$user" podman image inspect --format '{{.Id}}' "$PODMAN_TEST_IMAGE" 2>/dev/null || true)
    # Shared lock: image.sh must not rebuild the rootfs while tar reads it.
    flock -s "$IMAGE_LOCK" tar -C "$ROOTFS" --numeric-owner -c . \
        | as_user "$user" podman import -q \
            --change "ENTRYPOINT [\"$IMAGE_ENTRYPOINT\"]" \
            --change "CMD [\"$IMAGE_DEFAULT_ARG\"]" \
            --change "ENV $IMAGE_ENV_KEY=$IMAGE_ENV_VALUE" \
            --change "WORKDIR /" \
            --change "LABEL $ROOTFS_LABEL=$want" \
            - "$PODMAN_TEST_IMAGE" >/dev/null \
        || die "podman import of $ROOTFS as $user failed"
    # The previous import lost its tag: remove it (only it, other images are not ours to prune).
    [ -z "$old" ] || as_user "$user" podman rmi "$old" >/dev/null 2>&1 || true
    log "imported $PODMAN_TEST_IMAGE for $user in $((SECONDS - t0)) s"
}

svc_install() {
    local t0=$SECONDS
    bash "$CI_DIR/services/image.sh" install
    # One install at a time (two sessions would import twice and remove each other's image).
    mkdir -p "$FLASHLINK_CI_CACHE/podman"
    exec 8>"$FLASHLINK_CI_CACHE/podman/install.lock"
    flock 8
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v newuidmap >/dev/null \
        || ! command -v fusermount3 >/dev/null; then
        apt_update_once
        # uidmap: newuidmap/newgidmap for rootless; bubblewrap shares the apt run (bwrap.sh).
        # fuse3: fusermount for the FUSE mounts of job scripts (rclone mount2, JuiceFS; tests/jobscript)
        apt_install podman runc bubblewrap uidmap fuse3
        log "apt podman runc bubblewrap uidmap fuse3: $((SECONDS - t0)) s"
    fi
    mkdir -p "$(dirname "$RUNC_CONF")"
    printf '# flashlink CI: crun fails on this hybrid-cgroup kernel, runc works.\n[engine]\nruntime = "runc"\n' \
        >"$RUNC_CONF"
    ensure_ci_user
    ensure_subids
    local runtime
    runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}')
    [ "$runtime" = runc ] || die "podman still uses OCI runtime '$runtime' after writing $RUNC_CONF"
    podman_import root
    podman_import "$CI_USER"
}

svc_check() {
    command -v podman >/dev/null || { echo "podman is not installed"; return 1; }
    command -v runc >/dev/null || { echo "runc is not installed (crun fails on this kernel)"; return 1; }
    bash "$CI_DIR/services/image.sh" check || return 1
    [ -f "$RUNC_CONF" ] || { echo "$RUNC_CONF missing: podman would use crun"; return 1; }
}

svc_start() {
    local rundir=$1 out
    # Cheap when current (one inspect each); re-imports after the rootfs changed.
    podman_import root
    podman_import "$CI_USER"
    out=$(podman run --rm --network=none "$PODMAN_TEST_IMAGE" 2>&1) \
        || die "podman run $PODMAN_TEST_IMAGE failed: $out"
    [ "$out" = "entrypoint: $IMAGE_DEFAULT_ARG" ] || die "podman run $PODMAN_TEST_IMAGE printed '$out'"
    env_set "$rundir" PODMAN "$(command -v podman)"
    env_set "$rundir" TEST_IMAGE_PODMAN "$PODMAN_TEST_IMAGE"
    env_set "$rundir" TEST_IMAGE_DIR "$ROOTFS"
}

svc_stop() {
    # Nothing runs between commands (podman has no daemon); tests use --rm.
    :
}

main_dispatch "$@"
