#!/bin/busybox sh
# /init of a cluster test VM (tests/qemu/run --nodes 3 packs it into the
# initramfs; every VM gets the same one). The kernel command line says who
# this VM is:
#   podnet.name=vm2 podnet.ip=192.168.77.12 podnet.server=192.168.77.11
#   podnet.nodes=vm1,vm2,vm3
# The VM whose address is podnet.server is the cluster's server
# (--cluster-init); the others join it with the token the host put in
# /etc/podnet/token (and in the server's data dir, so all share one token).
#
# Every step prints "PASS name" or "FAIL name", measurements print
# "BENCH key value", and the last line is "SCENARIO DONE" before power-off.
#
# Pods: web-<vm> (busybox httpd answering its own name) and client-<vm>
# (sleep) on every VM; web-svc is a ClusterIP whose one backend is web-vm2.
# The server drives the cluster-wide steps; each member checks from its own
# pods (exec runs on the pod's node), then creates a pod done-<vm> to say it
# has finished; the server waits for those, tears down, deletes them, and
# members power off when their done pod is gone or the server is.
#
# Pipes from podnet use `grep PATTERN >/dev/null`, not `grep -q`: grep -q exits at the
# first match and the CLI then dies writing to the closed pipe (SIGPIPE/EPIPE, "Aborted").

. /lib.sh
arg() { sed -n "s/.*podnet\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
NAME=$(arg name)
IP=$(arg ip)
SERVER=$(arg server)
NODES=$(arg nodes | tr , ' ')
NNODES=$(echo $NODES | wc -w)
WHO=$NAME
echo "podnet-vm: /init of $NAME ($IP) at $(cut -d' ' -f1 /proc/uptime) s"

nap() { sleep 0.2 2>/dev/null || sleep 1; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
# "NAME READY STATUS RESTARTS AGE IP NODE" rows of running pods.
wide() { podnet get pods -o wide 2>/dev/null | awk 'NR > 1 && $3 == "Running"'; }
pod_ip() { wide | awk -v p="$1" '$1 == p {print $6}'; }
running() { [ -n "$(pod_ip "$1")" ]; }
ready_nodes() { podnet get nodes 2>/dev/null | awk 'NR > 1 && $2 == "Ready"' | wc -l; }
all_ready() { [ "$(ready_nodes)" = "$NNODES" ]; }
fetch() { # pod url: the page, from that (local) pod
    # Not wget -T: busybox 1.35's wget -T segfaults (exit 139) on arm64 here.
    timeout 10 podnet exec "$1" -- busybox wget -qO- "$2" 2>/tmp/wget.err
}
expect_page() { # step-name pod url expected-body
    wait_for 20 sh -c "[ \"\$(timeout 10 podnet exec $2 -- busybox wget -qO- $3 2>/dev/null)\" = '$4' ]" || true
    body=$(fetch "$2" "$3")
    if [ "$body" = "$4" ]; then pass "$1"; else fail "$1 (got: $body; $(cat /tmp/wget.err))"; fi
}
dns_answers() { podnet resolve dns-version.cluster.local. --type TXT 2>/dev/null | grep . >/dev/null; }

for m in $(cat /modules.order); do
    insmod "/modules/$m" || echo "podnet-vm: insmod $m failed"
done
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
hostname "$NAME"
ip link set lo up
# Two NICs, told apart by MAC (virtio-mmio's probe order is not the command
# line's): 52:54:00:77:* on the cluster segment, 52:54:00:02:* on QEMU's
# user network (restrict=on), where the one address answering is the
# host's registry (podnet.registry).
for d in /sys/class/net/eth*; do
    case $(cat "$d/address") in
        52:54:00:77:*) LAN=${d##*/} ;;
        52:54:00:02:*) REG_IF=${d##*/} ;;
    esac
done
ip link set "$LAN" up
ip addr add "$IP/24" dev "$LAN"
ip link set "$REG_IF" up
ip addr add 10.0.2.15/24 dev "$REG_IF"
REGISTRY=$(arg registry)
IMAGE=$REGISTRY/test/app:v1
echo "podnet-vm: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) cpu, $(sed -n 's/MemTotal: *//p' /proc/meminfo) RAM"

# --- the agent ---------------------------------------------------------------
if [ "$IP" = "$SERVER" ]; then
    ROLE=server
    cp /etc/podnet/token /var/lib/podnet/token && chmod 0600 /var/lib/podnet/token
    mkdir -p /var/lib/podnet/kube
    cp /etc/podnet/admin-token /var/lib/podnet/kube/token && chmod 0600 /var/lib/podnet/kube/token
    set -- --cluster-init --node-ip "$IP"
else
    ROLE=member
    # The server VM boots alongside: give it a moment to be reachable.
    wait_for 60 ping -c 1 -W 1 "$SERVER" || fail "server $SERVER reachable over the segment"
    set -- --server "$SERVER" --token-file /etc/podnet/token --node-ip "$IP"
fi
podnet node up --config /etc/podnet/config.toml --name "$NAME" --data-dir /var/lib/podnet "$@" >/tmp/agent.log 2>&1 &
AGENT=$!
# Ready: answers `get nodes` (a member forwards it to the server, so it has joined).
i=0
while ! podnet get nodes >/dev/null 2>&1 && [ $i -lt 600 ]; do nap; i=$((i + 1)); done
if podnet get nodes >/dev/null 2>&1; then
    pass "agent ($ROLE) ready"
    echo "BENCH $NAME boot_to_agent_ready_s $(uptime_s)"
else
    fail "agent ($ROLE) ready"
    tail -20 /tmp/agent.log
    finish
fi
i=0
while ! dns_answers && [ $i -lt 300 ]; do nap; i=$((i + 1)); done
if dns_answers; then
    pass "agent answers DNS (dns-version.cluster.local TXT)"
    echo "BENCH $NAME boot_to_dns_s $(uptime_s)"
else
    fail "agent answers DNS (dns-version.cluster.local TXT)"
fi
echo "BENCH $NAME agent_rss_idle_kib $(rss_kib $AGENT)"

# --- the cluster forms ----------------------------------------------------------
if wait_for 180 all_ready; then
    pass "cluster formed: $NNODES nodes Ready"
    echo "BENCH $NAME boot_to_cluster_ready_s $(uptime_s)"
else
    fail "cluster formed: $NNODES nodes Ready"
fi
podnet get nodes -o wide

if [ "$ROLE" = server ]; then
    # Each node its own /24.
    # Columns by header name: NAME STATUS ROLES AGE VERSION INTERNAL-IP POD-CIDR PODS.
    column() { podnet get nodes -o wide | awk -v c="$1" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == c) k = i; next} {print $1, $k}'; }
    subnets=$(column POD-CIDR | awk '$2 ~ /^10\.244\.[0-9]+\.0\/24$/ {print $2}' | sort -u | wc -l)
    step "each node has its own pod subnet in 10.244.0.0/16" test "$subnets" = "$NNODES"
    n=11
    for node in $NODES; do
        step "$node's INTERNAL-IP is 192.168.77.$n" sh -c "podnet get nodes -o wide | grep '^$node .* 192.168.77.$n ' >/dev/null"
        n=$((n + 1))
    done
    for n in $NODES; do
        step "run web-$n --node $n" podnet run "web-$n" --node "$n" --labels "app=web-$n" -- \
            sh -c 'mkdir -p /tmp/w-$POD_NAME && echo $POD_NAME > /tmp/w-$POD_NAME/index.html && exec busybox httpd -f -vv -p 80 -h /tmp/w-$POD_NAME'
        step "run client-$n --node $n" podnet run "client-$n" --node "$n" -- sleep infinity
    done
    # img-<vm>: the arm64 variant of the registry's two-platform index, pulled
    # by each node from the host's registry over its own QEMU user network.
    IMG_T0=$(uptime_s)
    for n in $NODES; do
        step "run img-$n --node $n --image $IMAGE" podnet run "img-$n" --node "$n" --image "$IMAGE" --port 8080
    done
    step "expose pod web-vm2 as web-svc" podnet expose pod web-vm2 --port 80 --name web-svc
    step "expose pod web-vm2 as NodePort 30080" podnet expose pod web-vm2 --port 80 --type NodePort --node-port 30080 --name web-np
fi

# --- pods are placed and running --------------------------------------------------
for n in $NODES; do
    step "web-$n and client-$n Running" wait_for 120 sh -c "podnet get pods -o wide | awk '\$3 == \"Running\"' | grep '^web-$n ' >/dev/null && podnet get pods -o wide | awk '\$3 == \"Running\"' | grep '^client-$n ' >/dev/null"
done
[ "$ROLE" = server ] && podnet get pods -o wide
for n in $NODES; do
    node=$(wide | awk -v p="web-$n" '$1 == p {print $7}')
    step "web-$n is on $n" test "$node" = "$n"
done
# Image pods: up to 180 s while pulling or creating; a failure state
# (ErrImagePull, CreateContainerError, ...) ends the wait at once.
status_of() { podnet get pods 2>/dev/null | awk -v p="$1" '$1 == p {print $3}'; }
img_t0=$(uptime_s)
for n in $NODES; do
    while :; do
        st=$(status_of "img-$n")
        case "$st" in Pending|ContainerCreating|"") ;; *) break ;; esac
        [ "$(awk -v a="$img_t0" -v b="$(uptime_s)" 'BEGIN{print (b - a > 180)}')" = 1 ] && break
        nap
    done
    if [ "$st" = Running ]; then pass "image pod img-$n Running"; else
        fail "image pod img-$n Running (status: $st)"
        podnet describe pod "img-$n" | tail -8
    fi
done
if [ "$ROLE" = server ]; then
    echo "BENCH $NAME images_run_to_running_s $(awk -v a="$IMG_T0" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b - a}')"
fi
step "img-$NAME is on $NAME" test "$(wide | awk -v p="img-$NAME" '$1 == p {print $7}')" = "$NAME"
podnet image ls -o json > /tmp/images.json
step "image ls on $NAME: linux/arm64/v8 picked from the index" grep '"platform": *"linux/arm64/v8"' /tmp/images.json
cap=$(podnet exec "img-$NAME" -- cat /proc/self/status | sed -n 's/^CapEff:[[:space:]]*//p')
step "exec img-$NAME: CapEff is the container default (got $cap)" test "$cap" = 00000000a80425fb
MY_CLIENT_IP=$(pod_ip "client-$NAME")
step "client-$NAME has an IP" test -n "$MY_CLIENT_IP"

# --- cross-node checks from this VM's client pod -----------------------------------
for n in $NODES; do
    ip=$(pod_ip "web-$n")
    where=local; [ "$n" = "$NAME" ] || where=cross-node
    step "client-$NAME -> web-$n ($ip) ping, $where" wait_for 15 podnet exec "client-$NAME" -- ping -c 1 -W 3 "$ip"
    expect_page "client-$NAME -> web-$n http://$ip/, $where" "client-$NAME" "http://$ip/" "web-$n"
done
for n in $NODES; do
    where=local; [ "$n" = "$NAME" ] || where=cross-node
    expect_page "client-$NAME -> img-$n: the arm64 variant's page, $where" "client-$NAME" \
        "http://$(pod_ip "img-$n"):8080/" "hello from the arm64 image"
done
# No NAT: web-<me>'s httpd saw the other VMs' client pods' own addresses.
others=""
for n in $NODES; do [ "$n" = "$NAME" ] || others="$others $(pod_ip "client-$n")"; done
saw_all() {
    log=$(podnet logs "web-$NAME" 2>/dev/null)
    for ip in $others; do echo "$log" | grep -q "$ip" || return 1; done
}
step "no NAT: web-$NAME saw the remote clients' pod IPs ($others )" wait_for 90 saw_all

# ClusterIP (backend web-vm2) and DNS by name.
SVC_IP=$(podnet get svc 2>/dev/null | awk '$1 == "web-svc" {print $3}')
wait_for 60 sh -c 'podnet get svc | grep "^web-svc " >/dev/null'
SVC_IP=$(podnet get svc 2>/dev/null | awk '$1 == "web-svc" {print $3}')
step "web-svc has a ClusterIP ($SVC_IP)" test -n "$SVC_IP"
where=cross-node; [ "$NAME" = vm2 ] && where=local
expect_page "client-$NAME -> ClusterIP $SVC_IP:80 (backend web-vm2, $where)" "client-$NAME" "http://$SVC_IP/" web-vm2
expect_page "client-$NAME -> http://web-svc/ by DNS name" "client-$NAME" "http://web-svc/" web-vm2
step "pod resolves web-svc.default.svc.cluster.local" sh -c \
    "podnet exec client-$NAME -- nslookup web-svc.default.svc.cluster.local 2>/dev/null | grep '$SVC_IP' >/dev/null"
step "node $NAME resolves web-svc (podnet resolve)" sh -c "podnet resolve web-svc.default.svc.cluster.local. | grep '$SVC_IP' >/dev/null"
# Through the server's node port (on another VM for the members) to web-vm2.
step "node $NAME -> $SERVER:30080 (NodePort) -> web-vm2" wait_for 60 sh -c \
    "timeout 5 busybox wget -qO- http://$SERVER:30080/ | grep '^web-vm2\$' >/dev/null"
# The node itself reaches pods on the other nodes.
for n in $NODES; do
    [ "$n" = "$NAME" ] && continue
    step "node $NAME pings web-$n on $n" sh -c "ping -c 1 -W 3 $(pod_ip "web-$n") >/dev/null"
done
if [ -f /etc/podnet/remote.yaml ] && [ "$ROLE" = member ]; then
    step "remote CLI (--kubeconfig) sees the pods" sh -c 'podnet --kubeconfig /etc/podnet/remote.yaml get pods | grep "^web-vm1 " >/dev/null'
    # The same client config with another token: refused, naming the token.
    sed "s/^token: .*/token: PN1::$(printf '%064d' 0)/" /etc/podnet/remote.yaml > /tmp/bad.yaml
    step "a wrong token is refused" sh -c '! podnet --kubeconfig /tmp/bad.yaml get pods >/dev/null 2>/tmp/bad.err && grep token /tmp/bad.err >/dev/null'
fi
echo "BENCH $NAME agent_rss_pods_kib $(rss_kib $AGENT)"
echo "BENCH $NAME pods_on_node $(ls /run/netns | wc -l)"

# --- members: say done, wait for the server to finish ---------------------------------
if [ "$ROLE" = member ]; then
    # A member node may read the cluster, not change it (issue #15's trust
    # model): its own CLI is refused, the admin's client config is not.
    step "a member's own CLI may not change the cluster" sh -c "! podnet run nope-$NAME -- true 2>/tmp/nope.err && grep 'may read the cluster but not change it' /tmp/nope.err >/dev/null"
    step "a member's own CLI reads it" sh -c "podnet get nodes | grep '^$NAME ' >/dev/null"
    step "signal done (run done-$NAME)" podnet --kubeconfig /etc/podnet/remote.yaml run "done-$NAME" --node "$NAME" -- sleep infinity
    i=0
    while podnet get pods 2>/dev/null | grep "^done-$NAME " >/dev/null && [ $i -lt 300 ]; do sleep 1; i=$((i + 1)); done
    # The server is tearing down now; stop this agent cleanly too.
    kill -TERM $AGENT
    i=0
    while kill -0 $AGENT 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
    step "agent stops on SIGTERM" sh -c "! kill -0 $AGENT 2>/dev/null"
    step "no pod netns left" test -z "$(ls /run/netns)"
    step "no rootfs mount left" sh -c '! grep -e overlay -e /var/lib/podnet/pods /proc/mounts'
    grep -i "panic" /tmp/agent.log && fail "agent panicked"
    finish
fi

# --- server: wait for the members, then tear down -----------------------------------
for n in $NODES; do
    [ "$n" = "$NAME" ] && continue
    step "member $n finished its checks" wait_for 300 sh -c "podnet get pods | grep '^done-$n ' >/dev/null"
done
# The server's CLI into the members' pods: the command runs on the member,
# its stdin, output and exit code cross the stream the member opens back
# to the server (cluster/streams.rs), the path kubectl's exec and logs take.
for n in $NODES; do
    [ "$n" = "$NAME" ] && continue
    step "exec img-$n (on $n) from the server: the container answers" sh -c \
        "[ \"\$(timeout 30 podnet exec img-$n -- cat /etc/hostname </dev/null)\" = img-$n ]"
    step "exec img-$n (on $n): stdin in, output and exit code 7 out" sh -c \
        "out=\$(echo typed | timeout 30 podnet exec -i img-$n -- sh -c 'cat; exit 7'); code=\$?; [ \"\$out\" = typed ] && [ \$code = 7 ]"
    step "logs web-$n (on $n) from the server: httpd saw client-$NAME ($MY_CLIENT_IP)" sh -c \
        "timeout 30 podnet logs web-$n | grep '$MY_CLIENT_IP' >/dev/null"
done
podnet node stats
for n in $NODES; do
    podnet delete pod "web-$n" >/dev/null
    podnet delete pod "client-$n" >/dev/null
    podnet delete pod "img-$n" >/dev/null
done
step "delete svc web-svc" podnet delete svc web-svc
step "delete svc web-np" podnet delete svc web-np
step "cluster pods gone" wait_for 60 sh -c '! podnet get pods | grep "^web-\|^client-\|^img-" >/dev/null'
for n in $NODES; do
    [ "$n" = "$NAME" ] || podnet delete pod "done-$n" >/dev/null
done
# Members see their done pod vanish and stop; let them.
wait_for 30 sh -c '[ "$(podnet get nodes | grep -c NotReady)" = '"$((NNODES - 1))"' ]'
kill -TERM $AGENT
i=0
while kill -0 $AGENT 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
step "agent stops on SIGTERM" sh -c "! kill -0 $AGENT 2>/dev/null"
step "no pod netns left" test -z "$(ls /run/netns)"
step "no rootfs mount left" sh -c '! grep -e overlay -e /var/lib/podnet/pods /proc/mounts'
step "no pod TAPs left" sh -c "! ip -o link | grep -v ' lo:\\| $LAN:\\| $REG_IF:' | grep -q ."
grep -i "panic" /tmp/agent.log && fail "agent panicked"
finish
