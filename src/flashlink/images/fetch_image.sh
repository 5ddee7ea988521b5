# flashlink_fetch_image URL TOKEN REFERENCE CACHE_DIR [WAIT_SECONDS]
#
# The job side of the flashlink image cache, in bash + curl + coreutils (no Python on the node).
# Prints the path of the SIF in CACHE_DIR, named <sha256>.sif. Under an flock per reference, so
# the jobs of one node download an image once: ask for /meta (waiting through 202 answers as
# Retry-After says), and download only when CACHE_DIR has no file with that sha256 yet; the
# download goes to a temporary file, is checked with sha256sum, and renamed into place.
# Returns non-zero (message on stderr) when the service cannot provide the image, so the caller
# can fall back to docker://. The X-Token is sent to the service only, never to the object store.
flashlink_fetch_image() {
    local url=${1%/} token=$2 ref=$3 dir=$4 wait=${5:-600}
    local deadline=$((SECONDS + wait)) lock_name hdr tmp code answer sha retry location lockfd
    mkdir -p -- "$dir" || return 1
    lock_name=$(printf '%s' "$ref" | sha256sum | cut -c1-24)
    hdr=$(mktemp "$dir/.hdr.XXXXXX") || return 1
    exec {lockfd}>>"$dir/.$lock_name.lock" || { rm -f -- "$hdr"; return 1; }
    flock "$lockfd"
    while :; do
        code=$(curl -sS -o /dev/null -D "$hdr" -w '%{http_code}' --max-time 60 \
            -H "X-Token: $token" -- "$url/v1/images/$ref/meta") || code=000
        [ "$code" = 200 ] && break
        if [ "$code" != 202 ] || [ "$SECONDS" -ge "$deadline" ]; then
            echo "flashlink_fetch_image: $ref: HTTP $code from $url/v1/images/$ref/meta" >&2
            rm -f -- "$hdr"; exec {lockfd}>&-
            return 1
        fi
        retry=$(tr -d '\r' <"$hdr" | sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9][0-9]*\)$/\1/p')
        sleep "${retry:-2}"
    done
    sha=$(tr -d '\r' <"$hdr" | sed -n 's/^[Xx]-[Ii]mage-[Ss]ha256: *\([0-9a-f]\{64\}\)$/\1/p')
    if [ -z "$sha" ]; then
        echo "flashlink_fetch_image: $ref: no X-Image-Sha256 in the answer of $url" >&2
        rm -f -- "$hdr"; exec {lockfd}>&-
        return 1
    fi
    if [ ! -f "$dir/$sha.sif" ]; then
        tmp=$(mktemp "$dir/.$sha.XXXXXX")
        answer=$(curl -sS -o "$tmp" -w '%{http_code} %{redirect_url}' --max-time 3600 \
            -H "X-Token: $token" -- "$url/v1/images/$ref") || answer=000
        code=${answer%% *}
        location=${answer#* }
        if [ "$code" = 307 ]; then
            curl -fsS -o "$tmp" --max-time 3600 -- "$location" || code=000
        fi
        if [ "$code" != 200 ] && [ "$code" != 307 ]; then
            echo "flashlink_fetch_image: $ref: download failed (HTTP $code)" >&2
            rm -f -- "$hdr" "$tmp"; exec {lockfd}>&-
            return 1
        fi
        if ! printf '%s  %s\n' "$sha" "$tmp" | sha256sum -c --status; then
            echo "flashlink_fetch_image: $ref: the download does not match sha256 $sha" >&2
            rm -f -- "$hdr" "$tmp"; exec {lockfd}>&-
            return 1
        fi
        chmod 644 "$tmp" && mv -f -- "$tmp" "$dir/$sha.sif"
    fi
    rm -f -- "$hdr"
    exec {lockfd}>&-
    printf '%s\n' "$dir/$sha.sif"
}
