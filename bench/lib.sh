# shellcheck shell=bash
# bench/lib.sh: shared by bench/services, bench/dns, bench/cluster,
# bench/soak, bench/image-pods and others (sourced, not run). Root check,
# tools, the release binary, agents in namespaces of the script's own, a
# cleanup trap, statistics.
#
# A script sets TAG (unique, contains $$) and then calls bench_init.
# Everything it creates is registered here (CREATED_NS, AGENT_PIDS, NODES,
# BG_PIDS, WORK) and removed by the EXIT trap, whatever the exit.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

AGENT_PIDS=()
CREATED_NS=()
NODES=()
BG_PIDS=()
# Functions bench_cleanup calls after the agents have stopped and before the
# namespaces and $WORK go (containers, mounts a script made).
CLEANUP_HOOKS=()
WORK=

# need_tools CMD:PACKAGE ...: installs the Debian packages of missing commands.
need_tools() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || die "${pair%%:*} not found (package ${pair#*:})"
    done
}

bench_init() {
    [ "$(id -u)" -eq 0 ] || die "run as root: it creates network namespaces and TAP devices"
    need_tools ip:iproute2 nsenter:util-linux ss:iproute2 jq:jq awk:gawk perl:perl busybox:busybox-static "$@"
    PODNET=${PODNET:-$ROOT/target/release/podnet}
    if [ ! -x "$PODNET" ]; then
        log "building the release binary (cargo build --release -p podnet)"
        (cd "$ROOT" && cargo build --release -p podnet) || die "cargo build failed"
    fi
    PODNET=$(readlink -f "$PODNET")
    # shellcheck disable=SC2034 # used by the scripts that source this file
    BUSYBOX=$(command -v busybox)
    WORK=$(mktemp -d "/tmp/podnet-$TAG.XXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    NPROC=$(nproc)
    KERNEL=$(uname -r)
    CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    BUILD="$("$PODNET" --version 2>/dev/null || echo podnet), built $(date -u -r "$PODNET" +%FT%TZ)"
    if [ "$PODNET" = "$(readlink -f "$ROOT/target/release/podnet")" ]; then
        local commit
        commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
        git -C "$ROOT" diff --quiet HEAD -- cli runtime netstack Cargo.toml Cargo.lock 2>/dev/null \
            || commit="$commit + uncommitted changes"
        BUILD="$BUILD in a tree at $commit"
        if [ -n "$(find "$ROOT"/{cli,runtime,netstack} "$ROOT"/Cargo.* -newer "$PODNET" -type f 2>/dev/null | head -n1)" ]; then
            BUILD="$BUILD (WARNING: sources changed since; rebuild for current numbers)"
        fi
    fi
    log "machine: $NPROC CPUs ($CPU_MODEL), kernel $KERNEL, load $LOAD_BEFORE"
    log "podnet: $PODNET, $BUILD"
}

bench_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    log "cleaning up"
    local pid ns node
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    # Members before the server (the first agent started), so they do not
    # spin reconnecting to a gone server.
    local i
    for ((i = ${#AGENT_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${AGENT_PIDS[$i]}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid"
        for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "agent $pid still running 60 s after SIGTERM; sending SIGKILL"
            kill -KILL "$pid"
        fi
        wait "$pid" 2>/dev/null
    done
    local hook
    for hook in "${CLEANUP_HOOKS[@]}"; do "$hook"; done
    for node in "${NODES[@]}"; do
        for ns in $(ip netns list | awk '{print $1}' | grep -F "pn.$node." || true); do
            log "removing leftover pod namespace $ns"
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL
            ip netns del "$ns"
            rm -rf "/etc/netns/$ns"
        done
    done
    for ns in "${CREATED_NS[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL
        ip netns del "$ns" 2>/dev/null
    done
    if [ $rc -ne 0 ] && [ -n "$WORK" ]; then
        for f in "$WORK"/*agent*.log; do
            [ -f "$f" ] || continue
            log "$f (last 20 lines):"; tail -n 20 "$f" >&2
        done
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit $rc
}

mkns() { ip netns add "$1"; CREATED_NS+=("$1"); ip -n "$1" link set lo up; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }
# in_pod NODE POD CMD...: runs CMD in the pod's network namespace only
# (no resolv.conf, no hostname: for tools that need neither).
in_pod() { local node=$1 pod=$2; shift 2; nsenter --net="/run/netns/pn.$node.default.$pod" "$@"; }

# start_agent NODE NS SOCKET DATADIR [node up args...]: starts an agent in
# namespace NS (made here if missing) and waits until it answers; sets
# AGENT_PID. Its log is $WORK/agent-NODE.log.
start_agent() {
    local node=$1 ns=$2 sock=$3 data=$4; shift 4
    [ -e "/run/netns/$ns" ] || mkns "$ns"
    NODES+=("$node")
    nsenter --net="/run/netns/$ns" "$PODNET" node up --name "$node" --data-dir "$data" --socket "$sock" "$@" \
        </dev/null >>"$WORK/agent-$node.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    for _ in $(seq 150); do
        "$PODNET" --socket "$sock" get nodes >/dev/null 2>&1 && break
        kill -0 "$AGENT_PID" 2>/dev/null || die "agent $node exited: $(tail -n 5 "$WORK/agent-$node.log")"
        sleep 0.1
    done
    "$PODNET" --socket "$sock" get nodes >/dev/null 2>&1 || die "agent $node did not answer on $sock within 15 s"
    [ "$(readlink -f "/proc/$AGENT_PID/exe")" = "$PODNET" ] || die "PID $AGENT_PID is not the agent"
}

# stop_agent PID: SIGTERM and wait (for scripts that restart agents).
stop_agent() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
}

# A board config with the given [limits] lines; never the machine's resolvers.
write_config() { # FILE [limit lines...]
    local file=$1; shift
    {
        echo '[network]'
        echo 'upstream_dns = ["192.0.2.53"]'
        echo '[limits]'
        local l; for l in "$@"; do echo "$l"; done
    } >"$file"
}

# wait_pods SOCKET COUNT [SECONDS]: until COUNT pods are Running and ready.
wait_pods() {
    local sock=$1 want=$2 secs=${3:-60} n=0
    for _ in $(seq $((secs * 5))); do
        n=$("$PODNET" --socket "$sock" get pods -o json | jq '[.items[] | select(.status.phase=="Running")] | length')
        [ "$n" -ge "$want" ] && return 0
        sleep 0.2
    done
    die "only $n of $want pods Running after $secs s"
}

# wait_endpoints SOCKET SVC COUNT
wait_endpoints() {
    local sock=$1 svc=$2 want=$3 n=0
    for _ in $(seq 150); do
        n=$("$PODNET" --socket "$sock" get endpoints "$svc" | awk 'NR==2 {print $2}' | tr ',' '\n' | grep -c : || true)
        [ "$n" -ge "$want" ] && return 0
        sleep 0.2
    done
    die "service $svc has $n of $want endpoints: $("$PODNET" --socket "$sock" get endpoints "$svc")"
}

pod_ip() { # SOCKET POD
    "$PODNET" --socket "$1" get pods -o json | jq -r --arg n "$2" '.items[] | select(.metadata.name==$n) | .status.podIP'
}
cluster_ip() { # SOCKET SVC
    "$PODNET" --socket "$1" get svc "$2" | awk 'NR==2 {print $3}'
}

wait_listen() { # NS PORT [tcp|udp]
    local flag=-Hltn; [ "${3:-tcp}" = udp ] && flag=-Hlun
    for _ in $(seq 100); do
        in_ns "$1" ss $flag "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# --- numbers ---------------------------------------------------------------------
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# pct P: the P-th percentile (nearest rank) of numbers on stdin
pct() { sort -g | awk -v p="$1" '{v[NR]=$1} END {if (NR==0) {print "nan"; exit} i=int((p/100)*NR+0.999999); if (i<1) i=1; if (i>NR) i=NR; print v[i]}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
tap_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname /dev/net/tun 2>/dev/null | wc -l; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
now_ns() { date +%s%N; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
fmt() { awk -v x="$1" -v f="${2:-%.2f}" 'BEGIN {printf f, x}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "nan"; else printf "%.2f", a / b}'; }
verdict() { if awk -v x="$1" -v t="$2" "BEGIN {exit !(x $3 t)}"; then echo met; else echo MISSED; fi; }
list() { paste -sd, "$1" | sed 's/,/, /g'; }  # FILE -> "a, b, c"
machine_line() {
    echo "machine: $NPROC CPUs ($CPU_MODEL), kernel $KERNEL; load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
}
