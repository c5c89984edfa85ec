#!/usr/bin/env bash
# Starts a throw-away Kafka-API broker (tansu, in-memory storage) on 127.0.0.1 for tests and demos.
#
#   scripts/kafka-broker.sh            # picks a free port
#   scripts/kafka-broker.sh --port N   # or uses N
#
# Listener and advertised listener are the same loopback address. Once the broker answers a Kafka
# Metadata request, the script prints `127.0.0.1:PORT` on stdout (one line) and waits; SIGTERM or
# SIGINT stops the broker. A broker that does not come up in 30 s, or exits, is an error (exit 1).
#
# tansu is looked up as $TANSU, then on PATH, then in ~/.cargo/bin. Install it with
#   cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore,libsql
# (.ci/run does that when it is missing).
set -euo pipefail

port=""
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "kafka-broker.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

tansu="${TANSU:-}"
if [ -z "$tansu" ]; then
    tansu="$(command -v tansu || true)"
fi
if [ -z "$tansu" ] && [ -x "$HOME/.cargo/bin/tansu" ]; then
    tansu="$HOME/.cargo/bin/tansu"
fi
if [ -z "$tansu" ]; then
    echo "kafka-broker.sh: tansu not found (set TANSU, or: cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore,libsql)" >&2
    exit 1
fi

# A port nothing listens on (a race with another process is caught below: tansu then exits).
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Sends a Metadata v4 request (all topics, no auto-creation) and checks that the reply carries our
# correlation id and names this broker's port.
metadata_ok() {
    local p="$1" reply
    reply=$(
        exec 3<>"/dev/tcp/127.0.0.1/$p" || exit 1
        printf '\x00\x00\x00\x13\x00\x03\x00\x04\x00\x00\x00\x2a\x00\x04eddy\xff\xff\xff\xff\x00' >&3
        timeout 2 head -c 36 <&3 | od -A n -v -t x1 | tr -d ' \n'
    ) 2>/dev/null || return 1
    local port_hex
    port_hex=$(printf '%08x' "$p")
    # bytes 4..7: correlation id 42; the broker list carries host "127.0.0.1" and the port
    [ "${reply:8:8}" = "0000002a" ] && [[ "$reply" == *"3132372e302e302e31${port_hex}"* ]]
}

pid=""
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    exit 0
}
trap stop TERM INT

for attempt in 1 2 3 4 5; do
    p="${port:-$(free_port)}"
    url="tcp://127.0.0.1:$p"
    "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ >&2 &
    pid=$!
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if metadata_ok "$p"; then
            echo "127.0.0.1:$p"
            wait "$pid"
            echo "kafka-broker.sh: tansu exited" >&2
            exit 1
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    if [ -n "$port" ]; then
        break
    fi
    echo "kafka-broker.sh: broker on port $p did not come up (attempt $attempt)" >&2
done
echo "kafka-broker.sh: could not start tansu" >&2
exit 1
