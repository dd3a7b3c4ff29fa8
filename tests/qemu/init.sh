#!/bin/busybox sh
# /init of the test VM (tests/qemu/run packs it into the initramfs).
# Runs the one-node scenario; every step prints "PASS name" or "FAIL name",
# measurements print "BENCH key value", and the last line is
# "SCENARIO DONE" before the VM powers off. tests/qemu/run parses these.
. /lib.sh
echo "podnet-vm: /init at $(cut -d' ' -f1 /proc/uptime) s"

running() { # count of pods in Running state
    podnet get pods 2>/dev/null | grep -c ' Running '
}
pods_running() { [ "$(running)" = "$1" ]; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

for m in $(cat /modules.order); do
    insmod "/modules/$m" || echo "podnet-vm: insmod $m failed"
done
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
step "kernel: /dev/net/tun present" test -c /dev/net/tun
hostname vm1
ip link set lo up
# QEMU's user network with restrict=on: the one address it answers is the
# host's registry (podnet.registry on the command line).
REGISTRY=$(sed -n 's/.*podnet\.registry=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "podnet-vm: $(uname -sr), $(grep -c ^processor /proc/cpuinfo) cpu, $(sed -n 's/MemTotal: *//p' /proc/meminfo) RAM"
echo "BENCH binary_bytes $(stat -c %s /bin/podnet)"

# --- the agent ---------------------------------------------------------------
step "config check qemu-virt-aarch64.toml" podnet config check /etc/podnet/config.toml
podnet node up --config /etc/podnet/config.toml --name vm1 >/tmp/agent.log 2>&1 &
AGENT=$!
if wait_for 60 podnet get nodes; then
    pass "agent ready"
    echo "BENCH boot_to_agent_ready_s $(cut -d' ' -f1 /proc/uptime)"
else
    fail "agent ready"
    tail -20 /tmp/agent.log
    finish
fi
i=0
while ! podnet resolve dns-version.cluster.local. --type TXT >/dev/null 2>&1 && [ $i -lt 100 ]; do
    sleep 0.2 2>/dev/null || sleep 1
    i=$((i + 1))
done
if podnet resolve dns-version.cluster.local. --type TXT >/dev/null 2>&1; then
    pass "agent answers DNS (dns-version.cluster.local TXT)"
    echo "BENCH boot_to_dns_s $(cut -d' ' -f1 /proc/uptime)"
else
    fail "agent answers DNS (dns-version.cluster.local TXT)"
fi
podnet get nodes
sleep 2
echo "BENCH agent_rss_idle_kib $(rss_kib $AGENT)"

# --- pods ---------------------------------------------------------------------
step "run client" podnet run client -- sleep infinity
step "create deployment web" podnet create deployment web --replicas 2 -- busybox httpd -f -p 8080 -h /www
step "3 pods Running" wait_for 60 pods_running 3
podnet get pods -o wide
WEB_IPS=$(podnet get pods -o wide | awk '$1 ~ /^web-/ {print $6}')
step "web pods have IPs" test "$(echo $WEB_IPS | wc -w)" = 2
fetch() { # ip: the page, from the client pod
    # Not wget -T: busybox 1.35's wget -T segfaults (exit 139) on arm64 here.
    timeout 10 podnet exec client -- busybox wget -qO- "http://$1:8080/" 2>/tmp/wget.err
}
for ip in $WEB_IPS; do
    # "Running" means the command started; give httpd a moment to listen.
    wait_for 15 fetch "$ip" || true
    body=$(fetch "$ip")
    if [ "$body" = "hello from podnet" ]; then
        pass "client -> web $ip:8080"
    else
        fail "client -> web $ip:8080 (got: $body; $(cat /tmp/wget.err))"
    fi
done
step "exec passes the exit code" sh -c '! podnet exec client -- sh -c "exit 3"'
for ip in $WEB_IPS; do
    step "node pings pod $ip" ping -c 1 -W 3 "$ip"
done
step "pod pings the gateway" podnet exec client -- ping -c 1 -W 3 10.244.0.1
step "pod hostname is its name" test "$(podnet exec client -- hostname)" = client
step "pod has resolv.conf with cluster DNS" sh -c 'podnet exec client -- cat /etc/resolv.conf | grep "nameserver 10.96.0.10" >/dev/null'

# --- 20 pods ------------------------------------------------------------------
step "create deployment fill (17)" podnet create deployment fill --replicas 17 -- sleep infinity
step "20 pods Running" wait_for 120 pods_running 20
sleep 3
echo "BENCH agent_rss_20_pods_kib $(rss_kib $AGENT)"
echo "BENCH netns_with_20_pods $(ls /run/netns | wc -l)"
step "delete deployment fill" podnet delete deployment fill
step "fill pods gone" wait_for 60 pods_running 3

# --- teardown -----------------------------------------------------------------
step "delete deployment web" podnet delete deployment web
step "web pods gone" wait_for 60 sh -c '! podnet get pods | grep "^web-" >/dev/null'

# --- an image pod: the arm64 variant of a two-platform index --------------------
# The host's registry serves test/app:v1, an index of an amd64 and an arm64
# busybox image whose CMD is httpd serving a page naming its architecture.
step "kernel: overlayfs loaded" grep -w overlay /proc/filesystems
step "cgroup v2 only at /sys/fs/cgroup" test -e /sys/fs/cgroup/cgroup.controllers
echo "BENCH oci_runtime $(runc --version | head -1)"
web_status() { podnet get pods 2>/dev/null | awk '$1 == "web" {print $3}'; }
IMAGE=$REGISTRY/test/app:v1
t0=$(cut -d' ' -f1 /proc/uptime)
step "run web --image $IMAGE --port 8080" podnet run web --image "$IMAGE" --port 8080
# Up to 120 s (guest clock) while pulling or creating; a failure state
# (ErrImagePull, CreateContainerError, ...) ends the wait at once.
while :; do
    st=$(web_status)
    case "$st" in Pending|ContainerCreating|"") ;; *) break ;; esac
    [ "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{print (b - a > 120)}')" = 1 ] && break
    sleep 0.2 2>/dev/null || sleep 1
done
if [ "$st" = Running ]; then
    pass "image pod web Running"
    echo "BENCH image_run_to_running_s $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b - a}')"
else
    fail "image pod web Running (status: $st)"
    podnet describe pod web
    tail -20 /tmp/agent.log
fi
podnet image ls
podnet image ls -o json > /tmp/images.json
step "image ls: linux/arm64/v8 picked from the index" grep '"platform": *"linux/arm64/v8"' /tmp/images.json
echo "BENCH image_size_bytes $(sed -n 's/.*"size": *\([0-9]*\).*/\1/p' /tmp/images.json | head -1)"
WEB_IP=$(podnet get pods -o wide | awk '$1 == "web" {print $6}')
page() { timeout 10 wget -qO- "http://$WEB_IP:8080/" 2>/tmp/wget.err; }
wait_for 20 page || true
body=$(page)
if [ "$body" = "hello from the arm64 image" ]; then
    pass "node -> image pod $WEB_IP:8080: the arm64 variant's page"
else
    fail "node -> image pod $WEB_IP:8080: the arm64 variant's page (got: $body; $(cat /tmp/wget.err))"
fi
cap=$(podnet exec web -- cat /proc/self/status | sed -n 's/^CapEff:[[:space:]]*//p')
step "exec web: CapEff is the container default (got $cap)" test "$cap" = 00000000a80425fb
step "delete pod web" podnet delete pod web
step "image pod gone" wait_for 60 sh -c '! podnet get pods | grep "^web " >/dev/null'
step "no rootfs mount left" sh -c '! grep -e overlay -e /var/lib/podnet/pods /proc/mounts'
step "runc has no container left" test -z "$(runc --root /run/podnet/runc list -q)"

podnet node stats
kill -TERM $AGENT
i=0
while kill -0 $AGENT 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
step "agent stops on SIGTERM" sh -c "! kill -0 $AGENT 2>/dev/null"
step "no pod netns left" test -z "$(ls /run/netns)"
step "no pod TAPs left" sh -c '! ip -o link | grep -v -e " lo:" -e " eth0:" | grep -q .'
grep -ci "error\|panic" /tmp/agent.log >/dev/null && { echo "podnet-vm: agent log errors:"; grep -i "error\|panic" /tmp/agent.log | tail -10; }
finish
