//! ConfigMaps end to end (issue #15): kubectl create/get/describe/edit/
//! patch/apply/delete and `get -w`, the Python client, podnet's own CLI,
//! and image pods taking variables from ConfigMaps and Secrets
//! (`valueFrom`, `envFrom`) and files (ConfigMap and Secret volumes), and
//! the downward API's variables, waiting as CreateContainerConfigError
//! while one is missing. Needs root (namespaces), kubectl, and for the pods
//! umoci, skopeo and the registry (tests/src/oci.rs).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::Scratch;
use podnet_e2e::{Node, eventually, require, require_root, stdout};

#[test]
fn kubectl_and_podnet_make_edit_watch_and_delete_configmaps() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubecm", None);
    let file = node.dir.join("game.properties");
    std::fs::write(&file, "lives=3\nlevel=hard\n").unwrap();
    let from_file = format!("--from-file={}", file.display());

    // A watch open before anything changes: every change shows up on it.
    let watched = node.dir.join("watch.out");
    let mut watch = kubectl_command(&node, KUBECTL, &["get", "cm", "-w", "--output-watch-events"])
        .stdout(std::fs::File::create(&watched).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get cm -w");

    let made = ok(&node, &["create", "configmap", "app", "--from-literal=mode=fast", &from_file]);
    assert_eq!(made.trim(), "configmap/app created");
    let listed = ok(&node, &["get", "cm"]);
    let header: Vec<&str> = listed.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{listed}");
    assert!(listed.lines().any(|l| l.split_whitespace().take(2).eq(["app", "2"])), "{listed}");
    let object = json(&ok(&node, &["get", "configmap", "app", "-o", "json"]));
    assert_eq!(object["data"]["mode"], "fast");
    assert_eq!(object["data"]["game.properties"], "lives=3\nlevel=hard\n");
    let described = ok(&node, &["describe", "cm", "app"]);
    assert!(described.contains("game.properties:") && described.contains("lives=3"), "{described}");

    // edit (kubectl's editor round trip: GET, the editor, PATCH) and patch.
    let edited = kubectl_command(&node, KUBECTL, &["edit", "cm", "app"])
        .env("KUBE_EDITOR", "sed -i -e s/fast/edited/")
        .output()
        .unwrap();
    assert!(edited.status.success(), "kubectl edit: {}", podnet_e2e::stderr(&edited));
    ok(&node, &["patch", "cm", "app", "-p", r#"{"data":{"extra":"1"}}"#]);
    let object = json(&ok(&node, &["get", "cm", "app", "-o", "json"]));
    assert_eq!(
        (object["data"]["mode"].as_str(), object["data"]["extra"].as_str()),
        (Some("edited"), Some("1"))
    );

    // apply: created, unchanged, configured.
    let manifest = node.dir.join("cm.yaml");
    let write = |mode: &str| {
        std::fs::write(&manifest, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  mode: {mode}\nbinaryData:\n  blob: AAEC\n")).unwrap()
    };
    let m = manifest.to_str().unwrap();
    write("one");
    assert_eq!(ok(&node, &["apply", "-f", m]).trim(), "configmap/applied created");
    assert_eq!(ok(&node, &["apply", "-f", m]).trim(), "configmap/applied unchanged");
    write("two");
    assert_eq!(ok(&node, &["apply", "-f", m]).trim(), "configmap/applied configured");
    let object = json(&ok(&node, &["get", "cm", "applied", "-o", "json"]));
    assert_eq!(
        (object["data"]["mode"].as_str(), object["binaryData"]["blob"].as_str()),
        (Some("two"), Some("AAEC"))
    );

    // Bad input: Kubernetes' key rule (422 naming the key), a body past
    // the 1 MiB bound (413); nothing is made.
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a/b: x\n")
        .unwrap();
    let err = fails(&node, &["create", "-f", m], "is invalid");
    assert!(err.contains("a valid config key"), "{err}");
    let big = node.dir.join("big");
    std::fs::write(&big, "x".repeat(1_100_000)).unwrap();
    fails(&node, &["create", "configmap", "big", &format!("--from-file={}", big.display())], "");
    fails(&node, &["get", "cm", "bad"], "NotFound");
    fails(&node, &["get", "cm", "big"], "NotFound");

    // podnet's own verbs on the same objects.
    assert_eq!(
        node.ok(&["create", "configmap", "own", "--from-literal=k=v", &from_file]).trim(),
        "configmap/own created"
    );
    let own = node.ok(&["get", "cm"]);
    assert!(own.lines().any(|l| l.split_whitespace().take(2).eq(["own", "2"])), "{own}");
    assert!(node.ok(&["describe", "configmap", "own"]).contains("k:\n----\nv"));
    assert_eq!(json(&node.ok(&["get", "cm", "own", "-o", "json"]))["data"]["k"], "v");
    node.fails(&["create", "configmap", "own2", "--from-literal=novalue"], "is not KEY=VALUE");
    node.fails(&["create", "configmap", "own2", "--from-literal=a/b=c"], "a valid config key");
    assert!(node.ok(&["get", "cm", "own"]).contains("own"), "kubectl sees podnet's");
    assert!(ok(&node, &["get", "cm", "own", "-o", "json"]).contains("\"k\": \"v\""));
    node.ok(&["delete", "configmap", "own"]);
    assert_eq!(ok(&node, &["delete", "cm", "app"]).trim(), "configmap \"app\" deleted");

    let seen = eventually(Duration::from_secs(20), "the watch's events", || {
        let text = std::fs::read_to_string(&watched).unwrap_or_default();
        (text.lines().any(|l| l.starts_with("DELETED") && l.contains("app"))).then_some(text)
    });
    let _ = watch.kill();
    let _ = watch.wait();
    for (event, name) in
        [("ADDED", "app"), ("MODIFIED", "app"), ("ADDED", "applied"), ("ADDED", "own"), ("DELETED", "own")]
    {
        assert!(
            seen.lines().any(|l| l.split_whitespace().take(2).eq([event, name])),
            "{event} {name} in the watch: {seen}"
        );
    }
}

#[test]
fn the_python_client_makes_patches_watches_and_deletes_configmaps() {
    require_root();
    let python = "/usr/bin/python3";
    let have = Command::new(python).args(["-c", "import kubernetes"]).output();
    assert!(
        have.is_ok_and(|o| o.status.success()),
        "the Python kubernetes client is missing: apt-get install python3-kubernetes (scripts/test does this)"
    );
    let node = node_with_address("kubecmpy", None);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join("configmaps.py");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .args(["timeout", "60", python])
        .arg(&script)
        .arg(kubeconfig(&node))
        .env("HOME", &node.dir)
        .output()
        .expect("run python3");
    let text = format!("{}{}", stdout(&out), podnet_e2e::stderr(&out));
    assert!(out.status.success(), "{text}");
    for line in [
        "CREATED py-cm fast",
        "LIST 1",
        "READ slow 1",
        "EVENT MODIFIED py-cm slow",
        "STATUS 422",
        "DELETED 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

#[test]
fn image_pods_take_variables_from_configmaps_and_secrets() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubecmenv");
    let (node, _lan) = node_with_registry("kubecmenv", &scratch);
    let image = image_ref();
    ok(&node, &["create", "configmap", "app", "--from-literal=mode=fast", "--from-literal=color=blue"]);
    ok(&node, &["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    let manifest = node.dir.join("pods.yaml");
    let pod = |name: &str, config: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: {name}\n    image: {image}\n    command: [sh, -c, 'echo \"MODE=$MODE PASSWORD=$PASSWORD COLOR=$APP_color MAYBE=${{MAYBE-unset}}\"; sleep 3600']\n    env:\n    - name: MODE\n      valueFrom:\n        configMapKeyRef: {{name: {config}, key: mode}}\n    - name: PASSWORD\n      valueFrom:\n        secretKeyRef: {{name: db, key: password}}\n    - name: MAYBE\n      valueFrom:\n        configMapKeyRef: {{name: absent, key: k, optional: true}}\n    envFrom:\n    - configMapRef: {{name: {config}}}\n      prefix: APP_\n"
        )
    };
    std::fs::write(&manifest, format!("{}---\n{}", pod("envy", "app"), pod("later", "late"))).unwrap();
    ok(&node, &["apply", "-f", manifest.to_str().unwrap()]);
    let logs = |name: &str| {
        eventually(Duration::from_secs(60), &format!("{name}'s output"), || {
            let out = kubectl_with(&node, KUBECTL, &["logs", name]);
            (out.status.success() && !stdout(&out).is_empty()).then(|| stdout(&out))
        })
    };
    assert_eq!(logs("envy"), "MODE=fast PASSWORD=hunter2 COLOR=blue MAYBE=unset\n");
    // The pod shows its references, never the values.
    let shown = ok(&node, &["get", "pod", "envy", "-o", "yaml"]);
    assert!(
        shown.contains("secretKeyRef") && shown.contains("configMapRef") && !shown.contains("hunter2"),
        "{shown}"
    );

    // A ConfigMap that is not there yet: the pod waits, saying why.
    let waiting = eventually(Duration::from_secs(30), "later's CreateContainerConfigError", || {
        let row = ok(&node, &["get", "pod", "later", "--no-headers"]);
        row.contains("CreateContainerConfigError").then_some(row)
    });
    assert!(waiting.contains("0/1"), "{waiting}");
    let pod = json(&ok(&node, &["get", "pod", "later", "-o", "json"]));
    let state = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(state["reason"], "CreateContainerConfigError");
    assert!(state["message"].as_str().unwrap_or("").contains("configmap \"late\" not found"), "{state}");
    // Once it exists, the pod starts with its values.
    ok(&node, &["create", "configmap", "late", "--from-literal=mode=slow", "--from-literal=color=red"]);
    assert_eq!(logs("later"), "MODE=slow PASSWORD=hunter2 COLOR=red MAYBE=unset\n");
    ok(&node, &["delete", "pod", "envy", "later"]);
}

#[test]
fn image_pods_mount_configmaps_and_secrets_and_read_the_downward_api() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubecmvol");
    let (node, _lan) = node_with_registry("kubecmvol", &scratch);
    let game = node.dir.join("game.properties");
    std::fs::write(&game, "lives=3\nlevel=hard\n").unwrap();
    ok(&node, &["create", "configmap", "app", &format!("--from-file={}", game.display())]);
    ok(&node, &["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    let manifest = node.dir.join("vols.yaml");
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: NAME
  labels: {app: vols}
spec:
  volumes:
  - name: cfg
    configMap: {name: CONFIG}
  - name: db
    secret:
      secretName: db
      defaultMode: 0400
      items: [{key: password, path: creds/password}]
  - name: maybe
    configMap: {name: absent, optional: true}
  containers:
  - name: NAME
    image: IMAGE
    command: [sh, -c, 'cat /etc/app/game.properties; echo "name=$MY_POD_NAME ip=$MY_POD_IP node=$MY_NODE app=$MY_APP"; echo "secret=$(cat /etc/db/creds/password) mode=$(busybox stat -c %a /etc/db/creds/password) maybe=[$(ls /etc/maybe)]"; touch /etc/app/x 2>/dev/null && echo writable || echo read-only; sleep 3600']
    env:
    - name: MY_POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: MY_POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: MY_NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: MY_APP
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: "metadata.labels['app']"}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: db, mountPath: /etc/db, readOnly: true}
    - {name: maybe, mountPath: /etc/maybe}
"#;
    let pod = |name: &str, config: &str| {
        pod.replace("NAME", name).replace("CONFIG", config).replace("IMAGE", &image_ref())
    };
    std::fs::write(&manifest, format!("{}---\n{}", pod("vols", "app"), pod("later", "late"))).unwrap();
    ok(&node, &["apply", "-f", manifest.to_str().unwrap()]);
    let logs = |name: &str| {
        eventually(Duration::from_secs(60), &format!("{name}'s output"), || {
            let out = kubectl_with(&node, KUBECTL, &["logs", name]);
            let text = stdout(&out);
            (out.status.success() && (text.contains("read-only\n") || text.contains("writable\n")))
                .then_some(text)
        })
    };
    let field =
        |name: &str, path: &str| ok(&node, &["get", "pod", name, "-o", &format!("jsonpath={{{path}}}")]);
    let (ip, host) = (field("vols", ".status.podIP"), field("vols", ".spec.nodeName"));
    assert!(!ip.is_empty() && !host.is_empty());
    assert_eq!(
        logs("vols"),
        format!(
            "lives=3\nlevel=hard\nname=vols ip={ip} node={host} app=vols\nsecret=hunter2 mode=400 maybe=[]\nread-only\n"
        )
    );
    // The pod shows its volumes and references as written, never values;
    // apply again changes nothing.
    let shown = ok(&node, &["get", "pod", "vols", "-o", "yaml"]);
    assert!(
        shown.contains("secretName: db")
            && shown.contains("fieldPath: status.podIP")
            && !shown.contains("hunter2"),
        "{shown}"
    );
    let again = ok(&node, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(again.contains("pod/vols unchanged"), "{again}");

    // A ConfigMap volume whose ConfigMap is not there yet: the pod waits,
    // saying why, and starts once it exists.
    let waiting = eventually(Duration::from_secs(30), "later's CreateContainerConfigError", || {
        let row = ok(&node, &["get", "pod", "later", "--no-headers"]);
        row.contains("CreateContainerConfigError").then_some(row)
    });
    assert!(waiting.contains("0/1"), "{waiting}");
    let later = json(&ok(&node, &["get", "pod", "later", "-o", "json"]));
    let state = &later["status"]["containerStatuses"][0]["state"]["waiting"];
    assert!(state["message"].as_str().unwrap_or("").contains("configmap \"late\" not found"), "{state}");
    std::fs::write(&game, "lives=9\n").unwrap();
    ok(&node, &["create", "configmap", "late", &format!("--from-file=game.properties={}", game.display())]);
    let later = logs("later");
    assert!(later.starts_with("lives=9\nname=later "), "{later}");

    // Bad input: a volume kind podnet does not mount, a path out of the
    // volume: 422 with the field, nothing made.
    let bad = pod("bad", "app").replace("configMap: {name: absent, optional: true}", "emptyDir: {}");
    std::fs::write(&manifest, bad).unwrap();
    let err = fails(&node, &["apply", "-f", manifest.to_str().unwrap()], "is invalid");
    assert!(
        err.contains("spec.volumes[2].emptyDir") && err.contains("configMap and secret volumes only"),
        "{err}"
    );
    let bad = pod("bad", "app").replace("path: creds/password", "path: ../../etc/passwd");
    std::fs::write(&manifest, bad).unwrap();
    let err = fails(&node, &["apply", "-f", manifest.to_str().unwrap()], "is invalid");
    assert!(err.contains("spec.volumes[1].secret.items[0].path"), "{err}");
    fails(&node, &["get", "pod", "bad"], "NotFound");
    ok(&node, &["delete", "pod", "vols", "later"]);
}

/// A pod's mounted ConfigMap (and Secret) follow their objects while the
/// container runs, swapped whole through the kubelet's `..data` link, with
/// no restart; an object that goes leaves the files as they were.
#[test]
fn running_pods_see_their_configmap_and_secret_volumes_change() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubecmupd");
    let (node, _lan) = node_with_registry("kubecmupd", &scratch);
    let apply = |args: &[&str]| {
        let yaml = ok(&node, &[args, &["--dry-run=client", "-o", "yaml"]].concat());
        let out = kubectl_fed(&node, KUBECTL, &["apply", "-f", "-"], yaml.as_bytes());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    apply(&["create", "configmap", "app", "--from-literal=mode=fast", "--from-literal=color=blue"]);
    apply(&["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    run_with_volumes(&node, "live");
    let read = || {
        let out = kubectl_with(
            &node,
            KUBECTL,
            &[
                "exec",
                "live",
                "--",
                "sh",
                "-c",
                "echo $(cat /etc/app/mode) $(cat /etc/app/color) $(cat /etc/db/password)",
            ],
        );
        stdout(&out).trim().to_string()
    };
    assert_eq!(read(), "fast blue hunter2");
    let listing = ok(&node, &["exec", "live", "--", "ls", "-a", "/etc/app"]);
    assert!(listing.contains("..data\n") && listing.contains("mode\n"), "{listing}");

    apply(&["create", "configmap", "app", "--from-literal=mode=slow", "--from-literal=color=red"]);
    // (podnet's API replaces a Secret by delete and create.)
    ok(&node, &["delete", "secret", "db"]);
    ok(&node, &["create", "secret", "generic", "db", "--from-literal=password=swordfish"]);
    eventually(Duration::from_secs(30), "the new values in the running container", || {
        (read() == "slow red swordfish").then_some(())
    });
    // A key that goes, goes from the volume too; one that comes, comes.
    apply(&["create", "configmap", "app", "--from-literal=mode=slow", "--from-literal=size=9"]);
    eventually(Duration::from_secs(30), "the key set to follow", || {
        let listing = ok(&node, &["exec", "live", "--", "ls", "/etc/app"]);
        (listing == "mode\nsize\n").then_some(())
    });
    let pod = json(&ok(&node, &["get", "pod", "live", "-o", "json"]));
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "no restart: {pod}");

    // The ConfigMap deleted: the running container keeps its last files.
    ok(&node, &["delete", "configmap", "app"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ok(&node, &["exec", "live", "--", "cat", "/etc/app/size"]), "9");
    ok(&node, &["delete", "pod", "live"]);
}

/// A Secret volume is a tmpfs of its own, as the kubelet's: the container
/// sees it mounted as tmpfs, the node's disk never holds the secret's
/// bytes under the pods' directories, and the mount goes with the pod.
#[test]
fn secret_volumes_live_on_tmpfs_and_go_with_their_pod() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubesectmp");
    let (node, _lan) = node_with_registry("kubesectmp", &scratch);
    ok(&node, &["create", "configmap", "app", "--from-literal=mode=fast"]);
    ok(&node, &["create", "secret", "generic", "db", "--from-literal=password=tmpfs-only-7c1d"]);
    run_with_volumes(&node, "secretive");
    assert_eq!(ok(&node, &["exec", "secretive", "--", "cat", "/etc/db/password"]), "tmpfs-only-7c1d");
    // /proc/mounts in the container: device, mount point, type.
    let mounts = ok(&node, &["exec", "secretive", "--", "cat", "/proc/mounts"]);
    let kind = |point: &str| {
        mounts.lines().map(|l| l.split(' ').collect::<Vec<_>>()).find(|f| f.get(1) == Some(&point)).map(|f| {
            let (kind, options) = (f[2].to_string(), f[3].to_string());
            (kind, options)
        })
    };
    let (db, options) = kind("/etc/db").unwrap_or_else(|| panic!("no /etc/db in {mounts}"));
    assert_eq!(db, "tmpfs", "{mounts}");
    assert!(options.contains("ro") && options.contains("size="), "read-only and bounded: {options}");
    assert_ne!(kind("/etc/app").unwrap().0, "tmpfs", "a ConfigMap's volume stays on disk: {mounts}");

    // Nothing under the pods' directories on the data dir's filesystem
    // holds the secret (find -xdev does not enter the tmpfs).
    let pods = node.dir.join("data/pods");
    let on_disk = Command::new("sh")
        .arg("-c")
        .arg(format!("find {} -xdev -type f -print0 | xargs -0 -r grep -l tmpfs-only-7c1d", pods.display()))
        .output()
        .unwrap();
    assert_eq!(stdout(&on_disk), "", "the secret is on disk");
    let mountinfo = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let pods_prefix = format!(" {}/", pods.display());
    assert!(mountinfo().lines().any(|l| l.contains(&pods_prefix) && l.contains(" - tmpfs ")));

    // Deleting the pod takes the tmpfs and its directory.
    ok(&node, &["delete", "pod", "secretive"]);
    let info = mountinfo();
    assert!(!info.lines().any(|l| l.contains(&pods_prefix) && l.contains("volumes")), "{info}");
    let left: Vec<_> =
        std::fs::read_dir(&pods).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Runs pod `name` (the test image, sleeping) with ConfigMap `app` at
/// /etc/app and Secret `db` at /etc/db; returns once it is Ready.
fn run_with_volumes(node: &Node, name: &str) {
    let manifest = node.dir.join(format!("{name}.yaml"));
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  volumes:
  - name: cfg
    configMap: {{name: app}}
  - name: db
    secret: {{secretName: db}}
  containers:
  - name: {name}
    image: {}
    command: [sleep, "3600"]
    volumeMounts:
    - {{name: cfg, mountPath: /etc/app}}
    - {{name: db, mountPath: /etc/db}}
"#,
        image_ref()
    );
    std::fs::write(&manifest, pod).unwrap();
    ok(node, &["apply", "-f", manifest.to_str().unwrap()]);
    ok(node, &["wait", "--for=condition=Ready", &format!("pod/{name}"), "--timeout=60s"]);
}
