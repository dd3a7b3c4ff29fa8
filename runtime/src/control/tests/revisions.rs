//! The revision and its change log: what bumps it, what does not, and a
//! watch from before what the log holds.

use crate::api::changes::{Change, ChangeType, ObjectKind};
use crate::api::{Request, Response};
use crate::control::harness::*;

fn changes(h: &mut Harness, since: u64) -> (u64, Vec<Change>) {
    match h.ok(Request::Changes { since }) {
        Response::Changes { revision, changes } => (revision, changes),
        other => panic!("{other:?}"),
    }
}

fn summary(changes: &[Change]) -> Vec<(ChangeType, ObjectKind, String)> {
    changes.iter().map(|c| (c.change, c.object.object.kind(), c.object.object.name().to_string())).collect()
}

fn pod_revision(h: &mut Harness, name: &str) -> u64 {
    match h.ok(Request::Objects { kind: ObjectKind::Pod, namespace: None }) {
        Response::Objects { items, .. } => {
            items.iter().find(|v| v.object.name() == name).expect("the pod").revision
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_change_of_an_object_bumps_the_revision_once_and_is_logged() {
    let mut h = Harness::new(1);
    let start = h.cp.revision();
    // Created, then its node runs it and reports it Running and Ready: two changes.
    let Response::Pod(_) = h.cp.handle(h.now, Request::RunPod(pod("a"))).unwrap() else { panic!() };
    h.converge();
    let (revision, log) = changes(&mut h, start);
    assert_eq!(
        summary(&log),
        [
            (ChangeType::Added, ObjectKind::Pod, "a".into()),
            (ChangeType::Modified, ObjectKind::Pod, "a".into())
        ]
    );
    assert_eq!(revision, start + 2);
    assert_eq!(log[0].object.revision, start + 1);
    assert!(!log[0].object.object.eq(&log[1].object.object), "each change carries the object as it was then");
    assert_eq!(log[1].object.revision, revision);
    let after_report = revision;
    assert_eq!(pod_revision(&mut h, "a"), after_report, "the object carries its last change");

    // The same report again, and heartbeats that change nothing: no change.
    h.join("n1", 2);
    let (joined, log) = changes(&mut h, after_report);
    assert_eq!(summary(&log), [(ChangeType::Added, ObjectKind::Node, "n1".into())]);
    h.run_for(10);
    let (quiet, log) = changes(&mut h, joined);
    assert!(log.is_empty(), "heartbeats and equal reports are no change: {log:?}");
    assert_eq!(quiet, joined);

    // A deployment: it, its replicas, then its replicas' status and its counts.
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    h.settle();
    let (deployed, log) = changes(&mut h, quiet);
    let kinds: Vec<_> = summary(&log);
    assert!(kinds.contains(&(ChangeType::Added, ObjectKind::Deployment, "web".into())), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|(t, k, _)| *t == ChangeType::Added && *k == ObjectKind::Pod).count(), 2);
    assert!(log.windows(2).all(|w| w[0].object.revision + 1 == w[1].object.revision), "one each");
    assert_eq!(log.last().unwrap().object.revision, deployed);

    // Scale: the deployment's generation goes up with its spec.
    let generation =
        |h: &mut Harness| match h.ok(Request::Objects { kind: ObjectKind::Deployment, namespace: None }) {
            Response::Objects { items, .. } => items[0].generation,
            other => panic!("{other:?}"),
        };
    assert_eq!(generation(&mut h), 1);
    h.ok(Request::ScaleDeployment { namespace: "default".into(), name: "web".into(), replicas: 1 });
    assert_eq!(generation(&mut h), 2);
    let (_, log) = changes(&mut h, deployed);
    assert_eq!(
        summary(&log).iter().filter(|(t, k, _)| *t == ChangeType::Deleted && *k == ObjectKind::Pod).count(),
        1
    );

    // A node going silent is NotReady: a change of the node.
    h.disconnect("n1");
    let before = h.cp.revision();
    h.advance(std::time::Duration::from_secs(10));
    h.tick();
    let (_, log) = changes(&mut h, before);
    assert!(summary(&log).contains(&(ChangeType::Modified, ObjectKind::Node, "n1".into())), "{log:?}");
}

#[test]
fn a_deletion_carries_the_object_as_it_was_last() {
    let mut h = Harness::new(1);
    h.ok(Request::RunPod(pod("a")));
    h.converge();
    let since = h.cp.revision();
    h.ok(Request::DeletePod { namespace: "default".into(), name: "a".into() });
    let (revision, log) = changes(&mut h, since);
    assert_eq!(summary(&log), [(ChangeType::Deleted, ObjectKind::Pod, "a".into())]);
    assert_eq!(log[0].object.revision, revision);
    match &log[0].object.object {
        crate::api::changes::Object::Pod(p) => assert!(p.status.ready, "its last status"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_revision_older_than_the_log_is_expired_and_so_is_one_from_the_future() {
    let mut h = Harness::new(1);
    h.cp.set_change_log(4);
    let start = h.cp.revision();
    // Each pod is two changes: created, then reported running.
    for i in 0..2 {
        h.ok(Request::RunPod(pod(&format!("p{i}"))));
    }
    assert_eq!(changes(&mut h, start).1.len(), 4, "all held");
    h.ok(Request::RunPod(pod("p2")));
    let err = h.err(Request::Changes { since: start });
    assert!(err.contains("too old") && err.contains("list again"), "{err}");
    let now = h.cp.revision();
    assert_eq!(changes(&mut h, now - 4).1.len(), 4, "the last four are held");
    assert!(h.err(Request::Changes { since: now - 5 }).contains("too old"));
    assert!(h.err(Request::Changes { since: now + 1 }).contains("too old"));
    assert!(changes(&mut h, now).1.is_empty());
}

#[test]
fn the_revision_is_saved_and_a_restart_expires_every_earlier_one() {
    let mut h = Harness::new(1);
    h.ok(Request::RunPod(pod("a")));
    h.converge();
    let before = h.cp.revision();
    h.ok(Request::RunPod(pod("b")));
    let saved = h.store.last().expect("saved");
    assert_eq!(saved.revision, before + 1 + crate::control::REVISION_RESERVE, "the ceiling");
    let mut again = Harness::restore(1, saved, h.store.clone());
    let start = again.cp.revision();
    assert!(start > before + 1, "never back: {start}");
    assert!(again.err(Request::Changes { since: before }).contains("too old"), "the log is gone");
    let restored =
        match again.cp.handle(again.now, Request::Objects { kind: ObjectKind::Pod, namespace: None }) {
            Ok(Response::Objects { items, .. }) => items,
            other => panic!("{other:?}"),
        };
    assert!(restored.iter().all(|v| v.revision == start), "every object is stamped at the start revision");
    // Then the node reports them running again: changes after the start.
    let (_, log) = changes(&mut again, start);
    assert!(log.iter().all(|c| c.change == ChangeType::Modified && c.object.revision > start), "{log:?}");
}

#[test]
fn status_changes_are_saved_once_per_reserve_and_a_restart_starts_past_all_of_them() {
    let mut h = Harness::new(1);
    h.ok(Request::RunPod(pod("a")));
    h.converge();
    h.cp.commit(&mut h.store).unwrap();
    let counter = h.store.saves.clone();
    let saves = || *counter.lock().unwrap();
    let before = saves();
    let ceiling = h.store.last().unwrap().revision;
    // The pod's readiness flips: a change of status each time, committed as
    // the agent commits after every input, and not written…
    let mut flips = 0;
    while h.cp.revision() < ceiling {
        h.local_ready = if flips % 2 == 0 { |_| false } else { |_| true };
        let revision = h.cp.revision();
        h.converge();
        assert_eq!(h.cp.revision(), revision + 1, "a status change");
        h.cp.commit(&mut h.store).unwrap();
        flips += 1;
    }
    assert_eq!(saves(), before, "{flips} status changes under the ceiling, no write");
    // …until the revision passes the ceiling on disk: then one write.
    h.local_ready = if flips % 2 == 0 { |_| false } else { |_| true };
    h.converge();
    h.cp.commit(&mut h.store).unwrap();
    assert_eq!(saves(), before + 1, "one write past the ceiling");
    // A restart from the last save starts above every revision handed out.
    let handed_out = h.cp.revision();
    let again = Harness::restore(1, h.store.last().unwrap(), h.store.clone());
    assert!(again.cp.revision() > handed_out, "{} > {handed_out}", again.cp.revision());
}

#[test]
fn endpoints_and_namespaces_are_numbered_as_they_change() {
    let mut h = Harness::new(1);
    let start = h.cp.revision();
    h.ok(Request::CreateService(service("web", "web")));
    h.ok(Request::RunPod(crate::model::PodSpec { namespace: "shop".into(), ..pod("cart") }));
    h.ok(Request::RunPod(pod("web")));
    let (_, log) = changes(&mut h, start);
    let log = summary(&log);
    assert!(log.contains(&(ChangeType::Added, ObjectKind::Endpoints, "web".into())), "{log:?}");
    assert!(log.contains(&(ChangeType::Added, ObjectKind::Namespace, "shop".into())), "{log:?}");
    // The pod is reported ready: the Service's endpoints change with it.
    h.settle();
    assert_eq!(h.ready_ips("web").len(), 1);
    let (_, log) = changes(&mut h, start);
    assert!(summary(&log).contains(&(ChangeType::Modified, ObjectKind::Endpoints, "web".into())), "{log:?}");
    // The namespace goes with its last object.
    let before = h.cp.revision();
    h.ok(Request::DeletePod { namespace: "shop".into(), name: "cart".into() });
    let (_, log) = changes(&mut h, before);
    assert!(summary(&log).contains(&(ChangeType::Deleted, ObjectKind::Namespace, "shop".into())), "{log:?}");
    let Response::Objects { items, .. } =
        h.ok(Request::Objects { kind: ObjectKind::Namespace, namespace: None })
    else {
        panic!()
    };
    let names: Vec<&str> = items.iter().map(|v| v.object.name()).collect();
    assert_eq!(names, ["default"]);
}

#[test]
fn a_failed_save_takes_back_the_revision_the_log_and_the_last_versions() {
    let mut h = Harness::new(5);
    // A short log, so the failed change also pushes old changes out of it.
    h.cp.set_change_log(3);
    h.ok(Request::CreateService(service("a", "web")));
    h.ok(Request::CreateService(service("b", "web")));
    let revision = h.cp.revision();
    let since = revision - 2;
    let log = changes(&mut h, since).1;
    let services =
        |h: &mut Harness| match h.ok(Request::Objects { kind: ObjectKind::Service, namespace: None }) {
            Response::Objects { revision, items } => (revision, items),
            other => panic!("{other:?}"),
        };
    let listed = services(&mut h);

    h.store.fail_with(libc::ENOSPC);
    for request in [
        Request::CreateService(service("c", "web")),
        Request::DeleteService { namespace: "default".into(), name: "a".into() },
    ] {
        h.err(request);
        assert_eq!(h.cp.revision(), revision, "the revision is taken back");
    }
    h.store.heal();
    assert_eq!(changes(&mut h, since).1, log, "the log, with what the failed changes pushed out of it");
    assert_eq!(services(&mut h), listed, "the last versions");
    // The next change gets the next revision, and a watch from before it
    // sees it alone.
    h.ok(Request::CreateService(service("c", "web")));
    let (_, next) = changes(&mut h, revision);
    assert_eq!(
        summary(&next),
        [
            (ChangeType::Added, ObjectKind::Service, "c".into()),
            (ChangeType::Added, ObjectKind::Endpoints, "c".into())
        ]
    );
    assert_eq!(next[0].object.revision, revision + 1);
}
