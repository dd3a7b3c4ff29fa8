//! Several data-plane threads (`dataplane.threads`): flows spread over them,
//! every flow still arrives whole (between pods, and from the lan through
//! egress, handed from thread to thread), and pods' TAPs survive an agent
//! restarted with another thread count.

use std::time::Duration;

use podnet_e2e::{Node, Outside, busybox, eventually, require, stderr, stdout};
use serde_json::Value;

/// Each thread's `counter` in `podnet node stats`.
fn thread_counter(node: &Node, counter: &str) -> Vec<u64> {
    let stats: Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    stats["threads"].as_array().unwrap().iter().map(|t| t[counter].as_u64().unwrap()).collect()
}

/// Each thread's `frames` counter in `podnet node stats`.
fn thread_frames(node: &Node) -> Vec<u64> {
    thread_counter(node, "frames")
}

/// Whether the pod's `eth0` is a multi-queue TAP, as `ip -d link` shows it.
fn multi_queue(node: &Node, pod: &str) -> bool {
    let out = node.exec(pod, &["ip", "-d", "link", "show", "eth0"]);
    assert!(out.status.success(), "ip -d link: {}", stderr(&out));
    stdout(&out).contains("multi_queue")
}

#[test]
fn parallel_flows_between_pods_spread_over_two_threads() {
    let node = Node::start_with("mq", Some("[dataplane]\nthreads = 2\n"));
    let iperf3 = require("iperf3", "iperf3").to_string_lossy().into_owned();
    for i in 1..=2 {
        node.ok(&["run", &format!("server{i}"), "--", &iperf3, "-s"]);
        node.ok(&["run", &format!("client{i}"), "--", "sleep", "infinity"]);
    }
    let servers: Vec<String> = (1..=2).map(|i| node.wait_running(&format!("server{i}"))).collect();
    (1..=2).for_each(|i| drop(node.wait_running(&format!("client{i}"))));
    assert!(multi_queue(&node, "client1"), "threads = 2 gives each pod a queue per thread");
    let before: u64 = thread_frames(&node).iter().sum();

    // Two clients at once, eight streams each: 18 connections whose hash
    // decides their thread. All on one thread has odds of 2 in 2^18.
    let results: Vec<std::process::Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(i, server)| {
                let (node, iperf3) = (&node, &iperf3);
                scope.spawn(move || {
                    let client = format!("client{}", i + 1);
                    node.exec(&client, &[iperf3, "-c", server, "-P", "8", "-t", "3", "-J"])
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for out in &results {
        assert!(out.status.success(), "iperf3: {}{}", stdout(out), stderr(out));
        let report: Value = serde_json::from_str(&stdout(out)).unwrap();
        let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap();
        assert!(received > 1 << 20, "each run moved data: {received} bytes");
    }

    let frames = thread_frames(&node);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let total: u64 = frames.iter().sum::<u64>() - before;
    for (thread, n) in frames.iter().enumerate() {
        assert!(*n * 20 > total, "thread {thread} decided {n} of {total} frames: {frames:?}");
    }
}

#[test]
fn pods_keep_their_network_when_the_thread_count_changes() {
    let mut node = Node::start_with("mqrestart", Some("[dataplane]\nthreads = 2\n"));
    let bb = busybox();
    let www = node.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "still here\n").unwrap();
    let www = www.to_string_lossy().into_owned();
    node.ok(&["run", "web", "--", &bb, "httpd", "-f", "-p", "80", "-h", &www]);
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    let web = node.wait_running("web");
    node.wait_running("client");
    let fetch = |node: &Node, when: &str| {
        let mut last = String::new();
        for _ in 0..20 {
            let out = node.exec("client", &["timeout", "5", &bb, "wget", "-qO-", &format!("http://{web}/")]);
            if stdout(&out) == "still here\n" {
                return;
            }
            last = format!("{:?} {}{}", out.status, stdout(&out), stderr(&out));
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!("{when}: the web pod is unreachable: {last}\n{}", node.agent_log());
    };
    fetch(&node, "first start");
    // A TAP keeps the kind it was made with (multi-queue or not); an agent
    // with another thread count attaches to it as it is.
    for (from, threads) in [(2, 1), (1, 2)] {
        node.stop(libc::SIGKILL);
        let path = node.dir.join("config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen(&format!("threads = {from}"), &format!("threads = {threads}"), 1),
        )
        .unwrap();
        node.up();
        fetch(&node, &format!("restarted with {threads} threads"));
        // Taken back as they were, not removed and started again.
        let log = node.agent_log();
        assert!(log.contains("took back a running pod"), "{log}");
        assert!(!log.contains("removing stale pod sandbox"), "{log}");
        assert_eq!(thread_frames(&node).len(), threads);
    }
    assert!(multi_queue(&node, "web"), "the TAP made by two threads stays multi-queue");
}

#[test]
fn egress_downloads_handed_between_two_threads_arrive_whole() {
    // Thread 0 alone reads the egress endpoint's socketpair and hands each
    // frame of a flow thread 1 owns to it. A lost wakeup there once left
    // thread 1 draining its handoffs only when its own traffic or its 1 s
    // epoll timeout woke it: a 3 MB download crawled (1.7 MB in 20 s).
    // Many flows at once, several rounds: many wakeups for a race to lose.
    let node = Node::start_with("mqegress", Some("[dataplane]\nthreads = 2\n"));
    let mut lan = Outside::attach(&node);
    let bb = busybox();
    let www = node.dir.join("lan-www");
    std::fs::create_dir_all(&www).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(www.join("big"), &big).unwrap();
    let www = www.to_string_lossy().into_owned();
    lan.spawn(&[&bb, "httpd", "-f", "-p", "80", "-h", &www], &node.dir.join("httpd.log"));
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.wait_running("client");
    eventually(Duration::from_secs(5), "the lan web server", || {
        let out = lan.run(&["ss", "-Hltn", "sport = :80"]);
        (!stdout(&out).trim().is_empty()).then_some(())
    });
    let handed_before: u64 = thread_counter(&node, "handed_off").iter().sum();

    // Eight downloads at once, three rounds (24 flows whose hash picks
    // their thread; none on thread 1 has odds of 1 in 2^24), each followed
    // by downloads one at a time: a thread left without its wakeups has no
    // other traffic then to wake it, and a lone download crawls.
    let parallel = format!(
        "for i in 1 2 3 4 5 6 7 8; do (timeout 30 {bb} wget -qO- http://192.168.77.2/big | wc -c) & done; wait"
    );
    let sequential =
        format!("for i in 1 2 3 4; do timeout 20 {bb} wget -qO- http://192.168.77.2/big | wc -c; done");
    for round in 1..=3 {
        for (script, n) in [(&parallel, 8), (&sequential, 4)] {
            let out = node.exec("client", &["sh", "-c", script]);
            let printed = stdout(&out);
            let sizes: Vec<&str> = printed.lines().map(str::trim).collect();
            assert_eq!(
                sizes,
                vec!["3000000"; n],
                "round {round}: every download arrives whole: {}\nthreads: {:?} handed off, {:?} handoff queue full",
                stderr(&out),
                thread_counter(&node, "handed_off"),
                thread_counter(&node, "handoff_full"),
            );
        }
    }
    let handed: u64 = thread_counter(&node, "handed_off").iter().sum();
    assert!(handed > handed_before, "flows of the other thread were handed over: {handed}");
}
