//! NetworkPolicy as a truth table, in the manner of the upstream e2e
//! netpol suite: namespaces x, y, z × pods a, b, c, each serving TCP and
//! UDP on ports 80 and 81; a lan host outside the node; the cluster DNS.
//! Each scenario applies policies with `podnet apply -f`, computes the
//! expected reachability with the model below — a small re-implementation
//! of the Kubernetes spec over labels, written for this test and sharing no
//! code with podnet's compiler — and compares it cell by cell with what
//! real sockets in the pods see.
//!
//! Pods are command pods running the host's python3 (one small server for
//! the four ports, one prober that tries every target at once with a short
//! timeout), so a whole table is one `podnet exec` per client pod, run in
//! parallel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use podnet_e2e::{Cluster, Node, Outside, eventually, podnet_bin, stderr, stdout};
use serde_json::{Value, json};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
/// The cluster DNS of the default config.
const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The lan host of one node (`Outside`), and of a cluster (its lan bridge).
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const CLUSTER_LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 251, 1);

/// Serves TCP and UDP on ports 80 and 81 on every address: a TCP client
/// gets "ok" and a close, a UDP datagram its echo.
const SERVER: &str = r#"
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"ok\n")
        except OSError: pass
        c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
for p in (80, 81):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
print("serving", flush=True)
threading.Event().wait()
"#;

/// Tries every target (`tcp:IP:PORT`, `udp:IP:PORT`, `dns:IP`) at once and
/// prints `TARGET 1` or `TARGET 0` for each.
const PROBE: &str = r#"
import socket, sys, threading, struct
TIMEOUT = 1.0
results = {}
def probe(target):
    kind, rest = target.split(":", 1)
    ok = False
    try:
        if kind == "tcp":
            ip, port = rest.rsplit(":", 1)
            s = socket.create_connection((ip, int(port)), timeout=TIMEOUT)
            s.settimeout(TIMEOUT)
            ok = s.recv(3) == b"ok\n"
            s.close()
        elif kind == "udp":
            ip, port = rest.rsplit(":", 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(TIMEOUT)
            s.sendto(b"ping", (ip, int(port)))
            ok = s.recvfrom(64)[0] == b"ping"
            s.close()
        elif kind == "dns":
            q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
            for label in b"kubernetes.default.svc.cluster.local".split(b"."):
                q += bytes([len(label)]) + label
            q += b"\0" + struct.pack(">HH", 1, 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(TIMEOUT)
            s.sendto(q, (rest, 53))
            ok = s.recvfrom(512)[0][:2] == b"\x12\x34"
            s.close()
    except OSError:
        ok = False
    results[target] = ok
threads = [threading.Thread(target=probe, args=(t,)) for t in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
for t in sys.argv[1:]:
    print(t, 1 if results.get(t) else 0)
"#;

/// Sends a datagram to `IP PORT` `N` times on one socket (one flow), 0.1 s
/// apart, printing 1 for each echo and 0 for each silence.
const STREAM: &str = r#"
import socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3)
s.connect((ip, port))
for i in range(n):
    try:
        s.send(b"ping"); ok = s.recv(64) == b"ping"
    except OSError:
        ok = False
    print(1 if ok else 0, flush=True)
    time.sleep(0.1)
"#;

// ---------------------------------------------------------------------------
// The model: policies as the test writes them, and the spec's verdict.

/// A label selector: pairs that must match, and `key In (values)` /
/// `key NotIn (values)` requirements.
#[derive(Clone, Default)]
struct Sel {
    labels: Vec<(&'static str, &'static str)>,
    not_in: Vec<(&'static str, Vec<&'static str>)>,
}

fn sel(labels: &[(&'static str, &'static str)]) -> Sel {
    Sel { labels: labels.to_vec(), not_in: Vec::new() }
}

impl Sel {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            && self.not_in.iter().all(|(k, vs)| labels.get(*k).is_none_or(|v| !vs.contains(&v.as_str())))
    }

    fn json(&self) -> Value {
        let mut s = json!({});
        if !self.labels.is_empty() {
            s["matchLabels"] = self.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        }
        if !self.not_in.is_empty() {
            s["matchExpressions"] = self
                .not_in
                .iter()
                .map(|(k, vs)| json!({ "key": k, "operator": "NotIn", "values": vs }))
                .collect();
        }
        s
    }
}

#[derive(Clone)]
enum Peer {
    Pods { pods: Option<Sel>, namespaces: Option<Sel> },
    Block { cidr: (Ipv4Addr, u8), except: Vec<(Ipv4Addr, u8)> },
}

#[derive(Clone)]
enum PortRef {
    Number(u16),
    Name(&'static str),
}

#[derive(Clone)]
struct Port {
    udp: bool,
    port: Option<PortRef>,
    end: Option<u16>,
}

#[derive(Clone, Default)]
struct Rule {
    peers: Vec<Peer>,
    ports: Vec<Port>,
}

#[derive(Clone)]
struct Policy {
    name: &'static str,
    namespace: &'static str,
    select: Sel,
    /// None: defaulted (Ingress, plus Egress when there are egress rules).
    types: Option<Vec<&'static str>>,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
}

impl Policy {
    fn types(&self) -> Vec<&'static str> {
        match &self.types {
            Some(t) => t.clone(),
            None if self.egress.is_empty() => vec!["Ingress"],
            None => vec!["Ingress", "Egress"],
        }
    }

    fn json(&self) -> Value {
        let rules = |rules: &[Rule], key: &str| -> Value {
            rules
                .iter()
                .map(|r| {
                    let mut rule = json!({});
                    if !r.peers.is_empty() {
                        rule[key] = r
                            .peers
                            .iter()
                            .map(|p| match p {
                                Peer::Pods { pods, namespaces } => {
                                    let mut peer = json!({});
                                    if let Some(s) = pods {
                                        peer["podSelector"] = s.json();
                                    }
                                    if let Some(s) = namespaces {
                                        peer["namespaceSelector"] = s.json();
                                    }
                                    peer
                                }
                                Peer::Block { cidr, except } => json!({ "ipBlock": {
                                    "cidr": format!("{}/{}", cidr.0, cidr.1),
                                    "except": except.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>(),
                                }}),
                            })
                            .collect();
                    }
                    if !r.ports.is_empty() {
                        rule["ports"] = r
                            .ports
                            .iter()
                            .map(|p| {
                                let mut port = json!({ "protocol": if p.udp { "UDP" } else { "TCP" } });
                                match &p.port {
                                    Some(PortRef::Number(n)) => port["port"] = json!(n),
                                    Some(PortRef::Name(n)) => port["port"] = json!(n),
                                    None => {}
                                }
                                if let Some(end) = p.end {
                                    port["endPort"] = json!(end);
                                }
                                port
                            })
                            .collect();
                    }
                    rule
                })
                .collect()
        };
        let mut spec = json!({ "podSelector": self.select.json() });
        if let Some(types) = &self.types {
            spec["policyTypes"] = json!(types);
        }
        if !self.ingress.is_empty() {
            spec["ingress"] = rules(&self.ingress, "from");
        }
        if !self.egress.is_empty() {
            spec["egress"] = rules(&self.egress, "to");
        }
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "spec": spec,
        })
    }
}

/// A pod of the table as the model knows it.
#[derive(Clone, PartialEq)]
struct ModelPod {
    namespace: &'static str,
    name: &'static str,
    ip: Ipv4Addr,
    labels: BTreeMap<String, String>,
    /// Named ports: name, UDP?, number.
    ports: Vec<(&'static str, bool, u16)>,
    /// The node it runs on (index into the table's nodes).
    node: usize,
}

/// One end of a probe.
#[derive(Clone, Copy, PartialEq)]
enum End<'a> {
    Pod(&'a ModelPod),
    Lan,
    Dns,
}

impl End<'_> {
    fn ip(&self, lan: Ipv4Addr) -> Ipv4Addr {
        match self {
            End::Pod(p) => p.ip,
            End::Lan => lan,
            End::Dns => CLUSTER_DNS,
        }
    }
}

struct World {
    pods: Vec<ModelPod>,
    /// The lan host's address.
    lan: Ipv4Addr,
    namespaces: BTreeMap<&'static str, BTreeMap<String, String>>,
}

fn in_block(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

impl World {
    /// Whether `policy`'s `peer` is `end`.
    fn peer_is(&self, policy: &Policy, peer: &Peer, end: End<'_>) -> bool {
        match peer {
            Peer::Block { cidr, except } => {
                let ip = end.ip(self.lan);
                in_block(ip, *cidr) && !except.iter().any(|e| in_block(ip, *e))
            }
            Peer::Pods { pods, namespaces } => {
                let End::Pod(pod) = end else { return false };
                let ns_ok = match namespaces {
                    None => pod.namespace == policy.namespace,
                    Some(s) => s.matches(&self.namespaces[pod.namespace]),
                };
                ns_ok && pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
        }
    }

    /// Whether a rule port admits `udp`/`port` to `dst` (named ports are
    /// the destination pod's).
    fn port_is(port: &Port, udp: bool, number: u16, dst: End<'_>) -> bool {
        if port.udp != udp {
            return false;
        }
        match &port.port {
            None => true,
            Some(PortRef::Number(first)) => (*first..=port.end.unwrap_or(*first)).contains(&number),
            Some(PortRef::Name(name)) => match dst {
                End::Pod(p) => p.ports.iter().any(|(n, u, num)| n == name && *u == udp && *num == number),
                _ => false,
            },
        }
    }

    /// The spec's verdict on a connection from `src` to `dst`.
    fn allowed(&self, policies: &[Policy], src: End<'_>, dst: End<'_>, udp: bool, port: u16) -> bool {
        if src == dst {
            return true;
        }
        // One direction: isolated once a policy of that type selects the
        // pod; then some rule of those policies must admit the other end.
        let side = |pod: End<'_>, other: End<'_>, direction: &str| -> bool {
            let End::Pod(me) = pod else { return true };
            let selecting: Vec<&Policy> = policies
                .iter()
                .filter(|p| p.namespace == me.namespace && p.select.matches(&me.labels))
                .filter(|p| p.types().contains(&direction))
                .collect();
            if selecting.is_empty() {
                return true;
            }
            selecting.iter().any(|p| {
                let rules = if direction == "Ingress" { &p.ingress } else { &p.egress };
                rules.iter().any(|r| {
                    (r.peers.is_empty() || r.peers.iter().any(|peer| self.peer_is(p, peer, other)))
                        && (r.ports.is_empty() || r.ports.iter().any(|pt| World::port_is(pt, udp, port, dst)))
                })
            })
        };
        side(src, dst, "Egress") && side(dst, src, "Ingress")
    }
}

// ---------------------------------------------------------------------------
// The harness: pods, probes, tables.

/// Where the table runs: one node with a lan of its own, or a cluster
/// whose lan bridge is the lan host.
enum Site {
    // The lan goes first: its link lives in the node's namespace.
    One { lan: Outside, node: Node },
    Cluster { cluster: Cluster, lan_server: Child },
}

struct Table {
    site: Site,
    world: World,
    probe: String,
    /// Policies applied now, to delete before the next scenario.
    applied: Vec<Policy>,
    /// The ClusterIP of Service svc-a in x, whose one backend is x/a.
    service_ip: Ipv4Addr,
}

/// A target of a probe: kind, address, port (the cell's column).
#[derive(Clone, PartialEq)]
struct Target {
    udp: bool,
    port: u16,
    ip: Ipv4Addr,
    dns: bool,
    /// The address policy judges, when it is not `ip`: a ClusterIP's backend.
    backend: Option<Ipv4Addr>,
}

impl Target {
    fn arg(&self) -> String {
        match (self.dns, self.udp) {
            (true, _) => format!("dns:{}", self.ip),
            (false, true) => format!("udp:{}:{}", self.ip, self.port),
            (false, false) => format!("tcp:{}:{}", self.ip, self.port),
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Site::Cluster { lan_server, .. } = &mut self.site {
            let _ = lan_server.kill();
            let _ = lan_server.wait();
        }
    }
}

impl Table {
    /// A table on one node (`nodes` 1) or a cluster of `nodes`; pods are
    /// spread so that every namespace spans the nodes.
    fn start(nodes: usize) -> Table {
        podnet_e2e::require_root();
        assert!(
            std::path::Path::new("/usr/bin/python3").is_file(),
            "/usr/bin/python3 is missing: apt-get install python3"
        );
        let (site, lan) = match nodes {
            1 => {
                let node = Node::start("netpol");
                let lan = Outside::attach(&node);
                (Site::One { lan, node }, LAN_HOST)
            }
            n => {
                let cluster = Cluster::start("npc", n - 1);
                let server = cluster.server().dir.join("server.py");
                std::fs::write(&server, SERVER).unwrap();
                let lan_server = Command::new("ip")
                    .args(["netns", "exec", &cluster.lan, "/usr/bin/python3"])
                    .arg(&server)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("the lan's server");
                (Site::Cluster { cluster, lan_server }, CLUSTER_LAN_HOST)
            }
        };
        let mut table = Table {
            site,
            world: World { pods: Vec::new(), namespaces: BTreeMap::new(), lan },
            probe: String::new(),
            applied: Vec::new(),
            service_ip: Ipv4Addr::UNSPECIFIED,
        };
        let dir = table.node().dir.clone();
        let server = dir.join("server.py");
        std::fs::write(&server, SERVER).unwrap();
        let probe = dir.join("probe.py");
        std::fs::write(&probe, PROBE).unwrap();
        std::fs::write(dir.join("stream.py"), STREAM).unwrap();
        table.probe = probe.to_string_lossy().into_owned();
        if let Site::One { lan, node } = &mut table.site {
            lan.spawn(&["/usr/bin/python3", server.to_str().unwrap()], &node.dir.join("lan-server.log"));
        }
        // Namespaces: x and y are team=blue, z team=red.
        let mut docs = Vec::new();
        for ns in NAMESPACES {
            let team = if ns == "z" { "red" } else { "blue" };
            docs.push(json!({ "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": ns, "labels": { "team": team } } }));
            table.world.namespaces.insert(
                ns,
                BTreeMap::from([
                    ("team".to_string(), team.to_string()),
                    ("kubernetes.io/metadata.name".to_string(), ns.to_string()),
                ]),
            );
        }
        table.apply_json(&json!({ "apiVersion": "v1", "kind": "List", "items": docs }));
        // Pods: labelled pod=NAME; the named port `serve` is TCP 80 on a
        // and b, 81 on c (a named port resolves per pod). Pod j of
        // namespace i runs on node (i + j) % nodes.
        let names: Vec<String> = table.nodes().iter().map(|n| n.name.clone()).collect();
        for (i, ns) in NAMESPACES.into_iter().enumerate() {
            for (j, pod) in PODS.into_iter().enumerate() {
                let serve = if pod == "c" { "serve:81/TCP" } else { "serve:80/TCP" };
                let label = format!("pod={pod}");
                let on = &names[(i + j) % names.len()];
                table.node().ok(&[
                    "run",
                    pod,
                    "-n",
                    ns,
                    "-l",
                    &label,
                    "--port",
                    serve,
                    "--node",
                    on,
                    "--",
                    "/usr/bin/python3",
                    server.to_str().unwrap(),
                ]);
            }
        }
        let pods = eventually(Duration::from_secs(60), "the 9 pods to run", || {
            let pods = table.node().pods();
            let ready = pods.iter().filter(|p| p["status"]["containerStatuses"][0]["ready"] == true).count();
            (ready == 9).then_some(pods)
        });
        for p in pods {
            let ns = NAMESPACES.into_iter().find(|n| p["metadata"]["namespace"] == *n).unwrap();
            let name = PODS.into_iter().find(|n| p["metadata"]["name"] == *n).unwrap();
            let node =
                names.iter().position(|n| p["spec"]["nodeName"] == n.as_str()).expect("a node of the table");
            table.world.pods.push(ModelPod {
                namespace: ns,
                name,
                ip: p["status"]["podIP"].as_str().unwrap().parse().unwrap(),
                labels: BTreeMap::from([("pod".to_string(), name.to_string())]),
                ports: vec![("serve", false, if name == "c" { 81 } else { 80 })],
                node,
            });
        }
        table.world.pods.sort_by_key(|p| (p.namespace, p.name));
        table.node().ok(&["expose", "pod", "a", "-n", "x", "--port", "80", "--name", "svc-a"]);
        let svc: Value =
            serde_json::from_str(&table.node().ok(&["get", "svc", "svc-a", "-n", "x", "-o", "json"]))
                .unwrap();
        table.service_ip = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        table
    }

    /// The node policies are applied through (the server of a cluster).
    fn node(&self) -> &Node {
        &self.nodes()[0]
    }

    fn nodes(&self) -> &[Node] {
        match &self.site {
            Site::One { node, .. } => std::slice::from_ref(node),
            Site::Cluster { cluster, .. } => &cluster.nodes,
        }
    }

    fn apply_json(&self, value: &Value) -> String {
        let file = self.node().dir.join("apply.json");
        std::fs::write(&file, value.to_string()).unwrap();
        self.node().ok(&["apply", "-f", file.to_str().unwrap()])
    }

    /// Replaces the policies in force with `policies`.
    fn set(&mut self, policies: &[Policy]) {
        for old in std::mem::take(&mut self.applied) {
            if !policies.iter().any(|p| p.name == old.name && p.namespace == old.namespace) {
                self.node().ok(&["delete", "netpol", old.name, "-n", old.namespace]);
            }
        }
        if !policies.is_empty() {
            let items: Vec<Value> = policies.iter().map(Policy::json).collect();
            self.apply_json(&json!({ "apiVersion": "v1", "kind": "List", "items": items }));
        }
        self.applied = policies.to_vec();
    }

    fn targets(&self) -> Vec<(String, Target)> {
        let mut targets = Vec::new();
        for pod in &self.world.pods {
            for (udp, port) in [(false, 80), (false, 81), (true, 80), (true, 81)] {
                let label =
                    format!("{}/{}:{}/{port}", pod.namespace, pod.name, if udp { "udp" } else { "tcp" });
                targets.push((label, Target { udp, port, ip: pod.ip, dns: false, backend: None }));
            }
        }
        let lan = self.world.lan;
        let to = |udp, port, ip, dns| Target { udp, port, ip, dns, backend: None };
        targets.push(("lan:tcp/80".into(), to(false, 80, lan, false)));
        targets.push(("lan:udp/81".into(), to(true, 81, lan, false)));
        targets.push(("dns".into(), to(true, 53, CLUSTER_DNS, true)));
        // ClusterIP traffic is judged on the backend, after translation.
        let backend = Some(self.pod_ip("x", "a"));
        targets.push(("svc-a.x:tcp/80".into(), Target { backend, ..to(false, 80, self.service_ip, false) }));
        targets
    }

    /// What the model expects of every (client pod, target) cell.
    fn expected(&self, policies: &[Policy]) -> BTreeMap<(String, String), bool> {
        let mut cells = BTreeMap::new();
        for src in &self.world.pods {
            for (label, t) in self.targets() {
                let judged = t.backend.unwrap_or(t.ip);
                let dst = match (t.dns, self.world.pods.iter().find(|p| p.ip == judged)) {
                    (true, _) => End::Dns,
                    (false, Some(p)) => End::Pod(p),
                    (false, None) => End::Lan,
                };
                let ok = self.world.allowed(policies, End::Pod(src), dst, t.udp, t.port);
                cells.insert((format!("{}/{}", src.namespace, src.name), label), ok);
            }
        }
        cells
    }

    /// Every cell as the pods see it (one exec per client pod, in parallel).
    fn observed(&self) -> BTreeMap<(String, String), bool> {
        let targets = self.targets();
        let args: Vec<String> = targets.iter().map(|(_, t)| t.arg()).collect();
        let outputs: Vec<(String, Output)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .world
                .pods
                .iter()
                .map(|pod| {
                    let args = &args;
                    s.spawn(move || {
                        let mut command = Command::new(podnet_bin());
                        command
                            .args([
                                "exec",
                                pod.name,
                                "-n",
                                pod.namespace,
                                "--",
                                "/usr/bin/python3",
                                &self.probe,
                            ])
                            .args(args)
                            .env("PODNET_SOCKET", &self.nodes()[pod.node].socket);
                        (format!("{}/{}", pod.namespace, pod.name), command.output().expect("podnet exec"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut cells = BTreeMap::new();
        for (src, out) in outputs {
            assert!(out.status.success(), "probe from {src} failed: {}", stderr(&out));
            let text = stdout(&out);
            let seen: BTreeMap<&str, bool> =
                text.lines().filter_map(|l| l.split_once(' ')).map(|(t, r)| (t, r == "1")).collect();
            for ((label, _), arg) in targets.iter().zip(&args) {
                let ok = *seen
                    .get(arg.as_str())
                    .unwrap_or_else(|| panic!("no result for {arg} from {src}: {text}"));
                cells.insert((src.clone(), label.clone()), ok);
            }
        }
        cells
    }

    /// Applies `policies` and checks every cell against the model. A cell
    /// that differs is probed again (up to three rounds, as a change may
    /// still be on its way to the switch) before the scenario fails.
    fn check(&mut self, scenario: &str, policies: &[Policy]) {
        self.set(policies);
        let expected = self.expected(policies);
        let mut wrong = Vec::new();
        for round in 0..3 {
            let observed = self.observed();
            wrong = expected
                .iter()
                .filter(|(cell, want)| observed[*cell] != **want)
                .map(|((src, dst), want)| {
                    format!("{src} -> {dst}: expected {}", if *want { "open" } else { "closed" })
                })
                .collect();
            if wrong.is_empty() {
                break;
            }
            if round < 2 {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        assert!(
            wrong.is_empty(),
            "scenario `{scenario}`: {} cells differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        let allowed = expected.values().filter(|v| **v).count();
        eprintln!("scenario `{scenario}`: {} cells match ({allowed} open)", expected.len());
    }

    fn pod_ip(&self, ns: &str, name: &str) -> Ipv4Addr {
        self.world.pods.iter().find(|p| p.namespace == ns && p.name == name).unwrap().ip
    }
}

// ---------------------------------------------------------------------------
// Scenarios.

fn policy(name: &'static str, namespace: &'static str, select: Sel) -> Policy {
    Policy { name, namespace, select, types: None, ingress: Vec::new(), egress: Vec::new() }
}

fn pods(s: &[(&'static str, &'static str)]) -> Peer {
    Peer::Pods { pods: Some(sel(s)), namespaces: None }
}

fn namespaces(s: &[(&'static str, &'static str)]) -> Peer {
    Peer::Pods { pods: None, namespaces: Some(sel(s)) }
}

fn tcp(port: u16) -> Port {
    Port { udp: false, port: Some(PortRef::Number(port)), end: None }
}

fn udp(port: u16) -> Port {
    Port { udp: true, port: Some(PortRef::Number(port)), end: None }
}

fn from(peers: Vec<Peer>, ports: Vec<Port>) -> Rule {
    Rule { peers, ports }
}

fn deny_ingress(ns: &'static str) -> Policy {
    Policy { types: Some(vec!["Ingress"]), ..policy("deny-ingress", ns, Sel::default()) }
}

fn deny_egress(ns: &'static str) -> Policy {
    Policy { types: Some(vec!["Egress"]), ..policy("deny-egress", ns, Sel::default()) }
}

#[test]
fn network_policy_truth_tables_on_one_node() {
    scenarios(&mut Table::start(1));
}

/// The same tables across a server and two members: every namespace spans
/// the three nodes, so ingress is judged on the destination's node and
/// egress on the source's, across the overlay.
#[test]
fn network_policy_truth_tables_across_three_nodes() {
    scenarios(&mut Table::start(3));
}

/// At least 25 scenarios, each a whole truth table.
fn scenarios(t: &mut Table) {
    let a = sel(&[("pod", "a")]);
    let yb = t.pod_ip("y", "b");
    let lan = (Ipv4Addr::from(u32::from(t.world.lan) & 0xffff_ff00), 24);
    let one_node = t.nodes().len() == 1;

    if one_node {
        t.node()
            .ok(&["expose", "pod", "a", "-n", "x", "--port", "80", "--name", "np-a", "--type", "NodePort"]);
    }
    t.check("no policy: everything open", &[]);

    // Default deny each way, and allow-all.
    t.check("default deny ingress in x", &[deny_ingress("x")]);
    // The node itself is exempt: probes and proxied node ports come from it.
    let xa = t.pod_ip("x", "a");
    let xa_node = &t.nodes()[t.world.pods.iter().find(|p| p.ip == xa).unwrap().node];
    let node_probe = xa_node.on_node(&["/usr/bin/python3", &t.probe, &format!("tcp:{xa}:80")]);
    assert_eq!(stdout(&node_probe).trim(), format!("tcp:{xa}:80 1"), "the node reaches an isolated pod");
    if let Site::One { lan, node } = &t.site {
        // A node port reaches the isolated pod: the agent proxies it from
        // the node, which is exempt (as kube-proxy's SNAT makes the node
        // the client).
        let svc: Value =
            serde_json::from_str(&node.ok(&["get", "svc", "np-a", "-n", "x", "-o", "json"])).unwrap();
        let target = format!("tcp:{}:{}", lan.node_ip, svc["spec"]["ports"][0]["nodePort"]);
        let out = lan.run(&["/usr/bin/python3", &t.probe, &target]);
        assert_eq!(stdout(&out).trim(), format!("{target} 1"), "the lan reaches x/a through its node port");
    }
    if one_node {
        // Denials are counted: on the sender's port by direction, and on
        // the isolated pod.
        assert!(t.node().drops("x/a", "ingress_denied") > 0);
        assert!(t.node().drops("y/b", "policy_ingress") > 0);
    }
    t.check("default deny egress in x", &[deny_egress("x")]);
    if one_node {
        assert!(t.node().drops("x/a", "policy_egress") > 0);
    }
    t.check(
        "default deny both ways in y",
        &[Policy { types: Some(vec!["Ingress", "Egress"]), ..policy("deny-all", "y", Sel::default()) }],
    );
    t.check(
        "allow all ingress in x beside a default deny",
        &[
            deny_ingress("x"),
            Policy { ingress: vec![Rule::default()], ..policy("allow-all", "x", Sel::default()) },
        ],
    );
    t.check(
        "allow all egress in z, ingress denied",
        &[Policy {
            types: Some(vec!["Ingress", "Egress"]),
            egress: vec![Rule::default()],
            ..policy("egress-only", "z", Sel::default())
        }],
    );

    // Pod and namespace selectors.
    t.check(
        "x/a from pods b of x",
        &[Policy {
            ingress: vec![from(vec![pods(&[("pod", "b")])], vec![])],
            ..policy("a-from-b", "x", a.clone())
        }],
    );
    t.check(
        "x/a from namespaces team=blue",
        &[Policy {
            ingress: vec![from(vec![namespaces(&[("team", "blue")])], vec![])],
            ..policy("a-from-blue", "x", a.clone())
        }],
    );
    t.check(
        "x/a from pod c in team=red (both in one peer: AND)",
        &[Policy {
            ingress: vec![from(
                vec![Peer::Pods {
                    pods: Some(sel(&[("pod", "c")])),
                    namespaces: Some(sel(&[("team", "red")])),
                }],
                vec![],
            )],
            ..policy("a-from-red-c", "x", a.clone())
        }],
    );
    t.check(
        "x/a from pods c of x or team=red (two peers: OR)",
        &[Policy {
            ingress: vec![from(vec![pods(&[("pod", "c")]), namespaces(&[("team", "red")])], vec![])],
            ..policy("a-from-c-or-red", "x", a.clone())
        }],
    );
    t.check(
        "x from the namespace named z (kubernetes.io/metadata.name)",
        &[Policy {
            ingress: vec![from(vec![namespaces(&[("kubernetes.io/metadata.name", "z")])], vec![])],
            ..policy("x-from-z", "x", Sel::default())
        }],
    );
    t.check(
        "pods of y not in (c) isolated, from every namespace's b",
        &[Policy {
            ingress: vec![from(
                vec![Peer::Pods { pods: Some(sel(&[("pod", "b")])), namespaces: Some(Sel::default()) }],
                vec![],
            )],
            ..policy("y-from-any-b", "y", Sel { labels: vec![], not_in: vec![("pod", vec!["c"])] })
        }],
    );

    // Ports.
    t.check(
        "x/a on TCP 80 only",
        &[Policy { ingress: vec![from(vec![], vec![tcp(80)])], ..policy("a-tcp-80", "x", a.clone()) }],
    );
    t.check(
        "x/a on UDP 81 only",
        &[Policy { ingress: vec![from(vec![], vec![udp(81)])], ..policy("a-udp-81", "x", a.clone()) }],
    );
    t.check(
        "x/a on TCP 80 to 81 (endPort)",
        &[Policy {
            ingress: vec![from(
                vec![],
                vec![Port { udp: false, port: Some(PortRef::Number(80)), end: Some(81) }],
            )],
            ..policy("a-range", "x", a.clone())
        }],
    );
    t.check(
        "x/a on every UDP port from y",
        &[Policy {
            ingress: vec![from(
                vec![namespaces(&[("kubernetes.io/metadata.name", "y")])],
                vec![Port { udp: true, port: None, end: None }],
            )],
            ..policy("a-udp-from-y", "x", a.clone())
        }],
    );
    t.check(
        "x on the named port serve (80 on a and b, 81 on c)",
        &[Policy {
            ingress: vec![from(
                vec![],
                vec![Port { udp: false, port: Some(PortRef::Name("serve")), end: None }],
            )],
            ..policy("x-serve", "x", Sel::default())
        }],
    );
    t.check(
        "egress from x/a to serve in y (resolved on each peer)",
        &[Policy {
            egress: vec![from(
                vec![namespaces(&[("kubernetes.io/metadata.name", "y")])],
                vec![Port { udp: false, port: Some(PortRef::Name("serve")), end: None }],
            )],
            ..policy("a-to-y-serve", "x", a.clone())
        }],
    );

    // Address blocks.
    t.check(
        "x from the pod range except y/b (ipBlock with except)",
        &[Policy {
            ingress: vec![from(
                vec![Peer::Block { cidr: (Ipv4Addr::new(10, 244, 0, 0), 16), except: vec![(yb, 32)] }],
                vec![],
            )],
            ..policy("x-from-range", "x", Sel::default())
        }],
    );
    t.check(
        "egress from z to the lan only",
        &[Policy {
            egress: vec![from(vec![Peer::Block { cidr: lan, except: vec![] }], vec![])],
            ..policy("z-to-lan", "z", Sel::default())
        }],
    );
    t.check(
        "egress from z anywhere but the lan",
        &[Policy {
            egress: vec![from(
                vec![Peer::Block { cidr: (Ipv4Addr::new(0, 0, 0, 0), 0), except: vec![lan] }],
                vec![],
            )],
            ..policy("z-not-lan", "z", Sel::default())
        }],
    );

    // DNS is egress like any other.
    t.check("egress deny in x stops DNS too", &[deny_egress("x")]);
    t.check(
        "egress deny in x with DNS allowed",
        &[
            deny_egress("x"),
            Policy {
                egress: vec![from(vec![], vec![udp(53)])],
                types: Some(vec!["Egress"]),
                ..policy("dns", "x", Sel::default())
            },
        ],
    );

    // Policies add up, in several namespaces at once.
    t.check(
        "two policies on x/a add up",
        &[
            Policy {
                ingress: vec![from(vec![pods(&[("pod", "b")])], vec![])],
                ..policy("a-from-b", "x", a.clone())
            },
            Policy {
                ingress: vec![from(vec![namespaces(&[("team", "red")])], vec![tcp(81)])],
                ..policy("a-from-red", "x", a.clone())
            },
        ],
    );
    t.check(
        "x only from y, y only to x",
        &[
            Policy {
                ingress: vec![from(vec![namespaces(&[("kubernetes.io/metadata.name", "y")])], vec![])],
                ..policy("x-from-y", "x", Sel::default())
            },
            Policy {
                types: Some(vec!["Egress"]),
                egress: vec![from(vec![namespaces(&[("kubernetes.io/metadata.name", "x")])], vec![])],
                ..policy("y-to-x", "y", Sel::default())
            },
        ],
    );

    // A policy changed in place, then removed: connectivity follows.
    let a_from = |pod: &'static str| {
        vec![Policy {
            ingress: vec![from(vec![pods(&[("pod", pod)])], vec![])],
            ..policy("a-from", "x", a.clone())
        }]
    };
    t.check("x/a from b (before the change)", &a_from("b"));
    // A change closes the connections it no longer admits: a UDP flow from
    // x/b to x/a, echoed before the change, is silent after it.
    let xb = t.world.pods.iter().find(|p| p.namespace == "x" && p.name == "b").unwrap();
    let socket = t.nodes()[xb.node].socket.clone();
    let script = t.node().dir.join("stream.py");
    let xa = t.pod_ip("x", "a").to_string();
    let out = std::thread::scope(|s| {
        let stream = s.spawn(move || {
            Command::new(podnet_bin())
                .args(["exec", "b", "-n", "x", "--", "/usr/bin/python3"])
                .arg(&script)
                .args([xa.as_str(), "80", "40"])
                .env("PODNET_SOCKET", &socket)
                .output()
                .expect("podnet exec")
        });
        std::thread::sleep(Duration::from_millis(1500));
        t.set(&a_from("c"));
        stream.join().unwrap()
    });
    let echoes: Vec<bool> = stdout(&out).lines().map(|l| l == "1").collect();
    assert_eq!(echoes.len(), 40, "{}{}", stdout(&out), stderr(&out));
    assert!(echoes[..3].iter().all(|e| *e), "the flow was echoed before the change: {echoes:?}");
    assert!(echoes[35..].iter().all(|e| !*e), "and is cut after it: {echoes:?}");
    t.check("x/a from c (the same policy changed)", &a_from("c"));
    t.check("policies removed: everything open again", &[]);
}

/// `podnet get/describe/delete networkpolicy`, and what bad manifests get.
#[test]
fn network_policies_are_listed_described_and_refused_clearly() {
    let node = Node::start("netpol-cli");
    let file = node.dir.join("p.yaml");
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-only, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: 5432}]\n";
    std::fs::write(&file, policy).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(node.ok(&["apply", "-f", f]), "networkpolicy.networking.k8s.io/db-only created\n");
    assert_eq!(node.ok(&["apply", "-f", f]), "networkpolicy.networking.k8s.io/db-only unchanged\n");
    let list = node.ok(&["get", "netpol", "-n", "shop"]);
    let mut lines = list.lines();
    assert!(lines.next().unwrap().split_whitespace().eq(["NAME", "POD-SELECTOR", "AGE"]), "{list}");
    assert!(lines.next().unwrap().starts_with("db-only   app=db"), "{list}");
    let described = node.ok(&["describe", "networkpolicy", "db-only", "-n", "shop"]);
    let mut want = String::new();
    let _ = writeln!(want, "  PodSelector:     app=db");
    assert!(described.contains(&want), "{described}");
    assert!(
        described.contains("To Port: 5432/TCP") && described.contains("PodSelector: app=web"),
        "{described}"
    );
    assert!(
        described.contains("Not affecting egress traffic") && described.contains("Policy Types: Ingress"),
        "{described}"
    );
    let json: Value =
        serde_json::from_str(&node.ok(&["get", "networkpolicies", "-A", "-o", "json"])).unwrap();
    assert_eq!(json["items"][0]["spec"]["policyTypes"], json!(["Ingress"]), "{json}");
    // Bad input: one line naming the field, nothing stored.
    for (from, to, needle) in [
        (
            "ports: [{port: 5432}]",
            "ports: [{port: 5432, protocol: SCTP}]",
            "protocol: Unsupported value: \"SCTP\"",
        ),
        ("ports: [{port: 5432}]", "ports: [{port: 5432, endPort: 80}]", "endPort 80 is below port 5432"),
        (
            "- from: [{podSelector",
            "- from: [{ipBlock: {cidr: 10.0.0.1/8}}, {podSelector",
            "write its network, 10.0.0.0/8",
        ),
        (
            "- from: [{podSelector",
            "- from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}, {podSelector",
            "not strictly inside",
        ),
        (
            "  podSelector: {matchLabels: {app: db}}",
            "  podSelectr: {matchLabels: {app: db}}",
            "unknown field \"spec.podSelectr\"",
        ),
    ] {
        let bad = policy.replace("db-only", "bad").replace(from, to);
        std::fs::write(&file, bad).unwrap();
        node.fails(&["apply", "-f", f], needle);
    }
    node.fails(&["get", "netpol", "bad", "-n", "shop"], "not found");
    node.ok(&["delete", "netpol", "db-only", "-n", "shop"]);
    node.fails(&["delete", "netpol", "db-only", "-n", "shop"], "not found");
    // Namespace labels through apply.
    std::fs::write(&file, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n")
        .unwrap();
    assert_eq!(node.ok(&["apply", "-f", f]), "namespace/shop created\n");
    std::fs::write(&file, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: b}}\n")
        .unwrap();
    assert_eq!(node.ok(&["apply", "-f", f]), "namespace/shop configured\n");
}

/// kubectl against the Kubernetes API: apply, get (Table), describe,
/// label a namespace, delete (which waits on a watch).
#[test]
fn kubectl_applies_lists_describes_and_deletes_network_policies() {
    use podnet_e2e::kubectl::{KUBECTL, fails, node_with_address, ok};
    podnet_e2e::require(KUBECTL, "kubectl");
    let node = node_with_address("netpol-kubectl", None);
    let file = node.dir.join("policy.yaml");
    let f = file.to_str().unwrap();
    // The protocol is written out: a live policy shows its defaulted TCP,
    // and kubectl's three-way patch replaces a list without a merge key
    // that differs from the live one, so a file without it is
    // "configured" on every apply (as against any API server).
    let manifest = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: db-only, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  ingress:\n  - from:\n    - podSelector: {{matchLabels: {{app: web}}}}\n      namespaceSelector: {{matchExpressions: [{{key: team, operator: In, values: [a]}}]}}\n    ports: [{{protocol: TCP, port: {port}}}]\n"
        )
    };
    std::fs::write(&file, manifest(5432)).unwrap();
    assert_eq!(
        ok(&node, &["apply", "-f", f]).trim(),
        "namespace/shop created\nnetworkpolicy.networking.k8s.io/db-only created"
    );
    assert_eq!(
        ok(&node, &["apply", "-f", f]).trim(),
        "namespace/shop unchanged\nnetworkpolicy.networking.k8s.io/db-only unchanged"
    );
    std::fs::write(&file, manifest(5433)).unwrap();
    assert!(ok(&node, &["apply", "-f", f]).contains("networkpolicy.networking.k8s.io/db-only configured"));
    let table = ok(&node, &["get", "netpol", "-n", "shop"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().split_whitespace().eq(["NAME", "POD-SELECTOR", "AGE"]), "{table}");
    assert!(lines.next().unwrap().split_whitespace().take(2).eq(["db-only", "app=db"]), "{table}");
    let policy = podnet_e2e::kubectl::json(&ok(
        &node,
        &["get", "networkpolicy", "db-only", "-n", "shop", "-o", "json"],
    ));
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 5433, "{policy}");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let described = ok(&node, &["describe", "netpol", "db-only", "-n", "shop"]);
    assert!(described.contains("PodSelector:     app=db") && described.contains("5433/TCP"), "{described}");
    // The same policy through podnet's own CLI.
    assert!(node.ok(&["get", "netpol", "-A"]).contains("db-only"));
    // Namespace labels, for namespaceSelector.
    ok(&node, &["label", "namespace", "shop", "team=a"]);
    let labels = ok(&node, &["get", "namespace", "shop", "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains("\"team\":\"a\"") && labels.contains("\"kubernetes.io/metadata.name\":\"shop\""),
        "{labels}"
    );
    // Refusals come back as the API server's 422 with the field.
    std::fs::write(&file, manifest(5432).replace("protocol: TCP, port: 5432", "protocol: SCTP, port: 5432"))
        .unwrap();
    fails(&node, &["apply", "-f", f], "spec.ingress[0].ports[0].protocol");
    std::fs::write(
        &file,
        manifest(5432)
            .replace("  podSelector: {matchLabels: {app: db}}", "  podSelectr: {matchLabels: {app: db}}"),
    )
    .unwrap();
    fails(&node, &["apply", "-f", f], "unknown field \"spec.podSelectr\"");
    ok(&node, &["delete", "netpol", "db-only", "-n", "shop"]);
    assert!(node.ok(&["get", "netpol", "-A"]).is_empty());
}
