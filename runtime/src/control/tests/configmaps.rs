//! ConfigMaps in the control plane (checked, saved, numbered, bounded),
//! and pods' ConfigMap and Secret references resolved for their node only.

use crate::api::changes::{ChangeType, Object, ObjectKind};
use crate::api::{Request, Response};
use crate::control::harness::*;
use crate::model::configmap::{ConfigMapSpec, MAX_CONFIGMAP_BYTES};
use crate::model::env_refs::{EnvRef, Source};
use crate::model::{ImageSpec, PodSpec, PullPolicy};

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMapSpec {
    ConfigMapSpec {
        name: name.into(),
        namespace: "default".into(),
        data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        binary_data: Default::default(),
        labels: Default::default(),
        annotations: Default::default(),
    }
}

/// An image pod on `node` whose variables come from `refs`.
fn image_pod(name: &str, node: &str, refs: Vec<EnvRef>) -> PodSpec {
    let mut pod = pinned(name, node);
    pod.template.command = Vec::new();
    pod.template.image = Some(ImageSpec {
        image: "busybox".into(),
        pull_policy: PullPolicy::IfNotPresent,
        command: Vec::new(),
        args: Vec::new(),
        env: vec![("MODE".into(), "literal".into())],
        env_refs: refs,
        env_error: None,
        volumes: Vec::new(),
        mounts: Vec::new(),
        files: Vec::new(),
        stdin_once: false,
        stdin: Default::default(),
    });
    pod
}

fn key(var: &str, source: Source, object: &str, key: &str, optional: bool) -> EnvRef {
    EnvRef::Key { var: var.into(), source, object: object.into(), key: key.into(), optional }
}

#[test]
fn configmaps_are_saved_numbered_watched_and_restored() {
    let mut h = Harness::new(1);
    let start = h.cp.revision();
    h.ok(Request::CreateConfigMap(configmap("app", &[("mode", "fast")])));
    assert_eq!(h.store.last().unwrap().configmaps.len(), 1);
    let Response::Changes { changes, .. } = h.ok(Request::Changes { since: start }) else { panic!() };
    let added = changes.iter().find(|c| c.object.object.kind() == ObjectKind::ConfigMap).unwrap();
    assert_eq!(added.change, ChangeType::Added);
    let first = added.object.revision;
    // A change is MODIFIED with the data before and after; the same data
    // again changes nothing.
    h.ok(Request::UpdateConfigMap(configmap("app", &[("mode", "slow")])));
    let Response::Changes { changes, .. } = h.ok(Request::Changes { since: first }) else { panic!() };
    assert_eq!(changes.len(), 1);
    let (Object::ConfigMap(after), Some(Object::ConfigMap(before))) =
        (&changes[0].object.object, &changes[0].before)
    else {
        panic!("{changes:?}")
    };
    assert_eq!((before.spec.data["mode"].as_str(), after.spec.data["mode"].as_str()), ("fast", "slow"));
    let revision = h.cp.revision();
    h.ok(Request::UpdateConfigMap(configmap("app", &[("mode", "slow")])));
    assert_eq!(h.cp.revision(), revision);

    let mut restored = Harness::restore(2, h.store.last().unwrap(), FakeStore::default());
    let Response::ConfigMaps(list) = restored.ok(Request::GetConfigMaps { namespace: None }) else {
        panic!()
    };
    assert_eq!(list[0].spec.data["mode"], "slow");
    h.ok(Request::DeleteConfigMap { namespace: "default".into(), name: "app".into() });
    let Response::ConfigMaps(list) = h.ok(Request::GetConfigMaps { namespace: None }) else { panic!() };
    assert!(list.is_empty());
}

#[test]
fn bad_large_or_duplicate_configmaps_are_refused_and_change_nothing() {
    let mut h = Harness::new(1);
    let before = h.cp.state();
    assert!(
        h.err(Request::CreateConfigMap(configmap("app", &[("a/b", "x")]))).contains("a valid config key")
    );
    let big = "x".repeat(MAX_CONFIGMAP_BYTES);
    assert!(h.err(Request::CreateConfigMap(configmap("app", &[("k", &big)]))).contains("at most 1048576"));
    assert!(h.err(Request::CreateConfigMap(configmap("Bad_Name", &[]))).contains("invalid configmap name"));
    assert_eq!(h.cp.state(), before);
    h.ok(Request::CreateConfigMap(configmap("app", &[])));
    assert!(h.err(Request::CreateConfigMap(configmap("app", &[]))).contains("already exists"));
    assert!(
        h.err(Request::UpdateConfigMap(configmap("nope", &[]))).contains("configmap default/nope not found")
    );
    // The cluster's total is bounded: every node's state file holds them.
    let almost = "x".repeat(MAX_CONFIGMAP_BYTES - 8);
    let mut made = 0;
    let e = loop {
        match h.request(Request::CreateConfigMap(configmap(&format!("big{made}"), &[("k", &almost)]))) {
            Ok(_) => made += 1,
            Err(e) => break e.to_string(),
        }
        assert!(made < 100, "no bound");
    };
    assert!(e.contains("delete unused configmaps"), "{e}");
    assert_eq!(made, 16, "16 MiB in all");
}

#[test]
fn references_resolve_for_the_pods_node_only_and_missing_ones_say_why() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    h.ok(Request::CreateConfigMap(configmap("app", &[("mode", "fast"), ("color", "blue")])));
    h.ok(Request::CreateSecret(opaque_secret("db")));
    let refs = vec![
        EnvRef::All {
            source: Source::ConfigMap,
            object: "app".into(),
            prefix: "APP_".into(),
            optional: false,
        },
        key("PASSWORD", Source::Secret, "db", "password", false),
        key("MODE", Source::ConfigMap, "app", "mode", false),
        key("MAYBE", Source::ConfigMap, "absent", "k", true),
    ];
    h.ok(Request::RunPod(image_pod("web", "n1", refs)));
    h.ok(Request::RunPod(image_pod(
        "broken",
        "n1",
        vec![key("X", Source::ConfigMap, "app", "nokey", false)],
    )));
    h.converge();
    let desired = &h.nodes["n1"].desired;
    let web =
        desired.pods.iter().find(|p| p.spec.name == "web").unwrap().spec.template.image.clone().unwrap();
    assert!(web.env_refs.is_empty() && web.env_error.is_none());
    let env: Vec<(&str, &str)> = web.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // envFrom, then the literal values, then valueFrom (the last wins).
    assert_eq!(
        env,
        [
            ("APP_color", "blue"),
            ("APP_mode", "fast"),
            ("MODE", "literal"),
            ("PASSWORD", "hunter2"),
            ("MODE", "fast")
        ]
    );
    let broken =
        desired.pods.iter().find(|p| p.spec.name == "broken").unwrap().spec.template.image.clone().unwrap();
    assert_eq!(broken.env_error.as_deref(), Some("couldn't find key nokey in ConfigMap default/app"));
    // The other node holds neither pod's values, and no ConfigMap at all.
    let other = format!("{:?}", h.nodes["n2"].desired);
    assert!(!other.contains("hunter2") && !other.contains("blue"), "n2 got values its pods do not use");
    // As stored and as the API shows the pod: the references, not values.
    let shown = format!("{:?}", h.pod("web").spec);
    assert!(!shown.contains("hunter2") && shown.contains("PASSWORD"), "{shown}");

    // Once the key exists the node gets the value.
    h.ok(Request::UpdateConfigMap(configmap("app", &[("mode", "fast"), ("nokey", "found")])));
    h.converge();
    let desired = &h.nodes["n1"].desired;
    let broken =
        desired.pods.iter().find(|p| p.spec.name == "broken").unwrap().spec.template.image.clone().unwrap();
    assert_eq!((broken.env_error, broken.env.last().cloned()), (None, Some(("X".into(), "found".into()))));
}

#[test]
fn volumes_and_the_downward_api_resolve_for_the_pods_node_only() {
    use crate::model::env_refs::FieldPath;
    use crate::model::volumes::{KeyToPath, Volume, VolumeMount};
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    h.ok(Request::CreateConfigMap(configmap("app", &[("app.conf", "mode=fast\n"), ("color", "blue")])));
    h.ok(Request::CreateSecret(opaque_secret("db")));
    let field =
        |var: &str, path: &str| EnvRef::Field { var: var.into(), field: FieldPath::parse(path).unwrap() };
    let refs = [
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "status.podIP",
        "status.hostIP",
        "metadata.labels['app']",
    ]
    .iter()
    .map(|p| field(&format!("F_{p}"), p))
    .collect();
    let volume = |name: &str, source: Source, object: &str, items: Vec<KeyToPath>, optional: bool| Volume {
        name: name.into(),
        source,
        object: object.into(),
        items,
        optional,
        default_mode: crate::model::volumes::DEFAULT_MODE,
    };
    let mut spec = image_pod("web", "n1", refs);
    let image = spec.template.image.as_mut().unwrap();
    image.volumes = vec![
        volume("cfg", Source::ConfigMap, "app", vec![], false),
        volume(
            "db",
            Source::Secret,
            "db",
            vec![KeyToPath { key: "password".into(), path: "pw/password".into(), mode: Some(0o400) }],
            false,
        ),
        volume("gone", Source::ConfigMap, "absent", vec![], true),
    ];
    image.mounts = vec![VolumeMount { name: "cfg".into(), mount_path: "/etc/app".into(), read_only: true }];
    h.ok(Request::RunPod(spec.clone()));
    let mut broken = spec;
    broken.name = "broken".into();
    broken.template.image.as_mut().unwrap().volumes.push(volume(
        "nope",
        Source::ConfigMap,
        "nope",
        vec![],
        false,
    ));
    h.ok(Request::RunPod(broken));
    h.converge();

    let desired = &h.nodes["n1"].desired;
    let ip = desired.pods.iter().find(|p| p.spec.name == "web").unwrap().ip.to_string();
    let image = |name: &str| {
        desired.pods.iter().find(|p| p.spec.name == name).unwrap().spec.template.image.clone().unwrap()
    };
    let web = image("web");
    assert_eq!(web.env_error, None);
    let env: Vec<(&str, &str)> = web.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env[1..],
        [
            ("F_metadata.name", "web"),
            ("F_metadata.namespace", "default"),
            ("F_spec.nodeName", "n1"),
            ("F_status.podIP", ip.as_str()),
            ("F_status.hostIP", "192.168.1.2"),
            ("F_metadata.labels['app']", "web"),
        ]
    );
    type Files<'a> = Vec<(&'a str, Vec<(&'a str, &'a [u8], u32)>)>;
    let files: Files = web
        .files
        .iter()
        .map(|v| {
            (v.name.as_str(), v.files.iter().map(|f| (f.path.as_str(), f.data.as_slice(), f.mode)).collect())
        })
        .collect();
    assert_eq!(
        files,
        vec![
            ("cfg", vec![("app.conf", &b"mode=fast\n"[..], 0o644), ("color", b"blue", 0o644)]),
            ("db", vec![("pw/password", b"hunter2", 0o400)]),
            ("gone", vec![]),
        ]
    );
    assert_eq!(image("broken").env_error.as_deref(), Some("configmap \"nope\" not found"));
    // The other node holds no file of them; the stored pod holds none.
    let other = format!("{:?}", h.nodes["n2"].desired);
    assert!(!other.contains("104, 117, 110, 116, 101, 114, 50") && !other.contains("mode=fast"), "{other}");
    assert!(h.pod("web").spec.template.image.unwrap().files.is_empty());

    // Once the ConfigMap exists the pod's node gets its files.
    h.ok(Request::CreateConfigMap(configmap("nope", &[("k", "v")])));
    h.converge();
    let desired = &h.nodes["n1"].desired;
    let broken =
        desired.pods.iter().find(|p| p.spec.name == "broken").unwrap().spec.template.image.clone().unwrap();
    assert_eq!((broken.env_error, broken.files.len()), (None, 4));
}
