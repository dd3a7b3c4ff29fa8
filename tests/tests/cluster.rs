//! Several nodes as one cluster, each an agent in its own namespace, joined
//! by a bridge in a "lan" namespace: join with a token, shared state,
//! scheduling, failure detection, restarts.

use std::time::{Duration, Instant};

use podnet_e2e::{Cluster, Node, eventually, podnet_bin, stderr, stdout};

fn nodes_json(node: &Node) -> serde_json::Value {
    serde_json::from_str(&node.ok(&["get", "nodes", "-o", "json"])).unwrap()
}

/// How many times the cluster API refused for `reason`, from `podnet node
/// stats -o json` on `node`.
fn cluster_api_refusals(node: &Node, reason: &str) -> u64 {
    let stats: serde_json::Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    let api = stats["listeners"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["listener"] == "cluster_api"))
        .unwrap_or_else(|| panic!("no cluster_api listener in {stats}"))
        .clone();
    api["counts"].as_array().unwrap().iter().find(|c| c[0] == reason).map_or(0, |c| c[1].as_u64().unwrap())
}

#[test]
fn nodes_join_with_a_token_and_share_one_state() {
    let cluster = Cluster::start("join", 2);
    let wide = cluster.server().ok(&["get", "nodes", "-o", "wide"]);
    for (i, node) in cluster.nodes.iter().enumerate() {
        let line = wide.lines().find(|l| l.starts_with(&node.name)).unwrap_or_else(|| panic!("{wide}"));
        assert!(line.contains(" Ready") && line.contains(&Cluster::address(i)), "{line}");
        assert!(line.contains(&format!("10.244.{i}.0/24")), "each node its own subnet: {line}");
    }
    assert!(wide.lines().next().unwrap().contains("POD-CIDR"));

    // A deployment spreads over the nodes; every node's CLI sees the cluster.
    cluster.server().ok(&["create", "deployment", "web", "--replicas", "3", "--", "sleep", "infinity"]);
    let placed = eventually(Duration::from_secs(20), "three running replicas", || {
        let pods = cluster.nodes[1].pods();
        let running = pods.iter().filter(|p| p["status"]["containerStatuses"][0]["ready"] == true).count();
        (running == 3).then_some(pods)
    });
    let mut nodes: Vec<&str> = placed.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one replica per node: {placed:?}");
    for pod in &placed {
        let node = pod["spec"]["nodeName"].as_str().unwrap();
        let i = cluster.nodes.iter().position(|n| n.name == node).unwrap();
        assert!(pod["status"]["podIP"].as_str().unwrap().starts_with(&format!("10.244.{i}.")), "{pod}");
    }

    // A member may read the cluster, not change it (issue #15's trust
    // model): its own CLI is refused, counted on the server.
    let refused = cluster.nodes[1].podnet(&["run", "nope", "--", "sleep", "infinity"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("may read the cluster but not change it") && err.contains("--kubeconfig"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(cluster.nodes[1].ok(&["get", "nodes"]).contains(&cluster.nodes[2].name), "a member reads");
    assert_eq!(cluster_api_refusals(cluster.server(), "forbidden"), 1, "the refusal is counted");

    // --node pins a pod; exec works on the pod's own node.
    let target = cluster.nodes[2].name.clone();
    cluster.server().ok(&["run", "pinned", "--node", &target, "--", "sleep", "infinity"]);
    eventually(Duration::from_secs(15), "pinned pod running on its node", || {
        cluster.nodes[2].exec("pinned", &["true"]).status.success().then_some(())
    });
    let elsewhere = cluster.nodes[1].podnet(&["exec", "pinned", "--", "true"]);
    let err = stderr(&elsewhere);
    assert!(err.contains("may not reach into pods on other nodes") && err.contains("-o wide"), "{err}");

    // A remote CLI with the client config sees and changes the cluster.
    let out = cluster.remote(&["get", "pods", "-o", "wide"]);
    assert!(stdout(&out).contains("pinned"), "{}{}", stdout(&out), stderr(&out));
    let out = cluster.remote(&["delete", "pod", "pinned"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(cluster.server().dir.join("data/podnet.yaml")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_wrong_token_can_neither_join_nor_read() {
    let cluster = Cluster::start("token", 0);
    let bad = cluster.server().dir.join("bad-token");
    std::fs::write(&bad, format!("PN1::{}\n", "ab".repeat(32))).unwrap();
    // Private, as a token file must be: refused for being another cluster's.
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = cluster.server().dir.join("bad.yaml");
    let good = std::fs::read_to_string(cluster.server().dir.join("data/podnet.yaml")).unwrap();
    // The join token alone (a client config with another admin token):
    // the channel opens, the server reads and changes nothing for it.
    let admin_line =
        good.lines().find(|l| l.starts_with("admin:")).expect("the client config carries the admin");
    std::fs::write(&config, good.replace(admin_line, &format!("admin: {}", "0".repeat(64)))).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = cluster.remote_with(&config, &["get", "pods"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no admin token or another one"), "{}", stderr(&out));
    eventually(Duration::from_secs(10), "the CLI's refusal counted", || {
        (cluster_api_refusals(cluster.server(), "unauthorized") == 1).then_some(())
    });
    let token_line = good.lines().find(|l| l.starts_with("token:")).unwrap();
    std::fs::write(&config, good.replace(token_line, &format!("token: PN1::{}", "cd".repeat(32)))).unwrap();
    let out = cluster.remote_with(&config, &["get", "pods"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused") && stderr(&out).contains("token"), "{}", stderr(&out));
    // The server counts the refusal, by reason.
    eventually(Duration::from_secs(10), "the CLI's handshake counted", || {
        (cluster_api_refusals(cluster.server(), "handshake_failed") == 1).then_some(())
    });

    let started = Instant::now();
    let intruder = Node::prepare(
        "intruder",
        None,
        &[
            "--server",
            &Cluster::address(0),
            "--token-file",
            bad.to_str().unwrap(),
            "--node-ip",
            "192.168.251.99",
        ],
    );
    cluster.link(&intruder, "192.168.251.99", "px");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", intruder.netns))
        .arg(podnet_bin())
        .args(["node", "up", "--name", &intruder.name, "--data-dir"])
        .arg(intruder.dir.join("data"))
        .args(&intruder.args)
        .env("PODNET_SOCKET", &intruder.socket)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a node without the token must not join");
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    let nodes = nodes_json(cluster.server());
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1, "{nodes}");
    assert!(cluster_api_refusals(cluster.server(), "handshake_failed") >= 2, "the intruder's handshake too");
    let table = cluster.server().ok(&["node", "stats"]);
    assert!(table.contains("handshake_failed="), "shown in the table too: {table}");
}

#[test]
fn a_lost_node_goes_not_ready_and_comes_back_without_duplicates() {
    let mut cluster = Cluster::start("fault", 1);
    let member = cluster.nodes[1].name.clone();
    cluster.server().ok(&["run", "far", "--node", &member, "--", "sleep", "infinity"]);
    let ip = eventually(Duration::from_secs(15), "pod on the member", || {
        cluster.server().pods().iter().find_map(|p| {
            (p["status"]["containerStatuses"][0]["ready"] == true)
                .then(|| p["status"]["podIP"].as_str().unwrap().to_string())
        })
    });
    cluster.nodes[1].stop(libc::SIGKILL);
    let lost = Instant::now();
    eventually(Duration::from_secs(12), "the member NotReady", || {
        let nodes = cluster.server().ok(&["get", "nodes"]);
        nodes.lines().any(|l| l.starts_with(&member) && l.contains("NotReady")).then_some(())
    });
    assert!(lost.elapsed() <= Duration::from_secs(10), "NotReady within 10 s, took {:?}", lost.elapsed());

    cluster.nodes[1].up();
    eventually(Duration::from_secs(20), "the member Ready with its pod", || {
        let pods = cluster.server().pods();
        let ready = pods.iter().any(|p| p["status"]["containerStatuses"][0]["ready"] == true);
        (pods.len() == 1 && ready).then_some(())
    });
    assert_eq!(cluster.server().pods()[0]["status"]["podIP"], ip.as_str(), "same IP after the resync");
    assert_eq!(cluster.nodes[1].pod_namespaces().len(), 1, "no duplicate sandbox");
}

#[test]
fn the_server_restarting_loses_nothing_and_members_keep_serving() {
    let mut cluster = Cluster::start("restart", 1);
    let member = cluster.nodes[1].name.clone();
    cluster.server().ok(&["run", "kept", "--node", &member, "--", "sleep", "infinity"]);
    eventually(Duration::from_secs(15), "pod on the member", || {
        cluster.nodes[1].exec("kept", &["true"]).status.success().then_some(())
    });
    cluster.nodes[0].stop(libc::SIGTERM);
    // The member's pods keep running and its node-local answers work.
    std::thread::sleep(Duration::from_secs(1));
    assert!(cluster.nodes[1].exec("kept", &["true"]).status.success());
    assert!(
        cluster.nodes[1].ok(&["resolve", "dns-version.cluster.local.", "--type", "TXT"]).contains("1.1.0")
    );
    cluster.nodes[0].up();
    eventually(Duration::from_secs(20), "the member back and its pod known", || {
        let wide = cluster.server().ok(&["get", "pods", "-o", "wide"]);
        let nodes = cluster.server().ok(&["get", "nodes"]);
        (wide.contains("kept") && nodes.lines().filter(|l| l.contains(" Ready")).count() == 2).then_some(())
    });
}

#[test]
fn pods_on_different_nodes_talk_without_nat_through_services_and_dns() {
    let cluster = Cluster::start("xnode", 2);
    let bb = podnet_e2e::busybox();
    let (a, b) = (cluster.nodes[1].name.clone(), cluster.nodes[2].name.clone());
    let script = format!(
        "mkdir -p /tmp/w-$POD_NAME && echo $POD_NAME > /tmp/w-$POD_NAME/index.html && exec {bb} httpd -f -vv -p 80 -h /tmp/w-$POD_NAME"
    );
    cluster.server().ok(&["run", "web", "--node", &a, "--labels", "app=web", "--", "sh", "-c", &script]);
    cluster.server().ok(&["run", "client", "--node", &b, "--", "sleep", "infinity"]);
    cluster.server().ok(&["expose", "pod", "web", "--port", "80", "--name", "web-svc"]);
    let ip_of = |name: &str| {
        eventually(Duration::from_secs(20), &format!("{name} running"), || {
            cluster.server().pods().iter().find_map(|p| {
                (p["metadata"]["name"] == name && p["status"]["containerStatuses"][0]["ready"] == true)
                    .then(|| p["status"]["podIP"].as_str().unwrap().to_string())
            })
        })
    };
    let (web_ip, client_ip) = (ip_of("web"), ip_of("client"));
    assert!(web_ip.starts_with("10.244.1.") && client_ip.starts_with("10.244.2."), "{web_ip} {client_ip}");
    let client = &cluster.nodes[2];

    // Pod to pod across nodes, both addresses kept (no NAT).
    let out = client.exec("client", &[&bb, "ping", "-c", "1", "-W", "3", &web_ip]);
    assert!(out.status.success(), "cross-node ping: {}", stdout(&out));
    let out = client.exec("client", &["timeout", "5", &bb, "wget", "-qO-", &format!("http://{web_ip}/")]);
    assert_eq!(stdout(&out).trim(), "web", "{}", stderr(&out));
    let log = cluster.nodes[1].ok(&["logs", "web"]);
    assert!(log.contains(&client_ip), "the server saw the client pod's own address: {log}");

    // ClusterIP and DNS by name on a node without the backend.
    eventually(Duration::from_secs(10), "web-svc reachable by name from the other node", || {
        let out = client.exec("client", &["timeout", "3", &bb, "wget", "-qO-", "http://web-svc/"]);
        (stdout(&out).trim() == "web").then_some(())
    });
    // The node itself reaches remote pods.
    let out = client.on_node(&[&bb, "ping", "-c", "1", "-W", "3", &web_ip]);
    assert!(out.status.success(), "node -> remote pod: {}", stdout(&out));
}

#[test]
fn a_node_port_on_one_node_reaches_a_pod_on_another_and_a_cut_link_heals() {
    let cluster = Cluster::start("np", 1);
    let bb = podnet_e2e::busybox();
    let member = cluster.nodes[1].name.clone();
    let script = format!(
        "mkdir -p /tmp/np && echo far-away > /tmp/np/index.html && exec {bb} httpd -f -p 80 -h /tmp/np"
    );
    cluster.server().ok(&["run", "far", "--node", &member, "--labels", "app=far", "--", "sh", "-c", &script]);
    cluster.server().ok(&[
        "expose",
        "pod",
        "far",
        "--port",
        "80",
        "--type",
        "NodePort",
        "--node-port",
        "30080",
    ]);
    // From the lan, through the server's node port, to the pod on the member.
    let url = format!("http://{}:30080/", Cluster::address(0));
    eventually(Duration::from_secs(20), "the node port answering from the lan", || {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &cluster.lan, "timeout", "3", &bb, "wget", "-qO-", &url])
            .output()
            .unwrap();
        (stdout(&out).trim() == "far-away").then_some(())
    });

    // Cut the member's link: NotReady, then Ready again once restored.
    let cut = |state: &str| {
        let out = cluster.nodes[1].on_node(&["ip", "link", "set", "uplink", state]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    cut("down");
    eventually(Duration::from_secs(12), "the member NotReady", || {
        let nodes = cluster.server().ok(&["get", "nodes"]);
        nodes.lines().any(|l| l.starts_with(&member) && l.contains("NotReady")).then_some(())
    });
    cut("up");
    let _ = cluster.nodes[1].on_node(&["ip", "route", "add", "192.168.251.0/24", "dev", "uplink"]);
    eventually(Duration::from_secs(20), "the member Ready again", || {
        let nodes = cluster.server().ok(&["get", "nodes"]);
        nodes.lines().any(|l| l.starts_with(&member) && l.contains(" Ready")).then_some(())
    });
    assert_eq!(cluster.server().pods().len(), 1, "no duplicate pod after the resync");
}

#[test]
fn a_refused_member_keeps_serving_and_a_deleted_node_frees_its_name_and_address() {
    let mut cluster = Cluster::start("delnode", 1);
    let (server, member) = (cluster.nodes[0].name.clone(), cluster.nodes[1].name.clone());
    cluster.server().fails(&["delete", "node", &server], "control plane's own node");
    cluster.server().fails(&["delete", "node", "ghost"], "node `ghost` not found");
    cluster.server().ok(&["run", "far", "--node", &member, "--", "sleep", "infinity"]);
    eventually(Duration::from_secs(15), "pod on the member", || {
        cluster.nodes[1].exec("far", &["true"]).status.success().then_some(())
    });

    // The server comes back with a record of another node at the member's
    // address (as a hand-edited or stale state would have): the member is
    // refused when it reconnects.
    cluster.nodes[0].stop(libc::SIGTERM);
    let state_path = cluster.server().dir.join("data/state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let nodes = state["nodes"].as_array_mut().unwrap();
    let mut imposter = nodes.iter().find(|n| n["name"] == member.as_str()).unwrap().clone();
    imposter["name"] = "imposter".into();
    imposter["subnet"] = "10.244.9.0/24".into();
    nodes.push(imposter);
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    cluster.nodes[0].up();
    eventually(Duration::from_secs(20), "the member refused, saying why", || {
        cluster.nodes[1].agent_log().contains("node imposter has it").then_some(())
    });
    // It keeps serving its pods and its node-local answers.
    std::thread::sleep(Duration::from_secs(1));
    assert!(cluster.nodes[1].exec("far", &["true"]).status.success(), "{}", cluster.nodes[1].agent_log());
    assert!(cluster.nodes[1].ok(&["get", "pods"]).contains("far"));

    // Deleting the stale record lets the member back in on its next try.
    let out = cluster.server().ok(&["delete", "node", "imposter"]);
    assert!(out.contains("node \"imposter\" deleted"), "{out}");
    eventually(Duration::from_secs(20), "the member Ready again", || {
        let nodes = cluster.server().ok(&["get", "nodes"]);
        nodes.lines().any(|l| l.starts_with(&member) && l.contains(" Ready")).then_some(())
    });
    assert!(cluster.nodes[1].exec("far", &["true"]).status.success());

    // Deleting a node takes its pods with it.
    cluster.nodes[1].stop(libc::SIGTERM);
    cluster.server().ok(&["delete", "node", &member]);
    let nodes = nodes_json(cluster.server());
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1, "{nodes}");
    assert!(cluster.server().pods().is_empty(), "its pods are gone");
}

#[test]
fn another_machine_cannot_take_a_nodes_name_live_or_gone() {
    let mut cluster = Cluster::start("twin", 1);
    let member = cluster.nodes[1].name.clone();
    let token = cluster.server().dir.join("data/token");
    let twin = Node::prepare(
        "twin",
        None,
        &[
            "--server",
            &Cluster::address(0),
            "--token-file",
            token.to_str().unwrap(),
            "--node-ip",
            "192.168.251.98",
        ],
    );
    cluster.link(&twin, "192.168.251.98", "pt");
    // The twin holds the join token but not the node's password (its own
    // data dir makes another): refused while the node lives, and after.
    let take = || {
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", twin.netns))
            .arg(podnet_bin())
            .args(["node", "up", "--name", &member, "--data-dir"])
            .arg(twin.dir.join("data"))
            .args(&twin.args)
            .env("PODNET_SOCKET", &twin.socket)
            .output()
            .unwrap()
    };
    let out = take();
    assert!(!out.status.success(), "a second agent must not take a live node's name");
    let err = stderr(&out);
    assert!(err.contains("joined before with another node password"), "{err}");
    assert!(err.contains(&format!("podnet delete node {member}")), "{err}");
    let nodes = cluster.server().ok(&["get", "nodes", "-o", "wide"]);
    let line = nodes.lines().find(|l| l.starts_with(&member)).unwrap();
    assert!(line.contains(" Ready") && line.contains("192.168.251.11"), "{line}");
    assert_eq!(cluster_api_refusals(cluster.server(), "join_refused"), 1, "the refusal is counted");
    cluster.nodes[1].stop(libc::SIGTERM);
    let out = take();
    assert!(!out.status.success(), "nor the name of a node that is gone");
    assert!(stderr(&out).contains("another node password"), "{}", stderr(&out));
    assert_eq!(cluster_api_refusals(cluster.server(), "join_refused"), 2);
}
