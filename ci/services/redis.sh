#!/usr/bin/env bash
# A real Redis server (Debian) on a free port of 127.0.0.1, no persistence, password-protected.
source "$(dirname "$0")/../lib.sh"
SVC=redis

svc_install() {
    apt_update_once
    apt_install redis-server redis-tools
}

svc_check() {
    command -v redis-server >/dev/null || { echo "redis-server not found"; return 1; }
}

svc_start() {
    local run=$1 port pass
    run=$(cd "$run" && pwd)
    port=$(free_port)
    pass=$(random_hex 18)
    umask 077
    printf 'bind 127.0.0.1\nport %s\ndir %s\nsave ""\nappendonly no\nrequirepass %s\npidfile %s\nlogfile %s\n' \
        "$port" "$run" "$pass" "$run/redis-server.pid" "$run/redis.log" >"$run/redis.conf"
    umask 022
    # Daemons must not hold the caller's stdout: the fixture waits for EOF on it.
    redis-server "$run/redis.conf" >/dev/null 2>&1 &
    echo $! >"$run/redis.pid"
    wait_until 20 redis-cli -h 127.0.0.1 -p "$port" --no-auth-warning -a "$pass" ping \
        || die "redis did not answer, see $run/redis.log"
    env_set "$run" REDIS_URL "redis://:$pass@127.0.0.1:$port/0"
}

svc_stop() {
    stop_pidfile "$1/redis.pid" 10
}

main_dispatch "$@"
