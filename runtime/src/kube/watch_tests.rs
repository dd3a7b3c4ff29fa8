//! The watch hub and watchers against a real control plane, answering the
//! API's requests as the agent does: fan-out, selectors, a slow watcher,
//! bookmarks, 410, Tables, bounds.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::agent::Agent;
use super::discovery;
use super::watch::{Hub, Limits};
use super::watcher;
use crate::api::server::{Answer, Call};
use crate::api::{Request, Response};
use crate::config::NodeConfig;
use crate::control::{ControlPlane, Host, Now, Rng};
use crate::listeners::ListenError;
use crate::listeners::proxy::ListenKey;
use crate::model::{Phase, PodSpec, PodStatus};
use crate::store::State;

struct AnyHost;

impl Host for AnyHost {
    fn try_bind(&mut self, _: &ListenKey) -> Result<(), ListenError> {
        Ok(())
    }
    fn has_command(&self, _: &str) -> bool {
        true
    }
}

type Cp = Arc<Mutex<ControlPlane>>;

/// A control plane answering on an agent's channel, and a hub over it.
fn fixture(limits: Limits) -> (Cp, Arc<Hub>) {
    let (cp, hub, _) = fixture_woken(limits, None);
    (cp, hub)
}

/// [`fixture`] with the hub woken by `revisions`.
fn fixture_woken(limits: Limits, revisions: Option<tokio::sync::watch::Receiver<u64>>) -> (Cp, Arc<Hub>, ()) {
    let cp = ControlPlane::new(
        NodeConfig::default(),
        "n1",
        State::default(),
        Now::system(),
        Rng::seeded(1),
        Box::new(AnyHost),
    )
    .unwrap();
    let cp = Arc::new(Mutex::new(cp));
    let (calls, mut rx) = mpsc::channel::<Call>(64);
    let answering = cp.clone();
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let answer = answering.lock().unwrap().handle(Now::system(), request);
            let _ = reply.send(answer.map(|r| Answer::Once(Box::new(r))).map_err(|e| e.to_string()));
        }
    });
    let listener = Box::leak(Box::new(crate::listeners::limits::Counters::new()));
    let hub = Hub::new(Agent::new(calls, Duration::from_secs(5)), limits, listener).waking_on(revisions);
    (cp, hub, ())
}

fn limits() -> Limits {
    Limits { poll: Duration::from_millis(5), ..Limits::default() }
}

fn spec(name: &str) -> PodSpec {
    PodSpec {
        name: name.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), name.to_string())].into(),
        template: crate::model::PodTemplate { command: vec!["sleep".into()], ..Default::default() },
        ..Default::default()
    }
}

fn run(cp: &Cp, name: &str) -> String {
    match cp.lock().unwrap().handle(Now::system(), Request::RunPod(spec(name))).unwrap() {
        Response::Pod(p) => p.uid,
        other => panic!("{other:?}"),
    }
}

fn report(cp: &Cp, uid: &str, phase: Phase, ready: bool) {
    let status = PodStatus {
        phase,
        pod_ip: None,
        ready,
        restarts: 0,
        reason: None,
        last_exit_code: None,
        started_at: Some(1),
        message: None,
    };
    let report = crate::desired::NodeReport { pods: vec![(uid.to_string(), status)], ingress_problem: None };
    cp.lock().unwrap().report("n1", report);
}

fn pods() -> &'static discovery::Resource {
    discovery::find("", "pods").unwrap()
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn watch(
    hub: &Arc<Hub>,
    query: &[(&str, &str)],
    table: bool,
) -> Result<mpsc::Receiver<hyper::body::Bytes>, super::status::Status> {
    let query: BTreeMap<String, String> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    watcher::start(hub, pods(), Some("default"), &query, table, CLIENT).await
}

/// The next event: its type and object.
async fn next(rx: &mut mpsc::Receiver<hyper::body::Bytes>) -> (String, Value) {
    let chunk = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event in time")
        .expect("open");
    assert!(chunk.ends_with(b"\n"), "one JSON line per event");
    let v: Value = serde_json::from_slice(&chunk).unwrap();
    (v["type"].as_str().unwrap().to_string(), v["object"].clone())
}

fn revision(cp: &Cp) -> String {
    cp.lock().unwrap().revision().to_string()
}

#[tokio::test]
async fn every_watcher_gets_each_change_once_in_order() {
    let (cp, hub) = fixture(limits());
    run(&cp, "before");
    let rv = revision(&cp);
    let mut from_list = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    let mut from_zero = watch(&hub, &[("resourceVersion", "0")], false).await.unwrap();
    let (t, o) = next(&mut from_zero).await;
    assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some("before")), "the state first");
    let uid = run(&cp, "web");
    report(&cp, &uid, Phase::Running, true);
    for rx in [&mut from_list, &mut from_zero] {
        let (t, o) = next(rx).await;
        assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some("web")));
        let added_rv: u64 = o["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        let (t, o) = next(rx).await;
        assert_eq!(t, "MODIFIED");
        assert_eq!(o["status"]["phase"], "Running");
        let rv: u64 = o["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(rv > added_rv);
    }
    cp.lock()
        .unwrap()
        .handle(Now::system(), Request::DeletePod { namespace: "default".into(), name: "web".into() })
        .unwrap();
    let (t, o) = next(&mut from_list).await;
    assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("DELETED", Some("web")));
    assert_eq!(hub.watchers(), 2);
    drop(from_list);
    drop(from_zero);
}

#[tokio::test]
async fn a_watch_from_a_revision_replays_what_came_after_it() {
    let (cp, hub) = fixture(limits());
    let rv = revision(&cp);
    run(&cp, "a");
    run(&cp, "b");
    let mut rx = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    assert_eq!(next(&mut rx).await.1["metadata"]["name"], "a");
    assert_eq!(next(&mut rx).await.1["metadata"]["name"], "b");
}

#[tokio::test]
async fn selectors_filter_events_and_an_object_leaving_them_is_deleted() {
    let (cp, hub) = fixture(limits());
    let rv = revision(&cp);
    let mut running =
        watch(&hub, &[("resourceVersion", &rv), ("fieldSelector", "status.phase=Running")], false)
            .await
            .unwrap();
    let mut named = watch(&hub, &[("resourceVersion", &rv), ("fieldSelector", "metadata.name=web")], false)
        .await
        .unwrap();
    let mut labelled =
        watch(&hub, &[("resourceVersion", &rv), ("labelSelector", "app=other")], false).await.unwrap();
    let web = run(&cp, "web");
    let other = run(&cp, "other");
    report(&cp, &web, Phase::Running, true);
    let (t, o) = next(&mut running).await;
    assert_eq!(
        (t.as_str(), o["metadata"]["name"].as_str()),
        ("ADDED", Some("web")),
        "it enters the selection"
    );
    report(&cp, &web, Phase::Failed, false);
    let (t, o) = next(&mut running).await;
    assert_eq!(
        (t.as_str(), o["metadata"]["name"].as_str()),
        ("DELETED", Some("web")),
        "it leaves the selection"
    );
    assert_eq!(o["status"]["phase"], "Running", "as it was when it left");
    let (t, o) = next(&mut named).await;
    assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some("web")));
    assert_eq!(next(&mut named).await.0, "MODIFIED");
    let (t, o) = next(&mut labelled).await;
    assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some("other")), "web is not for it");
    report(&cp, &other, Phase::Running, true);
    assert_eq!(next(&mut labelled).await.0, "MODIFIED");
    // `running` saw nothing of `other` until it ran.
    let (t, o) = next(&mut running).await;
    assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some("other")));
}

#[tokio::test]
async fn a_slow_watcher_is_closed_and_counted_and_the_others_go_on() {
    let (cp, hub) = fixture(Limits { queue: 2, ..limits() });
    let rv = revision(&cp);
    let mut slow = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    let mut fast = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    for i in 0..40 {
        run(&cp, &format!("p{i}"));
        // The fast one reads as they come.
        assert_eq!(next(&mut fast).await.1["metadata"]["name"], format!("p{i}"));
    }
    assert_eq!(hub.counters.slow_closed.load(std::sync::atomic::Ordering::Relaxed), 1);
    // The slow one gets what was queued for it, then its stream ends.
    let mut got = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(10), slow.recv()).await {
        got += 1;
    }
    assert!(got < 40, "closed before the end: {got}");
    assert_eq!(hub.watchers(), 1, "its place is free");
}

#[tokio::test]
async fn bookmarks_carry_the_revision_when_asked_for() {
    let (cp, hub) = fixture(Limits { bookmark: Duration::from_millis(20), ..limits() });
    let rv = revision(&cp);
    let mut rx =
        watch(&hub, &[("resourceVersion", &rv), ("allowWatchBookmarks", "true")], false).await.unwrap();
    run(&cp, "a");
    let (t, _) = next(&mut rx).await;
    assert_eq!(t, "ADDED");
    let now = revision(&cp);
    loop {
        let (t, o) = next(&mut rx).await;
        assert_eq!(t, "BOOKMARK");
        assert_eq!(o["kind"], "Pod");
        if o["metadata"]["resourceVersion"] == now.as_str() {
            break;
        }
    }
    let mut plain = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    assert_eq!(next(&mut plain).await.0, "ADDED");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), plain.recv()).await.is_err(),
        "no bookmark unasked"
    );
}

#[tokio::test]
async fn a_revision_older_than_the_log_is_410_expired() {
    let (cp, hub) = fixture(limits());
    cp.lock().unwrap().set_change_log(2);
    let rv = revision(&cp);
    for i in 0..3 {
        run(&cp, &format!("p{i}"));
    }
    let e = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap_err();
    assert_eq!((e.code, e.reason), (410, "Expired"), "{e}");
    assert_eq!(hub.counters.expired.load(std::sync::atomic::Ordering::Relaxed), 1);
    let e = watch(&hub, &[("resourceVersion", "x")], false).await.unwrap_err();
    assert_eq!(e.code, 400);
}

#[tokio::test]
async fn a_table_watch_sends_one_row_per_event_and_the_columns_once() {
    let (cp, hub) = fixture(limits());
    run(&cp, "a");
    let mut rx = watch(&hub, &[("resourceVersion", "0")], true).await.unwrap();
    let (t, first) = next(&mut rx).await;
    assert_eq!((t.as_str(), first["kind"].as_str()), ("ADDED", Some("Table")));
    assert_eq!(first["rows"].as_array().unwrap().len(), 1);
    assert_eq!(first["rows"][0]["cells"][0], "a");
    assert_eq!(first["columnDefinitions"][0]["name"], "Name");
    run(&cp, "b");
    let (_, second) = next(&mut rx).await;
    assert_eq!(second["rows"][0]["cells"][0], "b");
    assert!(second["columnDefinitions"].as_array().unwrap().is_empty(), "kubectl reuses the first ones");
}

#[tokio::test]
async fn watchers_are_bounded_per_client_and_in_total_and_refusals_counted() {
    let (_cp, hub) = fixture(Limits { per_client: 1, total: 2, ..limits() });
    let _one = watch(&hub, &[], false).await.unwrap();
    let e = watch(&hub, &[], false).await.unwrap_err();
    assert_eq!(e.code, 429);
    let query: BTreeMap<String, String> = BTreeMap::new();
    let other: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
    let _two = watcher::start(&hub, pods(), None, &query, false, other).await.unwrap();
    let third: IpAddr = Ipv4Addr::new(10, 0, 0, 3).into();
    assert_eq!(watcher::start(&hub, pods(), None, &query, false, third).await.unwrap_err().code, 429);
    let c = &hub.counters;
    assert_eq!(c.refused_client.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(c.refused_total.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_watch_ends_at_its_timeout() {
    let (_cp, hub) = fixture(limits());
    let mut rx = watch(&hub, &[("timeoutSeconds", "1")], false).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("ended");
    assert!(end.is_none());
}

#[tokio::test]
async fn a_watch_from_a_revision_reads_past_pages_of_other_kinds() {
    use crate::model::{
        ClusterIpRequest, Protocol, ServicePort, ServiceSpec, ServiceType, SessionAffinity, TargetPort,
    };
    let (cp, hub) = fixture(limits());
    let rv = revision(&cp);
    // Another watcher keeps the hub going: it learns past what it keeps.
    let mut early = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    // Each Service is two changes (it and its endpoints): more than a page.
    for i in 0..crate::control::CHANGES_PER_ANSWER / 2 + 10 {
        let spec = ServiceSpec {
            name: format!("s{i}"),
            namespace: "default".into(),
            cluster_ip: ClusterIpRequest::Auto,
            ports: vec![ServicePort {
                name: None,
                port: 80,
                target_port: TargetPort::Number(80),
                protocol: Protocol::Tcp,
                node_port: None,
            }],
            selector: Default::default(),
            session_affinity: SessionAffinity::None,
            external_name: None,
            service_type: ServiceType::ClusterIP,
            annotations: Default::default(),
            labels: Default::default(),
        };
        cp.lock().unwrap().handle(Now::system(), Request::CreateService(spec)).unwrap();
    }
    run(&cp, "after");
    assert_eq!(next(&mut early).await.1["metadata"]["name"], "after");
    let mut rx = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    let (t, o) = next(&mut rx).await;
    assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some("after")));
}

#[tokio::test]
async fn where_the_control_plane_runs_the_hub_wakes_on_its_revision_not_a_timer() {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    // Timers too long for the test: only the revision can wake the hub.
    let slow = Duration::from_secs(3600);
    let (cp, hub, ()) = fixture_woken(Limits { poll: slow, woken_poll: slow, ..Limits::default() }, Some(rx));
    let rv = revision(&cp);
    let mut rx = watch(&hub, &[("resourceVersion", &rv)], false).await.unwrap();
    for name in ["a", "b"] {
        run(&cp, name);
        // As the agent's loop does after its turn.
        tx.send(cp.lock().unwrap().revision()).unwrap();
        let (t, o) = next(&mut rx).await;
        assert_eq!((t.as_str(), o["metadata"]["name"].as_str()), ("ADDED", Some(name)));
    }
}

#[tokio::test]
async fn a_replicaset_watch_follows_its_deployment() {
    let (cp, hub) = fixture(limits());
    let rv = revision(&cp);
    let rs = discovery::find("apps", "replicasets").unwrap();
    let query: BTreeMap<String, String> = [("resourceVersion".to_string(), rv)].into();
    let mut rx = watcher::start(&hub, rs, Some("default"), &query, false, CLIENT).await.unwrap();
    let spec = crate::model::DeploymentSpec {
        name: "web".into(),
        namespace: "default".into(),
        replicas: 2,
        template: crate::model::PodTemplate { command: vec!["sleep".into()], ..Default::default() },
        ..Default::default()
    };
    cp.lock().unwrap().handle(Now::system(), Request::CreateDeployment(spec)).unwrap();
    let (t, o) = next(&mut rx).await;
    assert_eq!((t.as_str(), o["kind"].as_str()), ("ADDED", Some("ReplicaSet")));
    let name = o["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == "web-".len() + 10, "{name}");
    assert_eq!(o["spec"]["replicas"], 2);
    assert_eq!(o["status"]["replicas"], 2, "{o}");
    assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    cp.lock()
        .unwrap()
        .handle(Now::system(), Request::DeleteDeployment { namespace: "default".into(), name: "web".into() })
        .unwrap();
    loop {
        let (t, o) = next(&mut rx).await;
        if t == "DELETED" {
            assert_eq!(o["metadata"]["name"], name);
            break;
        }
        assert_eq!(t, "MODIFIED");
    }
}

#[tokio::test]
async fn a_streaming_list_ends_its_initial_events_with_a_bookmark() {
    let (cp, hub) = fixture(limits());
    run(&cp, "a");
    let query = [
        ("sendInitialEvents", "true"),
        ("resourceVersionMatch", "NotOlderThan"),
        ("allowWatchBookmarks", "true"),
    ];
    let mut rx = watch(&hub, &query, false).await.unwrap();
    assert_eq!(next(&mut rx).await.1["metadata"]["name"], "a");
    let (t, o) = next(&mut rx).await;
    assert_eq!(t, "BOOKMARK");
    assert_eq!(o["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(o["metadata"]["resourceVersion"], revision(&cp).as_str());
    run(&cp, "b");
    assert_eq!(next(&mut rx).await.1["metadata"]["name"], "b", "then the changes");
}
