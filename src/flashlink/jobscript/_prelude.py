"""The fixed bash library at the top of every job script (the Pod-specific part calls it).

Written for bash >= 4.4 (empty arrays under ``set -u``); every function takes its data as
arguments, never as code. The job directory layout it maintains (see :mod:`.state`)::

    job.log                      what the script itself did, with timestamps
    pod.json                     {"phase": Running|Succeeded|Failed, ...}
    containers/NAME/log          the container's stdout and stderr
    containers/NAME/state.json   waiting / running / terminated, replaced atomically
    volumes/NAME.log             output of a fuse.vk.io mount script

Signals: SIGTERM, SIGINT or SIGHUP to the script (scancel, condor_rm, Ctrl-C) stops the pod:
each running container gets SIGTERM, then SIGKILL after the grace period, and every state is
still written. activeDeadlineSeconds does the same with reason DeadlineExceeded.
"""

from __future__ import annotations

__all__ = ["PRELUDE"]

PRELUDE = r"""
fl_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

fl_log() {
    local line
    line="$(fl_now) $*"
    printf '%s\n' "$line" >>"$FL_JOB_DIR/job.log"
    printf 'flashlink: %s\n' "$line" >&2
}

# fl_json TEXT: TEXT as a JSON string (messages may hold paths; names and reasons are ours).
fl_json() {
    local LC_ALL=C s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    s=${s//[$'\001'-$'\037']/?}
    printf '"%s"' "$s"
}

fl_write_json() {  # FILE BODY: replace FILE atomically, so a reader never sees half a record
    printf '{%s}\n' "$2" >"$1.tmp" && mv -f -- "$1.tmp" "$1"
}

fl_state() {  # NAME FIELDS
    fl_write_json "$FL_JOB_DIR/containers/$1/state.json" "\"name\":\"$1\",$2"
}

fl_waiting() {  # NAME REASON
    fl_state "$1" "\"state\":\"waiting\",\"reason\":\"$2\""
}

fl_running() {  # NAME STARTED
    fl_state "$1" "\"state\":\"running\",\"startedAt\":\"$2\""
}

fl_terminated() {  # NAME EXITCODE REASON STARTED FINISHED [MESSAGE]
    local fields="\"state\":\"terminated\",\"exitCode\":$2,\"reason\":\"$3\""
    [ -n "$4" ] && fields+=",\"startedAt\":\"$4\""
    fields+=",\"finishedAt\":\"$5\""
    [ -n "${6:-}" ] && fields+=",\"message\":$(fl_json "$6")"
    fl_state "$1" "$fields"
}

fl_is_terminated() {  # NAME
    local f=$FL_JOB_DIR/containers/$1/state.json record
    [ -e "$f" ] || return 1
    record=$(<"$f")
    [[ $record == *'"state":"terminated"'* ]]
}

fl_pod_state() {  # PHASE [REASON EXITCODE]
    local body="\"uid\":$FL_POD_UID_JSON,\"phase\":\"$1\",\"startedAt\":\"$FL_STARTED\""
    [ $# -ge 3 ] && body+=",\"reason\":\"$2\",\"exitCode\":$3,\"finishedAt\":\"$(fl_now)\""
    fl_write_json "$FL_JOB_DIR/pod.json" "$body"
}

fl_stopping() { [ -e "$FL_SCRATCH/stop" ]; }

fl_stop_reason() {
    local reason=Terminated
    [ -e "$FL_SCRATCH/stop" ] && read -r reason <"$FL_SCRATCH/stop"
    printf '%s' "${reason:-Terminated}"
}

# fl_wait PID: PID's exit status, even when a trapped signal interrupts the wait. bash returns
# >128 from an interrupted wait and keeps the child's real status for the next wait.
fl_wait() {
    local rc prev=''
    while :; do
        FL_WAKE=0
        wait "$1" 2>/dev/null
        rc=$?
        if [ -n "$prev" ] && [ "$rc" = 127 ] && ! kill -0 "$1" 2>/dev/null; then
            return "$prev"
        fi
        if [ "$FL_WAKE" = 1 ] && [ "$rc" -gt 128 ]; then
            prev=$rc
            continue
        fi
        return "$rc"
    done
}

# --- one container, in its own subshell --------------------------------------------------

fl_spawn() {  # FUNCTION: start a container's function in the background; $! is its subshell
    (
        FL_CHILD='' FL_KILLER='' FL_TERM_PENDING=0
        trap fl_child_signal TERM
        "$1"
    ) &
}

fl_child_signal() {
    FL_WAKE=1
    if [ -z "$FL_CHILD" ]; then FL_TERM_PENDING=1; else fl_stop_child; fi
}

fl_stop_child() {  # SIGTERM now, SIGKILL after the grace period unless it has exited
    [ -n "$FL_KILLER" ] && return 0
    (
        s=''
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$FL_GRACE" &
        s=$!
        wait "$s" && fl_runtime_kill "$FL_CHILD"
    ) &
    FL_KILLER=$!
    fl_runtime_term "$FL_CHILD"
}

fl_stamp() {  # prefix each line with an RFC 3339 UTC timestamp (bash builtins: no fork per line)
    local line t
    local -x TZ=UTC0
    while IFS= read -r line || [ -n "$line" ]; do
        t=$EPOCHREALTIME
        printf '%(%Y-%m-%dT%H:%M:%S)T.%sZ %s\n' "${t%[.,]*}" "${t#*[.,]}" "$line"
    done
}

# fl_run NAME COMMAND...: run the container's runtime command, its output in the container's
# log, recording running before and terminated after.
fl_run() {
    local name=$1 log started finished rc reason stamper='' fifo
    shift
    log=$FL_JOB_DIR/containers/$name/log
    if fl_stopping; then
        fl_terminated "$name" 143 "$(fl_stop_reason)" "" "$(fl_now)" \
            "the pod was stopped before this container started"
        return 143
    fi
    started=$(fl_now)
    fl_running "$name" "$started"
    if [ "$FL_TIMESTAMPS" = 1 ]; then
        fifo=$FL_SCRATCH/log.$name
        rm -f -- "$fifo" && mkfifo -m 600 -- "$fifo"
        fl_stamp <"$fifo" >>"$log" &
        stamper=$!
        "$@" </dev/null >"$fifo" 2>&1 &
    else
        "$@" </dev/null >>"$log" 2>&1 &
    fi
    FL_CHILD=$!
    [ "$FL_TERM_PENDING" = 1 ] && fl_stop_child
    fl_wait "$FL_CHILD"
    rc=$?
    [ -n "$FL_KILLER" ] && kill -TERM "$FL_KILLER" 2>/dev/null
    [ -n "$stamper" ] && fl_wait "$stamper"
    finished=$(fl_now)
    if [ "$rc" = 0 ]; then
        reason=Completed
    elif fl_stopping; then
        reason=$(fl_stop_reason)
    else
        reason=Error
    fi
    fl_terminated "$name" "$rc" "$reason" "$started" "$finished"
    return "$rc"
}

fl_cannot_run() {  # NAME REASON MESSAGE: the container could not be started at all
    fl_log "container $1: $3"
    fl_terminated "$1" 128 "$2" "" "$(fl_now)" "$3"
    return 128
}

# --- volumes ---------------------------------------------------------------------------------

fl_dir() {  # MODE DIR
    mkdir -p -- "$2" && chmod "$1" -- "$2" || { fl_log "cannot create directory $2"; return 1; }
}

fl_file() {  # DIR RELPATH MODE BASE64: one file of a ConfigMap/Secret/projected volume
    local f=$1/$2
    mkdir -p -- "${f%/*}" && printf '%s' "$4" | base64 -d >"$f" && chmod "$3" -- "$f" \
        || { fl_log "cannot write $f"; return 1; }
}

fl_require_dir() {  # DIR WHAT: an existing directory (stat also triggers an automount)
    [ -d "$1" ] && return 0
    fl_log "$2: $1 is not a directory on this node"
    return 1
}

fl_host_path() {  # TYPE PATH: the checks of a hostPath volume's type
    case $1 in
        DirectoryOrCreate) mkdir -p -- "$2" ;;
        Directory) [ -d "$2" ] ;;
        FileOrCreate) mkdir -p -- "${2%/*}" && { [ -e "$2" ] || : >>"$2"; } ;;
        File) [ -f "$2" ] ;;
        Socket) [ -S "$2" ] ;;
        CharDevice) [ -c "$2" ] ;;
        BlockDevice) [ -b "$2" ] ;;
        *) true ;;
    esac || { fl_log "hostPath $2 is not a usable $1"; return 1; }
}

# fl_subpath VAR BASE SUB CREATE: set VAR to BASE/SUB, made if CREATE=1 and missing, refused
# if it resolves outside BASE (a symlink written by an earlier container, CVE-2017-1002101).
fl_subpath() {
    local base path
    base=$(realpath -e -- "$2") || { fl_log "volume path $2 is missing"; return 1; }
    if [ "$4" = 1 ] && [ ! -e "$2/$3" ] && [ ! -L "$2/$3" ]; then
        mkdir -p -- "$2/$3" || return 1
    fi
    path=$(realpath -e -- "$2/$3") || { fl_log "subPath $3 does not exist in $2"; return 1; }
    case $path in
        "$base" | "$base"/*) printf -v "$1" '%s' "$path" ;;
        *) fl_log "subPath $3 resolves to $path, outside its volume"; return 1 ;;
    esac
}

# fl_fuse_mount MOUNTPOINT VOLUME SCRIPT: run a fuse.vk.io script (in its own session, so the
# whole tree can be stopped) with MOUNT_POINT set; wait until the mount is live.
fl_fuse_mount() {
    local mp=$1 log=$FL_JOB_DIR/volumes/$2.log pid i=0 limit rc
    mkdir -p -- "$mp" "$FL_JOB_DIR/volumes" || return 1
    MOUNT_POINT=$mp setsid bash -c "$3" </dev/null >>"$log" 2>&1 &
    pid=$!
    FL_FUSE_MOUNTS+=("$mp")
    FL_FUSE_PIDS+=("$pid")
    limit=$(( ${FL_FUSE_TIMEOUT%.*} * 10 + 1 ))
    until mountpoint -q -- "$mp"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            rc=$?
            mountpoint -q -- "$mp" && break
            fl_log "fuse mount script of volume $2 exited ($rc) without mounting;" \
                "see volumes/$2.log"
            return 1
        fi
        i=$((i + 1))
        if [ "$i" -gt "$limit" ]; then
            fl_log "fuse volume $2 was not mounted after ${FL_FUSE_TIMEOUT}s; see volumes/$2.log"
            return 1
        fi
        sleep 0.1
    done
    fl_log "fuse volume $2 mounted"
}

fl_fuse_unmount_all() {
    local k mp pid i mounted
    for k in "${!FL_FUSE_MOUNTS[@]}"; do
        mp=${FL_FUSE_MOUNTS[k]} pid=${FL_FUSE_PIDS[k]} mounted=0
        if mountpoint -q -- "$mp"; then
            mounted=1
            fusermount3 -u "$mp" 2>/dev/null || fusermount -u "$mp" 2>/dev/null \
                || umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null \
                || fl_log "could not unmount $mp"
        fi
        # A mount helper in the foreground (rclone mount, juicefs mount) flushes and exits once
        # unmounted: give it that time before stopping what is left of its process group.
        for ((i = 0; mounted && i < 100; i++)); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM -- "-$pid" 2>/dev/null
    done
}

# --- the pod ---------------------------------------------------------------------------------

fl_main_signal() {  # REASON: stop every running container (first reason wins)
    local pid
    FL_WAKE=1
    fl_stopping || printf '%s\n' "$1" >"$FL_SCRATCH/stop"
    for pid in "${FL_ACTIVE[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
}

fl_watchdog() {  # SECONDS: stop the pod with DeadlineExceeded once they have passed
    (
        s=''
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$1" &
        s=$!
        wait "$s" || exit 0
        fl_stopping || printf 'DeadlineExceeded\n' >"$FL_SCRATCH/stop"
        kill -TERM "$FL_MAIN_PID"
    ) &
    FL_WATCHDOG=$!
}

fl_fail_rest() {  # EXITCODE REASON MESSAGE NAME...: containers that will never run
    local code=$1 reason=$2 message=$3 now
    shift 3
    now=$(fl_now)
    for name in "$@"; do
        fl_terminated "$name" "$code" "$reason" "" "$now" "$message"
    done
}

fl_reap() {  # NAME RC: a subshell killed before it could record its end still gets a state
    fl_is_terminated "$1" && return 0
    local reason=Error
    fl_stopping && reason=$(fl_stop_reason)
    fl_terminated "$1" "$2" "$reason" "" "$(fl_now)" "the container's supervisor was killed"
}

fl_finish() {  # PHASE REASON EXITCODE
    fl_pod_state "$1" "$2" "$3"
    fl_log "pod ${1,,}: $2 (exit code $3)"
    FL_EXIT=$3
}

fl_cleanup() {
    local rc=$?
    trap '' TERM INT HUP
    [ -n "$FL_WATCHDOG" ] && kill -TERM "$FL_WATCHDOG" 2>/dev/null
    fl_runtime_cleanup
    fl_fuse_unmount_all
    [ -n "$FL_MEMORY_DIR" ] && rm -rf --one-file-system -- "$FL_MEMORY_DIR"
    [ -n "$FL_SCRATCH" ] && rm -rf --one-file-system -- "$FL_SCRATCH" 2>/dev/null
    if [ -n "$FL_SCRATCH" ] && [ -e "$FL_SCRATCH" ]; then
        fl_log "left $FL_SCRATCH: a mount in it is still active"
    fi
    exit "$rc"
}

fl_prepare() {
    local name
    FL_STARTED=$(fl_now)
    if ! mkdir -p -- "$FL_JOB_DIR/containers"; then
        echo "flashlink: cannot create the job directory $FL_JOB_DIR" >&2
        return 1
    fi
    : >"$FL_JOB_DIR/job.log"
    for name in "${FL_INIT_NAMES[@]}" "${FL_MAIN_NAMES[@]}"; do
        mkdir -p -- "$FL_JOB_DIR/containers/$name" || return 1
        : >"$FL_JOB_DIR/containers/$name/log" || return 1
        if [ ${#FL_INIT_NAMES[@]} -gt 0 ]; then
            fl_waiting "$name" PodInitializing
        else
            fl_waiting "$name" ContainerCreating
        fi
    done
    if ! mkdir -p -- "$FL_SCRATCH_AREA" \
        || ! FL_SCRATCH=$(mktemp -d -- "$FL_SCRATCH_AREA/flashlink.XXXXXXXX"); then
        fl_log "cannot create a scratch directory in $FL_SCRATCH_AREA (set FLASHLINK_SCRATCH)"
        return 1
    fi
    if [ "$FL_NEEDS_MEMORY" = 1 ]; then
        if [ -d "$FL_MEMORY_AREA" ] && [ -w "$FL_MEMORY_AREA" ]; then
            FL_MEMORY_DIR=$(mktemp -d -- "$FL_MEMORY_AREA/flashlink.XXXXXXXX") || return 1
            FL_MEMORY=$FL_MEMORY_DIR
        else
            fl_log "$FL_MEMORY_AREA is not writable: emptyDir medium Memory falls back to disk"
            FL_MEMORY=$FL_SCRATCH/memory
        fi
    fi
    # shellcheck disable=SC2053  # the pattern is meant to match as a glob
    if [[ $FL_SCRATCH$FL_MEMORY == $FL_FORBIDDEN_PATTERN ]]; then
        fl_log "scratch path $FL_SCRATCH matches $FL_FORBIDDEN_PATTERN, which" \
            "$FL_RUNTIME_NAME binds cannot carry; set FLASHLINK_SCRATCH"
        return 1
    fi
    fl_pod_state Running
    fl_log "pod $FL_POD_NAMESPACE/$FL_POD_NAME ($FL_POD_UID) started in $FL_JOB_DIR" \
        "(scratch $FL_SCRATCH, pid $$)"
}

fl_main() {
    local i rc pid first=0 pids=() stopped
    if ! fl_prepare; then
        fl_fail_rest 128 ContainerCannotRun "the job could not prepare its directories" \
            "${FL_INIT_NAMES[@]}" "${FL_MAIN_NAMES[@]}"
        FL_EXIT=128
        return
    fi
    trap 'fl_main_signal Terminated' TERM INT HUP
    [ -n "$FL_DEADLINE" ] && fl_watchdog "$FL_DEADLINE"
    if ! command -v -- "$FL_RUNTIME" >/dev/null; then
        fl_fail_rest 128 ContainerCannotRun "runtime $FL_RUNTIME not found on $(hostname)" \
            "${FL_INIT_NAMES[@]}" "${FL_MAIN_NAMES[@]}"
        fl_finish Failed ContainerCannotRun 128
        return
    fi
    if ! fl_setup_volumes; then
        fl_fail_rest 128 FailedMount "a volume could not be set up; see job.log" \
            "${FL_INIT_NAMES[@]}" "${FL_MAIN_NAMES[@]}"
        fl_finish Failed FailedMount 128
        return
    fi
    for i in "${!FL_INIT_NAMES[@]}"; do
        if fl_stopping; then
            stopped=$(fl_stop_reason)
            fl_fail_rest 143 "$stopped" "the pod was stopped before this container started" \
                "${FL_INIT_NAMES[@]:i}" "${FL_MAIN_NAMES[@]}"
            fl_finish Failed "$stopped" 143
            return
        fi
        fl_spawn "${FL_INIT_FUNCS[i]}"
        pid=$!
        FL_ACTIVE=("$pid")
        fl_stopping && kill -TERM "$pid" 2>/dev/null
        fl_wait "$pid"
        rc=$?
        FL_ACTIVE=()
        fl_reap "${FL_INIT_NAMES[i]}" "$rc"
        if [ "$rc" != 0 ]; then
            fl_fail_rest "$rc" InitContainerFailed \
                "init container ${FL_INIT_NAMES[i]} failed with exit code $rc" \
                "${FL_INIT_NAMES[@]:i+1}" "${FL_MAIN_NAMES[@]}"
            if fl_stopping; then
                fl_finish Failed "$(fl_stop_reason)" "$rc"
            else
                fl_finish Failed InitContainerFailed "$rc"
            fi
            return
        fi
    done
    for i in "${!FL_MAIN_NAMES[@]}"; do
        fl_spawn "${FL_MAIN_FUNCS[i]}"
        pids+=("$!")
        FL_ACTIVE+=("$!")
    done
    fl_stopping && fl_main_signal Terminated
    for i in "${!pids[@]}"; do
        fl_wait "${pids[i]}"
        rc=$?
        fl_reap "${FL_MAIN_NAMES[i]}" "$rc"
        [ "$rc" != 0 ] && [ "$first" = 0 ] && first=$rc
    done
    FL_ACTIVE=()
    if fl_stopping; then
        fl_finish Failed "$(fl_stop_reason)" "$(( first == 0 ? 143 : first ))"
    elif [ "$first" = 0 ]; then
        fl_finish Succeeded Completed 0
    else
        fl_finish Failed Error "$first"
    fi
}
"""
