//! podnet as a CNI plugin: the podnet binary invoked as runtimes invoke a
//! plugin (CNI_* environment, the network config on stdin) against
//! network namespaces the test makes, in the manner of the reference
//! plugins' tests; then real podman with its CNI backend.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use podnet_e2e::sandbox::Sandbox;
use podnet_e2e::{Node, busybox, eventually, oci, podnet_bin, require, stderr, stdout};
use serde_json::{Value, json};

/// What one plugin call printed, and its exit status.
struct Call {
    code: i32,
    out: Value,
    text: String,
}

/// Calls the podnet binary as a runtime calls a CNI plugin.
fn cni(command: &str, env: &[(&str, &str)], config: &Value) -> Call {
    let mut child = Command::new(podnet_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/usr/lib/cni")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // A plugin that refuses an oversized config stops reading it.
    let _ = child.stdin.take().unwrap().write_all(config.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        text.is_empty() || !value.is_null(),
        "the plugin printed something that is not JSON: {text:?} {}",
        stderr(&out)
    );
    Call { code: out.status.code().unwrap_or(-1), out: value, text }
}

fn conf(node: &Node, version: &str) -> Value {
    json!({ "cniVersion": version, "name": "podnet", "type": "podnet", "socket": node.socket })
}

fn env<'a>(id: &'a str, sandbox: &'a Sandbox, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    let _ = sandbox;
    vec![("CNI_CONTAINERID", id), ("CNI_NETNS", netns), ("CNI_IFNAME", "eth0")]
}

/// ADD, asserting success; the result.
fn add(node: &Node, id: &str, sandbox: &Sandbox, args: &str) -> Value {
    let netns = sandbox.path();
    let mut env = env(id, sandbox, &netns);
    env.push(("CNI_ARGS", args));
    let call = cni("ADD", &env, &conf(node, "1.0.0"));
    assert_eq!(call.code, 0, "ADD failed: {}\n{}", call.text, node.agent_log());
    call.out
}

fn error_code(call: &Call) -> u64 {
    assert_ne!(call.code, 0, "should fail: {}", call.text);
    assert!(call.out["msg"].is_string() && call.out["details"].is_string(), "{}", call.text);
    call.out["code"].as_u64().unwrap()
}

fn pod_json(node: &Node, name: &str) -> Option<Value> {
    node.pods().into_iter().find(|p| p["metadata"]["name"] == name)
}

/// A podnet pod `web` serving "from a podnet pod" behind a Service of its
/// name on port 80, and a pod `client` to fetch from; both running.
fn web_and_client(node: &Node) {
    let bb = busybox();
    let www = node.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "from a podnet pod\n").unwrap();
    let www = www.to_string_lossy().into_owned();
    node.ok(&["run", "web", "--labels", "app=web", "--", &bb, "httpd", "-f", "-p", "8080", "-h", &www]);
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.ok(&["expose", "pod", "web", "--port", "80", "--target-port", "8080"]);
    node.wait_running("web");
    node.wait_running("client");
}

#[test]
fn add_plugs_a_container_into_the_switch_as_a_pod_and_del_unplugs_it() {
    let node = Node::start("cni-add");
    let bb = busybox();
    let mut sandbox = Sandbox::new(&node, "cam");
    let result =
        add(&node, "c0ffee01", &sandbox, "IgnoreUnknown=1;K8S_POD_NAME=cam;K8S_POD_NAMESPACE=default");

    // The result, as runtimes read it.
    assert_eq!(result["cniVersion"], "1.0.0");
    let iface = &result["interfaces"][0];
    assert_eq!(iface["name"], "eth0");
    assert_eq!(iface["sandbox"].as_str().unwrap(), sandbox.path());
    let address = result["ips"][0]["address"].as_str().unwrap().to_string();
    let ip = address.split('/').next().unwrap().to_string();
    assert!(address.starts_with("10.244.0.") && address.ends_with("/24"), "{address}");
    assert_eq!(result["ips"][0]["interface"], 0);
    assert_eq!(result["ips"][0]["gateway"], "10.244.0.1");
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(result["dns"]["nameservers"][0], "10.96.0.10");
    assert_eq!(result["dns"]["search"][0], "default.svc.cluster.local");
    let octets: Vec<String> = ip.split('.').map(|o| format!("{:02x}", o.parse::<u8>().unwrap())).collect();
    assert_eq!(iface["mac"].as_str().unwrap(), format!("0a:58:{}", octets.join(":")));

    // The interface in the container's namespace is as reported.
    let link = stdout(&sandbox.run(&["ip", "-o", "addr", "show", "eth0"]));
    assert!(link.contains(&address), "{link}");
    let link = stdout(&sandbox.run(&["ip", "-o", "link", "show", "eth0"]));
    assert!(link.contains(iface["mac"].as_str().unwrap()), "{link}");

    // A pod to podnet: address, node, runtime.
    let pod = pod_json(&node, "cam").expect("pod cam listed");
    assert_eq!(pod["status"]["podIP"], ip.as_str());
    assert_eq!(pod["spec"]["nodeName"], node.name.as_str());
    assert_eq!(pod["status"]["containerStatuses"][0]["containerID"], "cni://c0ffee01");
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true);
    let wide = node.ok(&["get", "pods", "-A", "-o", "wide"]);
    let row = wide.lines().find(|l| l.split_whitespace().nth(1) == Some("cam")).unwrap();
    assert!(row.contains(&ip) && row.contains(&node.name) && row.trim_end().ends_with("cni"), "{wide}");

    // The container reaches a podnet pod by its Service name, and pods reach
    // the container through a Service over it (`podnet label`, `expose`).
    web_and_client(&node);
    sandbox.resolv_conf(&result);
    let got = eventually(Duration::from_secs(15), "the container to reach web by name", || {
        let out = sandbox.run(&["timeout", "3", &bb, "wget", "-q", "-O-", "http://web"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(got, "from a podnet pod\n");
    sandbox.serve(&node.dir, "from the cni container\n");
    node.ok(&["label", "pod", "cam", "app=cam"]);
    node.fails(&["label", "pod", "cam", "app=other"], "--overwrite");
    node.fails(&["exec", "cam", "--", "true"], "podman exec");
    node.ok(&["expose", "pod", "cam", "--port", "80"]);
    let got = eventually(Duration::from_secs(15), "a pod to reach the container by name", || {
        let out = node.exec("client", &["timeout", "3", &bb, "wget", "-q", "-O-", "http://cam"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(got, "from the cni container\n");
    // NetworkPolicy selects it like any pod: a default deny of its ingress
    // shuts the Service out, and deleting the policy lets it in again.
    let deny = node.dir.join("deny-cam.yaml");
    std::fs::write(
        &deny,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-cam, namespace: default}\n\
         spec: {podSelector: {matchLabels: {app: cam}}, policyTypes: [Ingress]}\n",
    )
    .unwrap();
    node.ok(&["apply", "-f", deny.to_str().unwrap()]);
    eventually(Duration::from_secs(15), "the policy to shut the container off", || {
        let out = node.exec("client", &["timeout", "3", &bb, "wget", "-q", "-O-", "http://cam"]);
        (!out.status.success()).then_some(())
    });
    assert!(node.drops("default/cam", "ingress_denied") > 0, "{}", node.ok(&["node", "stats"]));
    node.ok(&["delete", "networkpolicy", "deny-cam"]);
    eventually(Duration::from_secs(15), "the container to be reachable again", || {
        let out = node.exec("client", &["timeout", "3", &bb, "wget", "-q", "-O-", "http://cam"]);
        out.status.success().then_some(())
    });
    // Anti-spoofing: another source address from the container is dropped.
    sandbox.run(&["ip", "addr", "add", "10.244.0.200/32", "dev", "eth0"]);
    let out = sandbox.run(&[&bb, "ping", "-c", "1", "-W", "1", "-I", "10.244.0.200", "10.244.0.1"]);
    assert!(!out.status.success(), "a spoofed source went through");
    assert!(node.drops("default/cam", "spoofed_ip") > 0, "{}", node.ok(&["node", "stats"]));

    // CHECK: as ADD made it; with another address in prevResult, not.
    let netns = sandbox.path();
    let ids = env("c0ffee01", &sandbox, &netns);
    let mut checked = conf(&node, "1.0.0");
    checked["prevResult"] = result.clone();
    assert_eq!(cni("CHECK", &ids, &checked).code, 0);
    checked["prevResult"]["ips"][0]["address"] = json!("10.244.0.250/24");
    assert_eq!(error_code(&cni("CHECK", &ids, &checked)), 100);

    // ADD of the same attachment fails; nothing changes.
    let again = cni("ADD", &ids, &conf(&node, "1.0.0"));
    assert_eq!(error_code(&again), 100);
    assert!(again.out["details"].as_str().unwrap().contains("already has interface eth0"), "{}", again.text);

    // DEL: the interface and the pod go; again, and for an unknown
    // container, DEL still succeeds. CHECK then knows no such container.
    let del = cni("DEL", &ids, &conf(&node, "1.0.0"));
    assert_eq!((del.code, del.text.as_str()), (0, ""));
    assert!(!sandbox.run(&["ip", "link", "show", "eth0"]).status.success(), "eth0 left in the container");
    assert!(pod_json(&node, "cam").is_none());
    assert_eq!(cni("DEL", &ids, &conf(&node, "1.0.0")).code, 0);
    let unknown = env("never-added", &sandbox, &netns);
    assert_eq!(cni("DEL", &unknown, &conf(&node, "1.0.0")).code, 0);
    assert_eq!(error_code(&cni("CHECK", &ids, &conf(&node, "1.0.0"))), 3);
}

#[test]
fn the_plugin_answers_bad_input_and_a_missing_agent_with_spec_codes() {
    let node = Node::start("cni-errors");
    let sandbox = Sandbox::new(&node, "err");
    let netns = sandbox.path();
    let ids = env("c1", &sandbox, &netns);
    let down = json!({ "cniVersion": "1.1.0", "name": "podnet", "type": "podnet", "socket": "/nonexistent/podnet.sock" });

    // VERSION needs no agent.
    let version = cni("VERSION", &[], &json!({ "cniVersion": "1.0.0" }));
    assert_eq!(version.code, 0);
    assert_eq!(version.out["cniVersion"], "1.0.0");
    assert_eq!(version.out["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));

    // STATUS: ready with the agent, 50 without.
    assert_eq!(cni("STATUS", &[], &conf(&node, "1.1.0")).code, 0);
    let status = cni("STATUS", &[], &down);
    assert_eq!((error_code(&status), status.code), (50, 50));
    assert!(status.out["details"].as_str().unwrap().contains("no podnet agent"), "{}", status.text);
    // An ADD while the agent is down: try again later.
    assert_eq!(error_code(&cni("ADD", &ids, &down)), 11);

    // Missing or bad environment: 4, naming the variable.
    let missing = cni("ADD", &[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")], &conf(&node, "1.0.0"));
    assert_eq!(error_code(&missing), 4);
    assert!(missing.out["details"].as_str().unwrap().contains("CNI_NETNS"), "{}", missing.text);
    let bad_ifname = cni(
        "ADD",
        &[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "a/b"), ("CNI_NETNS", &netns)],
        &conf(&node, "1.0.0"),
    );
    assert_eq!(error_code(&bad_ifname), 4);
    assert_eq!(error_code(&cni("NOPE", &ids, &conf(&node, "1.0.0"))), 4);
    // Bad config: 6 (not JSON), 7 (no cniVersion or name), 1 (a version
    // podnet does not speak, or STATUS before 1.1.0).
    let garbage = Command::new("sh")
        .args(["-c", "echo 'not json' | \"$0\"", &podnet_bin().to_string_lossy()])
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", &netns)
        .output()
        .unwrap();
    let parsed: Value = serde_json::from_slice(&garbage.stdout).unwrap();
    assert_eq!(parsed["code"], 6);
    assert_eq!(error_code(&cni("ADD", &ids, &json!({ "name": "podnet" }))), 7);
    assert_eq!(error_code(&cni("ADD", &ids, &json!({ "cniVersion": "1.0.0" }))), 7);
    assert_eq!(error_code(&cni("ADD", &ids, &conf(&node, "0.3.1"))), 1);
    assert_eq!(error_code(&cni("STATUS", &[], &conf(&node, "1.0.0"))), 1);
    // A namespace that is not there: refused by the agent, nothing made.
    let gone =
        [("CNI_CONTAINERID", "c2"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", "/run/netns/podnet-e2e-no-such")];
    let call = cni("ADD", &gone, &conf(&node, "1.0.0"));
    assert_eq!(error_code(&call), 100);
    assert!(call.out["details"].as_str().unwrap().contains("podnet-e2e-no-such"), "{}", call.text);
    assert!(node.pods().is_empty(), "a failed ADD left a pod");
    // An interface of that name already in the namespace: ADD fails.
    let taken = Sandbox::new(&node, "taken");
    let made = taken.run(&["ip", "link", "add", "eth0", "type", "bridge"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let taken_path = taken.path();
    let call = cni(
        "ADD",
        &[("CNI_CONTAINERID", "c4"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", &taken_path)],
        &conf(&node, "1.0.0"),
    );
    assert_eq!(error_code(&call), 100);
    assert!(call.out["details"].as_str().unwrap().contains("already has an interface eth0"), "{}", call.text);
    assert!(node.pods().is_empty(), "a failed ADD left a pod");
    assert!(
        stdout(&taken.run(&["ip", "-o", "link", "show", "eth0"])).contains("dummy")
            || taken.run(&["ip", "link", "show", "eth0"]).status.success()
    );
    // A bounded config: over 1 MiB is refused, not read whole.
    let huge = json!({ "cniVersion": "1.0.0", "name": "podnet", "pad": "x".repeat(2 << 20) });
    assert_eq!(error_code(&cni("ADD", &ids, &huge)), 6);
    // 0.4.0 results carry the IP version.
    let result = cni(
        "ADD",
        &[("CNI_CONTAINERID", "c3"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", &netns)],
        &conf(&node, "0.4.0"),
    );
    assert_eq!(result.code, 0, "{}", result.text);
    assert_eq!(result.out["cniVersion"], "0.4.0");
    assert_eq!(result.out["ips"][0]["version"], "4");
}

#[test]
fn attachments_survive_an_agent_restart_and_gc_frees_the_stale() {
    let mut node = Node::start("cni-restart");
    let bb = busybox();
    let keep = Sandbox::new(&node, "keep");
    let stale = Sandbox::new(&node, "stale");
    add(&node, "keep", &keep, "K8S_POD_NAME=keep");
    add(&node, "stale", &stale, "K8S_POD_NAME=stale");
    let reaches_gateway =
        |s: &Sandbox| s.run(&[&bb, "ping", "-c", "1", "-W", "1", "10.244.0.1"]).status.success();
    eventually(Duration::from_secs(10), "the container to reach its gateway", || {
        reaches_gateway(&keep).then_some(())
    });

    // The agent stops and starts again: the interfaces stay, the new agent
    // plugs them in again from its saved state.
    node.stop(libc::SIGTERM);
    assert!(keep.run(&["ip", "link", "show", "eth0"]).status.success(), "eth0 went with the agent");
    node.up();
    eventually(Duration::from_secs(10), "the container to reach its gateway again", || {
        reaches_gateway(&keep).then_some(())
    });
    assert_eq!(pod_json(&node, "keep").unwrap()["status"]["containerStatuses"][0]["ready"], true);

    // GC with `keep` the only valid attachment frees `stale`.
    let mut gc = conf(&node, "1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "keep", "ifname": "eth0" }]);
    assert_eq!(cni("GC", &[], &gc).code, 0);
    assert!(pod_json(&node, "stale").is_none());
    assert!(!stale.run(&["ip", "link", "show", "eth0"]).status.success(), "GC left stale's eth0");
    assert!(pod_json(&node, "keep").is_some());

    // DEL after a restart frees what the previous agent made.
    node.stop(libc::SIGTERM);
    node.up();
    let netns = keep.path();
    assert_eq!(cni("DEL", &env("keep", &keep, &netns), &conf(&node, "1.0.0")).code, 0);
    assert!(!keep.run(&["ip", "link", "show", "eth0"]).status.success());
    assert!(node.pods().is_empty());

    // `podnet delete pod` unplugs a container too; the runtime's DEL after
    // it finds nothing to free, which is success.
    add(&node, "again", &keep, "K8S_POD_NAME=again");
    node.ok(&["delete", "pod", "again"]);
    assert!(!keep.run(&["ip", "link", "show", "eth0"]).status.success(), "delete pod left eth0");
    assert_eq!(cni("DEL", &env("again", &keep, &netns), &conf(&node, "1.0.0")).code, 0);
}

/// podman with its CNI backend, all its state in a directory of the
/// test's own (storage, run root, temp dir, network configs, plugin dir):
/// the machine's podman state is never touched. Containers go on drop.
struct Podman {
    dir: PathBuf,
    /// The CNI network podnet serves (the conflist's name).
    network: String,
}

impl Podman {
    fn new(node: &Node) -> Podman {
        require("podman", "podman");
        require("runc", "runc");
        // Short: podman refuses a run root over 50 characters.
        let dir = std::env::temp_dir().join(format!("pnpm-{}", node.name));
        let _ = std::fs::remove_dir_all(&dir);
        let plugins = dir.join("plugins");
        let net_d = dir.join("net.d");
        for d in [&plugins, &net_d] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The reference plugins podnet chains with, and podnet itself with
        // its conflist, as `podnet cni install` puts them.
        for entry in std::fs::read_dir("/usr/lib/cni")
            .expect("/usr/lib/cni: apt-get install containernetworking-plugins")
        {
            let entry = entry.unwrap();
            std::os::unix::fs::symlink(entry.path(), plugins.join(entry.file_name())).unwrap();
        }
        let network = node.name.clone();
        let (bin_dir, conf_dir) = (plugins.to_string_lossy(), net_d.to_string_lossy());
        node.ok(&["cni", "install", "--bin-dir", &bin_dir, "--conf-dir", &conf_dir, "--name", &network]);
        // runc: crun refuses these machines' hybrid cgroups; ulimits within
        // the machine's hard limits; no systemd here.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            plugins.display(),
            net_d.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        Podman { dir, network }
    }

    fn command(&self, args: &[&str]) -> std::process::Output {
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .args(["--root", &path("storage"), "--runroot", &path("run"), "--tmpdir", &path("tmp")])
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(out.status.success(), "podman {} failed: {}", args.join(" "), stderr(&out));
        stdout(&out)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command(&["rm", "--all", "--force", "--time", "0"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn podman_containers_on_the_podnet_network_are_pods() {
    let node = Node::start("cni-podman");
    let bb = busybox();
    let podman = Podman::new(&node);
    // An image built from files on this machine, loaded from an OCI archive.
    let scratch = oci::Scratch::new(&format!("{}-podman", node.name));
    let layout = scratch.path("layout");
    oci::build_app_image(&scratch, &layout, "v1", "served by a podman container");
    let archive = scratch.path("app.tar");
    let image = "localhost/podnet-e2e/app:v1";
    oci::sh("skopeo", &["copy", &format!("oci:{layout}:v1"), &format!("oci-archive:{archive}:{image}")]);
    podman.ok(&["load", "--input", &archive]);

    // A podnet pod behind a Service, and a client pod.
    web_and_client(&node);

    // `podman run --network podnet`: the container is pod `cam`.
    podman.ok(&["run", "--detach", "--name", "cam", "--network", &podman.network, image]);
    let ip = node.wait_running("cam");
    let pod = pod_json(&node, "cam").unwrap();
    let id = podman.ok(&["inspect", "--format", "{{.Id}}", "cam"]);
    assert_eq!(pod["status"]["containerStatuses"][0]["containerID"], format!("cni://{}", id.trim()));
    assert_eq!(pod["spec"]["nodeName"], node.name.as_str());
    let inside = podman.ok(&["exec", "cam", "cat", "/proc/net/fib_trie"]);
    assert!(inside.contains(&ip), "podman's container has {ip}: {inside}");
    // podman writes the result's DNS into the container's resolv.conf.
    let resolv = podman.ok(&["exec", "cam", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 10.96.0.10") && resolv.contains("default.svc.cluster.local"),
        "{resolv}"
    );

    // The container reaches the podnet pod by its Service name...
    let got = eventually(Duration::from_secs(15), "the podman container to reach web by name", || {
        let out = podman.command(&["exec", "cam", "timeout", "3", "wget", "-q", "-O-", "http://web"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(got, "from a podnet pod\n");
    // ...and a podnet pod reaches the container through a Service over it.
    node.ok(&["label", "pod", "cam", "app=cam"]);
    node.ok(&["expose", "pod", "cam", "--port", "80", "--target-port", "8080"]);
    let got = eventually(Duration::from_secs(15), "a pod to reach the podman container by name", || {
        let out = node.exec("client", &["timeout", "3", &bb, "wget", "-q", "-O-", "http://cam"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(got, "served by a podman container\n");

    // `podman rm`: DEL frees the pod and its address.
    podman.ok(&["rm", "--force", "--time", "0", "cam"]);
    assert!(pod_json(&node, "cam").is_none(), "pod cam outlived its container");
    let endpoints = node.ok(&["get", "endpoints", "cam"]);
    assert!(!endpoints.contains(&ip), "{endpoints}");
}

#[test]
fn cni_install_links_the_plugin_and_writes_the_conflist() {
    let node = Node::start("cni-install");
    let dir = node.dir.join("install");
    let (bin_dir, conf_dir) = (dir.join("bin"), dir.join("net.d"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    let (bin, conf) = (bin_dir.to_string_lossy().into_owned(), conf_dir.to_string_lossy().into_owned());
    // A missing dir, or no root: one clear line, nothing written.
    node.fails(&["cni", "install", "--bin-dir", &bin, "--conf-dir", &conf], "mkdir -p");
    assert!(std::fs::read_dir(&bin_dir).unwrap().next().is_none());
    std::fs::create_dir_all(&conf_dir).unwrap();
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(podnet_bin())
        .args(["cni", "install", "--bin-dir", &bin, "--conf-dir", &conf])
        .output()
        .unwrap();
    assert!(!as_nobody.status.success());
    assert!(stderr(&as_nobody).contains("run it as root"), "{}", stderr(&as_nobody));

    let said = node.ok(&["cni", "install", "--bin-dir", &bin, "--conf-dir", &conf]);
    assert!(said.contains("10-podnet.conflist"), "{said}");
    let link = std::fs::read_link(bin_dir.join("podnet")).unwrap();
    assert_eq!(link, podnet_bin().canonicalize().unwrap());
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(conf_dir.join("10-podnet.conflist")).unwrap()).unwrap();
    assert_eq!(list, serde_json::from_str::<Value>(&node.ok(&["cni", "config"])).unwrap());
    assert_eq!(list["cniVersion"], "1.0.0");
    assert_eq!(list["name"], "podnet");
    assert_eq!(list["plugins"][0]["type"], "podnet");
    assert_eq!(list["plugins"][0]["socket"], node.socket.to_string_lossy().as_ref());
    assert_eq!(list["plugins"][1]["type"], "portmap");
    // Installing again replaces both in place.
    node.ok(&["cni", "install", "--bin-dir", &bin, "--conf-dir", &conf]);
    // The installed plugin is podnet: VERSION through the link.
    let version = Command::new(bin_dir.join("podnet"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let version: Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(version["supportedVersions"][2], "1.1.0");
}

/// A containerd daemon of the test's own (root, state, sockets in a
/// directory of its own), and `ctr` run in a private mount namespace where
/// the test's plugin and config dirs are bound over the ones `ctr run
/// --cni` reads (/etc/cni/net.d, /opt/cni/bin, /usr/lib/cni): the
/// machine's CNI config is never touched. Tasks, containers and the daemon
/// go on drop.
struct Containerd {
    dir: PathBuf,
    daemon: Child,
}

impl Containerd {
    fn new(node: &Node) -> Containerd {
        require("containerd", "containerd");
        require("ctr", "containerd");
        require("unshare", "util-linux");
        assert!(
            Path::new("/etc/cni/net.d").is_dir(),
            "/etc/cni/net.d: apt-get install containernetworking-plugins"
        );
        let dir = std::env::temp_dir().join(format!("pnctr-{}", node.name));
        let _ = std::fs::remove_dir_all(&dir);
        let (plugins, net_d) = (dir.join("plugins"), dir.join("net.d"));
        for d in [&plugins, &net_d] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Copies, not links: the plugin dir is bound over /usr/lib/cni.
        for plugin in ["portmap", "loopback"] {
            std::fs::copy(Path::new("/usr/lib/cni").join(plugin), plugins.join(plugin)).unwrap();
        }
        let (bin_dir, conf_dir) = (plugins.to_string_lossy(), net_d.to_string_lossy());
        node.ok(&["cni", "install", "--bin-dir", &bin_dir, "--conf-dir", &conf_dir]);
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.sock.ttrpc\"\n",
            dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let containerd = Containerd { dir, daemon };
        eventually(Duration::from_secs(15), "containerd to answer", || {
            containerd.ctr(&["version"]).status.success().then_some(())
        });
        containerd
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        let script = "set -e\nd=\"$0\"\nmount --bind \"$d/net.d\" /etc/cni/net.d\n\
                      mount -t tmpfs tmpfs /opt\nmkdir -p /opt/cni/bin\n\
                      mount --bind \"$d/plugins\" /opt/cni/bin\nmount --bind \"$d/plugins\" /usr/lib/cni\n\
                      exec ctr -a \"$d/c.sock\" \"$@\"";
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {} failed: {}", args.join(" "), stderr(&out));
        stdout(&out)
    }

    /// Kills and deletes a task and its container, as a runtime that
    /// crashed would leave them: `ctr` runs no CNI DEL for a detached task.
    fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        eventually(Duration::from_secs(10), "the task to stop", || {
            self.ctr(&["task", "delete", id]).status.success().then_some(())
        });
        let _ = self.ctr(&["container", "delete", id]);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let listed = stdout(&self.ctr(&["container", "list", "--quiet"]));
        for id in listed.split_whitespace() {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.ctr(&["task", "delete", "--force", id]);
            let _ = self.ctr(&["container", "delete", id]);
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn containerd_tasks_run_with_cni_are_pods_and_gc_frees_them_after_the_runtime_forgets() {
    let node = Node::start("cni-ctr");
    let bb = busybox();
    let containerd = Containerd::new(&node);
    let scratch = oci::Scratch::new(&format!("{}-ctr", node.name));
    let layout = scratch.path("layout");
    oci::build_app_image(&scratch, &layout, "v1", "served by a containerd task");
    let archive = scratch.path("app.tar");
    let image = "localhost/podnet-e2e/app:v1";
    oci::sh("skopeo", &["copy", &format!("oci:{layout}:v1"), &format!("oci-archive:{archive}:{image}")]);
    containerd.ok(&["images", "import", &archive]);

    web_and_client(&node);

    // `ctr run --cni`: containerd's task is pod cni-default-web1 (ctr
    // passes NAMESPACE-ID as the container id, and no pod name).
    containerd.ok(&["run", "--cni", "--detach", "--snapshotter", "native", image, "web1"]);
    let ip = node.wait_running("cni-default-web1");
    let pod = pod_json(&node, "cni-default-web1").unwrap();
    assert_eq!(pod["status"]["containerStatuses"][0]["containerID"], "cni://default-web1");
    // A pod reaches the task through a Service over it...
    node.ok(&["label", "pod", "cni-default-web1", "app=web1"]);
    node.ok(&[
        "expose",
        "pod",
        "cni-default-web1",
        "--name",
        "web1",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    let got = eventually(Duration::from_secs(15), "a pod to reach the containerd task by name", || {
        let out = node.exec("client", &["timeout", "3", &bb, "wget", "-q", "-O-", "http://web1"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(got, "served by a containerd task\n");
    // ...and the task reaches the pod's Service, and resolves its name
    // through the cluster DNS.
    let web_ip = node.cluster_ip("web");
    let url = format!("http://{web_ip}");
    let out = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "get",
        "web1",
        "timeout",
        "3",
        "wget",
        "-q",
        "-O-",
        &url,
    ]);
    assert_eq!(stdout(&out), "from a podnet pod\n", "{}", stderr(&out));
    let out = containerd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "dns",
        "web1",
        "nslookup",
        "web.default.svc.cluster.local",
        "10.96.0.10",
    ]);
    assert!(stdout(&out).contains(&web_ip), "{}{}", stdout(&out), stderr(&out));

    // ctr runs no DEL for a detached task it deletes: the attachment stays
    // until GC, which the runtime runs with the attachments it still has.
    containerd.remove("web1");
    assert!(pod_json(&node, "cni-default-web1").is_some());
    let mut gc = conf(&node, "1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(cni("GC", &[], &gc).code, 0);
    assert!(pod_json(&node, "cni-default-web1").is_none(), "GC left the task's pod");
    let endpoints = node.ok(&["get", "endpoints", "web1"]);
    assert!(!endpoints.contains(&ip), "{endpoints}");
}
