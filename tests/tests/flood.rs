//! A flood from one pod fills its own share of the node, not the other
//! pods': the ClusterIP flow table holds a quota of open connections per
//! pod, and what went over it is counted on the flooding pod's port.
//! hping3 is the flooder; busybox httpd and wget the pods it must not starve.

use podnet_e2e::{Node, busybox, require, stderr, stdout};

/// With the quota equal to the table (`per_pod` = 256) the flood fills the
/// table and the victim's connection is refused; with the default quarter,
/// the victim goes through.
fn udp_flood_then_victim_fetches(tag: &str, per_pod: Option<u32>) -> (bool, Node) {
    let hping3 = require("hping3", "hping3").to_string_lossy().into_owned();
    let quota = per_pod.map_or(String::new(), |n| format!("max_flows_per_pod = {n}\n"));
    // One data-plane thread: the table and the quota are per thread, and
    // with two the victim's connections may hash to the thread the flood
    // does not fill, which would make the unlimited case pass by luck.
    let config = format!("[limits]\nmax_flows = 256\n{quota}[dataplane]\nthreads = 1\n");
    let node = Node::start_with(tag, Some(&config));
    let bb = busybox();
    node.named_web("web", 1, 8080, &[]);
    node.ok(&["run", "flooder", "--", "sleep", "infinity"]);
    node.ok(&["run", "victim", "--", "sleep", "infinity"]);
    node.wait_running("flooder");
    node.wait_running("victim");
    node.ok(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    // Nothing listens on UDP 9: every flow the flood opens stays open for
    // the 30 s UDP timeout.
    node.ok(&["expose", "deployment", "web", "--name", "sink", "--port", "9", "--protocol", "UDP"]);
    let (web, sink) = (node.cluster_ip("web"), node.cluster_ip("sink"));
    let url = format!("http://{web}/");
    podnet_e2e::eventually(std::time::Duration::from_secs(15), "web answers", || {
        node.exec("victim", &["timeout", "3", &bb, "wget", "-qO-", &url]).status.success().then_some(())
    });

    // 1,000 datagrams, each from the next source port: 1,000 new flows.
    let out = node.exec("flooder", &[&hping3, "--udp", "-p", "9", "-c", "1000", "-i", "u300", "-q", &sink]);
    assert!(out.status.code().is_some(), "hping3: {}", stderr(&out));
    // busybox 1.35's `wget -T` crashes; `timeout` bounds the fetch instead.
    let fetched = node.exec("victim", &["timeout", "4", &bb, "wget", "-qO-", &url]);
    let answered = fetched.status.success() && stdout(&fetched).starts_with("web-");
    (answered, node)
}

#[test]
fn a_pod_flooding_new_flows_cannot_starve_another_pods_service_connections() {
    let (answered, node) = udp_flood_then_victim_fetches("flood", None);
    assert!(answered, "the victim's connection through the ClusterIP must go through");
    assert_eq!(node.flow_counter("per_pod_limit"), 64);
    let over = node.flow_counter("over_quota");
    assert!(over >= 500, "most of the 1,000 flows went over the quota: {over}");
    let active = node.flow_counter("active");
    assert!(active <= 64 + 4, "{active} flows active");
    assert_eq!(node.drops("default/flooder", "flow_quota"), over, "counted on the flooder's port");
    assert_eq!(node.drops("default/victim", "flow_quota"), 0);
    let table = node.ok(&["node", "stats"]);
    assert!(table.contains("flow_quota") && table.contains("over_quota"), "{table}");

    // Without the quota the same flood takes the whole table: the check above
    // is what the quota buys.
    let (answered, node) = udp_flood_then_victim_fetches("noquota", Some(256));
    assert!(!answered, "with one pod allowed the whole table, the victim is refused");
    assert!(node.drops("default/victim", "flow_table_full") >= 1);
}

#[test]
fn a_pod_storming_dns_for_outside_names_cannot_starve_another_pods_lookups() {
    let dnsmasq = require("dnsmasq", "dnsmasq-base").to_string_lossy().into_owned();
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let dnsperf = require("dnsperf", "dnsperf").to_string_lossy().into_owned();
    let dig = require("dig", "bind9-dnsutils").to_string_lossy().into_owned();
    let node = Node::start("dnsstorm");
    let mut lan = podnet_e2e::Outside::attach(&node);
    // The lan resolver answers fast.test itself and forwards slow.test to a
    // server that never answers: each storm query holds a relay slot until
    // the agent's 2 s upstream timeout.
    lan.spawn(
        &[&socat, "-u", "UDP-RECV:5353,bind=192.168.77.2", "OPEN:/dev/null"],
        &node.dir.join("hole.log"),
    );
    let pid_file = format!("--pid-file={}/dnsmasq.pid", node.dir.display());
    lan.spawn(
        &[
            &dnsmasq,
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--bind-interfaces",
            "--listen-address=192.168.77.2",
            &pid_file,
            "--address=/fast.test/192.0.2.7",
            "--server=/slow.test/192.168.77.2#5353",
            // Hold every query it forwards (its default refuses past 150).
            "--dns-forward-max=100000",
        ],
        &node.dir.join("dnsmasq.log"),
    );
    node.ok(&["run", "storm", "--", "sleep", "infinity"]);
    node.ok(&["run", "victim", "--", "sleep", "infinity"]);
    node.wait_running("storm");
    node.wait_running("victim");
    let lookup = || {
        let out =
            node.exec("victim", &[&dig, "+short", "+time=2", "+tries=2", "@10.96.0.10", "www.fast.test"]);
        stdout(&out).trim() == "192.0.2.7"
    };
    podnet_e2e::eventually(std::time::Duration::from_secs(10), "the lan resolver answers", || {
        lookup().then_some(())
    });

    // 500 queries outstanding for 8 s, every one for a name upstream sits on.
    let storm = format!(
        "f=$(mktemp) && seq 1 20000 | sed 's/.*/n&.slow.test A/' > $f && {dnsperf} -d $f -s 10.96.0.10 -l 8 -q 500; rm -f $f"
    );
    std::thread::scope(|s| {
        let flood = s.spawn(|| node.exec("storm", &["sh", "-c", &storm]));
        std::thread::sleep(std::time::Duration::from_secs(2));
        for i in 0..3 {
            assert!(lookup(), "lookup {i} during the storm must be answered");
        }
        let out = flood.join().unwrap();
        let report = stdout(&out);
        assert!(report.contains("Queries sent"), "dnsperf ran: {report}{}", stderr(&out));
        // The storm got its share answered with REFUSED, not silence.
        assert!(report.contains("REFUSED"), "{report}");
    });
}

#[test]
fn frames_lost_in_a_full_tap_queue_are_counted_on_the_pods_port() {
    let hping3 = require("hping3", "hping3").to_string_lossy().into_owned();
    // Two data-plane threads: a TAP queue each, 4,096 frames per queue, and
    // hping3's UDP moves its source port per frame, so both queues fill.
    let node = Node::start_with("tapq", Some("[dataplane]\nthreads = 2\n"));
    node.ok(&["run", "sender", "--", "sleep", "infinity"]);
    node.ok(&["run", "sink", "--", "sleep", "infinity"]);
    node.wait_running("sender");
    let sink = node.wait_running("sink");
    let netns = node.pod_namespaces().into_iter().find(|ns| ns.ends_with(".sender")).unwrap();
    let link =
        std::process::Command::new("ip").args(["-n", &netns, "link", "show", "eth0"]).output().unwrap();
    assert!(stdout(&link).contains("qlen 4096"), "{}", stdout(&link));

    // The sender knows the sink's MAC first: unresolved, its frames would
    // wait for ARP in the pod's kernel instead of filling the TAP.
    let bb = busybox();
    assert!(node.exec("sender", &[&bb, "ping", "-c", "1", "-W", "2", &sink]).status.success());
    // With the agent stopped nothing drains the TAP: of 12,000 frames, about
    // 2 x 4,096 wait in its queues and the rest are dropped by the pod's kernel.
    let agent = node.agent_pid();
    // SAFETY: signals to the agent this test started.
    unsafe { libc::kill(agent, libc::SIGSTOP) };
    // Straight into the pod's namespace: `podnet exec` would ask the stopped agent.
    let out =
        podnet_e2e::in_netns(&netns, &[&hping3, "--udp", "-p", "9", "-c", "12000", "-i", "u20", "-q", &sink]);
    // SAFETY: as above.
    unsafe { libc::kill(agent, libc::SIGCONT) };
    assert!(out.status.code().is_some(), "hping3: {}", stderr(&out));
    let dropped = node.drops("default/sender", "tap_queue_full");
    assert!((1000..=12000).contains(&dropped), "about 12,000 - 8,192 dropped, not {dropped}");
    assert!(node.ok(&["node", "stats"]).contains("tap_queue_full="), "shown in the table too");
}
