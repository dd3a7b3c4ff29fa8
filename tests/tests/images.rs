//! OCI images (issue #14, first slice): pulls from a real registry
//! (Debian's docker-registry) in a lan namespace, plain, with htpasswd auth
//! and with TLS from registries.yaml; a multi-platform index; a tampered
//! blob; imports of archives made by skopeo; and bad input. Images are built
//! here from files on the machine with umoci and pushed with skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;

use podnet_e2e::oci::{
    REGISTRY, Scratch, Security, push, push_with, sh, start_registry, start_secured_registry,
};
use podnet_e2e::{Node, Outside, busybox, require, stderr, stdout};

/// An OCI layout at `dir/oci` with images tagged `amd64` and `arm64`
/// (busybox-static as /bin/busybox plus a file naming the arch, so their
/// layers differ), `tampered` (a layer of its own), and `multi`, an index
/// of the first two.
fn build_layout(scratch: &Scratch) -> String {
    require("umoci", "umoci");
    let layout = scratch.path("oci");
    sh("umoci", &["init", "--layout", &layout]);
    for arch in ["amd64", "arm64", "tampered"] {
        let image = format!("{layout}:{arch}");
        sh("umoci", &["new", "--image", &image]);
        sh("umoci", &["insert", "--image", &image, &busybox(), "/bin/busybox"]);
        let marker = scratch.path(&format!("arch-{arch}"));
        std::fs::write(&marker, format!("{arch}\n")).unwrap();
        sh("umoci", &["insert", "--image", &image, &marker, "/etc/arch"]);
        let real = if arch == "tampered" { "amd64" } else { arch };
        sh(
            "umoci",
            &[
                "config",
                "--image",
                &image,
                "--config.entrypoint",
                "/bin/busybox",
                "--architecture",
                real,
                "--os",
                "linux",
            ],
        );
    }
    // The index: the two image manifests with their platforms.
    let index_path = Path::new(&layout).join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .cloned()
            .unwrap()
    };
    let platform = |tag: &str, arch: &str, variant: Option<&str>| {
        let mut e = entry(tag);
        e.as_object_mut().unwrap().remove("annotations");
        e["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            e["platform"]["variant"] = v.into();
        }
        e
    };
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [platform("amd64", "amd64", None), platform("arm64", "arm64", Some("v8"))],
    });
    let bytes = serde_json::to_vec(&multi).unwrap();
    let digest = sha256_hex(&bytes);
    std::fs::write(Path::new(&layout).join("blobs/sha256").join(&digest), &bytes).unwrap();
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{digest}"),
        "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    layout
}

/// sha256 of bytes, by sha256sum (the tests crate has no hash crate).
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

/// A node (not yet up) with a lan, whose agent reads `registries`.
fn node_with_lan(tag: &str, registries: &str) -> (Node, Outside) {
    let node = Node::prepare(tag, None, &["--registries", registries]);
    let lan = Outside::attach(&node);
    (node, lan)
}

/// `podnet image ls -o json`.
fn images(node: &Node) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&node.ok(&["image", "ls", "-o", "json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The store's blob file names.
fn blobs(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(node.dir.join("data/images/blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The layer digests of `layout:tag` (from its manifest).
fn layers(layout: &str, tag: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(layout).join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let hex = entry["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(layout).join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[test]
fn images_are_pulled_listed_and_removed_from_a_lan_registry() {
    let scratch = Scratch::new("plain");
    let layout = build_layout(&scratch);
    let registries = scratch.path("registries.yaml");
    std::fs::write(
        &registries,
        format!("mirrors:\n  \"{REGISTRY}\":\n    endpoint:\n      - \"http://{REGISTRY}\"\n"),
    )
    .unwrap();
    let (mut node, mut lan) = node_with_lan("img", &registries);
    let storage = start_registry(&mut lan, &scratch);
    push(&lan, &layout, "amd64", "test/box:v1");
    push(&lan, &layout, "multi", "test/multi:v1");
    push(&lan, &layout, "tampered", "test/tampered:v1");
    node.up();

    // A single-platform image, then its entry in `image ls`.
    let out = node.ok(&["image", "pull", &format!("{REGISTRY}/test/box:v1")]);
    assert!(out.starts_with(&format!("pulled {REGISTRY}/test/box:v1 (sha256:")), "{out}");
    let table = node.ok(&["image", "ls"]);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "DIGEST", "SIZE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], [format!("{REGISTRY}/test/box").as_str(), "v1"]);
    // Every layer of the image is in the store, named by its digest.
    let stored = blobs(&node);
    for layer in layers(&layout, "amd64") {
        assert!(stored.contains(&layer.trim_start_matches("sha256:").to_string()), "{layer} not stored");
    }

    // The index resolves to this node's platform; --platform picks another.
    node.ok(&["image", "pull", &format!("{REGISTRY}/test/multi:v1")]);
    let multi = |node: &Node| {
        images(node).into_iter().find(|i| i["reference"] == format!("{REGISTRY}/test/multi:v1")).unwrap()
    };
    let here = runtime_platform();
    assert_eq!(multi(&node)["platform"], here);
    node.ok(&["image", "pull", &format!("{REGISTRY}/test/multi:v1"), "--platform", "linux/arm64"]);
    assert_eq!(multi(&node)["platform"], "linux/arm64/v8");
    for layer in layers(&layout, "arm64") {
        assert!(
            blobs(&node).contains(&layer.trim_start_matches("sha256:").to_string()),
            "arm64 {layer} not stored"
        );
    }
    // By digest: the index's digest pins the same image.
    let digest = multi(&node)["digest"].as_str().unwrap().to_string();
    node.ok(&["image", "pull", &format!("{REGISTRY}/test/multi@{digest}")]);

    // Bad input: each a one-line error naming the fix, nothing stored.
    let before = blobs(&node);
    node.fails(
        &["image", "pull", &format!("{REGISTRY}/test/multi:v1"), "--platform", "linux/arm/v7"],
        "has no variant for linux/arm/v7 (it has linux/amd64, linux/arm64/v8)",
    );
    node.fails(
        &["image", "pull", &format!("{REGISTRY}/test/box:nope")],
        "not found in registry http://192.168.77.2:5000: check the name and tag",
    );
    node.fails(
        &["image", "pull", "192.168.77.2:5001/test/box:v1"],
        "cannot reach registry https://192.168.77.2:5001",
    );
    node.fails(&["image", "pull", "Test/Box"], "must be lowercase");
    node.fails(&["image", "pull", "box", "--platform", "arm64"], "is not OS/ARCH[/VARIANT]");

    // A blob corrupted in the registry's storage: refused, store unchanged.
    let layer = layers(&layout, "tampered").last().unwrap().trim_start_matches("sha256:").to_string();
    let data =
        Path::new(&storage).join(format!("docker/registry/v2/blobs/sha256/{}/{layer}/data", &layer[..2]));
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    node.fails(
        &["image", "pull", &format!("{REGISTRY}/test/tampered:v1")],
        "corrupt or tampered content; nothing was stored",
    );
    assert_eq!(blobs(&node), before, "a refused pull leaves the store as it was");
    assert!(images(&node).iter().all(|i| i["reference"] != format!("{REGISTRY}/test/tampered:v1")));
    assert!(
        std::fs::read_dir(node.dir.join("data/images/tmp")).unwrap().next().is_none(),
        "no temp files left"
    );

    // rm: the name goes, then every blob no image uses.
    let out = node.ok(&["image", "rm", &format!("{REGISTRY}/test/box:v1")]);
    assert!(out.starts_with(&format!("Deleted: {REGISTRY}/test/box:v1")), "{out}");
    node.fails(
        &["image", "rm", &format!("{REGISTRY}/test/box:v1")],
        "no image 192.168.77.2:5000/test/box:v1 in the store",
    );
    // box:v1 is multi's amd64 variant, still held through multi's index.
    assert!(!blobs(&node).is_empty());
    node.ok(&["image", "rm", &format!("{REGISTRY}/test/multi:v1")]);
    // The pull by digest is a name of its own, holding the same blobs.
    assert!(!blobs(&node).is_empty());
    node.ok(&["image", "rm", &format!("{REGISTRY}/test/multi@{digest}")]);
    assert!(blobs(&node).is_empty(), "left: {:?}", blobs(&node));
    assert_eq!(node.ok(&["image", "ls"]).lines().count(), 1, "only the header");

    // The store outlives the agent: pull, restart, still listed.
    node.ok(&["image", "pull", &format!("{REGISTRY}/test/box:v1")]);
    node.stop(libc::SIGTERM);
    // A full disk: the store on a 256 KiB tmpfs, smaller than a layer.
    let store = node.dir.join("data/images");
    sh("mount", &["-t", "tmpfs", "-o", "size=256k", "podnet-test", &store.to_string_lossy()]);
    let mounted = Unmount(store);
    node.up();
    node.fails(
        &["image", "pull", &format!("{REGISTRY}/test/multi:v1")],
        "No space left on device (os error 28): free space on that file system",
    );
    assert!(images(&node).is_empty());
    assert!(std::fs::read_dir(mounted.0.join("tmp")).unwrap().next().is_none(), "no temp files left");
    node.stop(libc::SIGTERM);
    drop(mounted);
    node.up();
    assert_eq!(images(&node).len(), 1);
}

/// Unmounts a test's tmpfs on drop.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The node's platform as podnet names it.
fn runtime_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64/v8",
        other => panic!("no test platform for {other}"),
    }
}

#[test]
fn registry_auth_and_tls_come_from_registries_yaml() {
    require("openssl", "openssl");
    require("htpasswd", "apache2-utils");
    let scratch = Scratch::new("secure");
    let layout = build_layout(&scratch);
    // A CA, and a certificate for the registry's address signed by it.
    let (ca_key, ca, key, csr, cert) = (
        scratch.path("ca.key"),
        scratch.path("ca.crt"),
        scratch.path("reg.key"),
        scratch.path("reg.csr"),
        scratch.path("reg.crt"),
    );
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            "/CN=podnet test CA",
        ],
    );
    // A key and a certificate signed by the CA, with the extension `ext`.
    let issue = |key: &str, csr: &str, cert: &str, subject: &str, ext: &str| {
        sh(
            "openssl",
            &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject],
        );
        let ext_file = format!("{csr}.ext");
        std::fs::write(&ext_file, format!("{ext}\n")).unwrap();
        let args =
            ["x509", "-req", "-in", csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-out", cert];
        sh("openssl", &[&args[..], &["-days", "2", "-extfile", &ext_file]].concat());
    };
    issue(&key, &csr, &cert, "/CN=192.168.77.2", "subjectAltName=IP:192.168.77.2");
    // A client certificate: the registry wants one signed by the same CA.
    let certs = scratch.path("client-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (client_key, client_csr, client_cert) =
        (format!("{certs}/client.key"), scratch.path("client.csr"), format!("{certs}/client.cert"));
    issue(&client_key, &client_csr, &client_cert, "/CN=podnet node", "extendedKeyUsage=clientAuth");
    let htpasswd = scratch.path("htpasswd");
    std::fs::write(&htpasswd, sh("htpasswd", &["-Bbn", "puller", "s3cret"])).unwrap();

    let registries = scratch.path("registries.yaml");
    let config = |auth: &str, tls: &str| {
        format!(
            "mirrors:\n  \"{REGISTRY}\":\n    endpoint: [\"https://{REGISTRY}\"]\nconfigs:\n  \"{REGISTRY}\":\n{auth}{tls}"
        )
    };
    let good_auth = "    auth:\n      username: puller\n      password: s3cret\n";
    let good_tls = format!(
        "    tls:\n      ca_file: {ca}\n      cert_file: {client_cert}\n      key_file: {client_key}\n"
    );
    std::fs::write(&registries, config(good_auth, &good_tls)).unwrap();
    let (mut node, mut lan) = node_with_lan("auth", &registries);
    let security = Security { htpasswd: Some(&htpasswd), tls: Some((&cert, &key, &ca)) };
    start_secured_registry(&mut lan, &scratch, security);
    push_with(&lan, &layout, "amd64", "test/box:v1", Some("puller:s3cret"), Some(&certs));
    let image = format!("{REGISTRY}/test/box:v1");

    // Right password, CA from the file: pulled over TLS with basic auth.
    node.up();
    node.ok(&["image", "pull", &image]);
    node.ok(&["image", "rm", &image]);

    let restart = |node: &mut Node, text: String| {
        node.stop(libc::SIGTERM);
        std::fs::write(&registries, text).unwrap();
        node.up();
    };
    restart(&mut node, config("    auth:\n      username: puller\n      password: wrong\n", &good_tls));
    node.fails(&["image", "pull", &image], "refused the credentials (401 Unauthorized): check auth.username and auth.password of configs.\"192.168.77.2:5000\"");
    restart(&mut node, config("", &good_tls));
    node.fails(
        &["image", "pull", &image],
        "refused anonymous access (401 Unauthorized): add auth.username and auth.password",
    );
    restart(
        &mut node,
        config(
            good_auth,
            &format!("    tls:\n      cert_file: {client_cert}\n      key_file: {client_key}\n"),
        ),
    );
    node.fails(
        &["image", "pull", &image],
        "set configs.\"192.168.77.2:5000\".tls.ca_file in registries.yaml",
    );
    restart(&mut node, config(good_auth, &format!("    tls:\n      ca_file: {ca}\n")));
    node.fails(&["image", "pull", &image], "set configs.\"192.168.77.2:5000\".tls.cert_file and key_file");
    let skip = format!(
        "    tls:\n      insecure_skip_verify: true\n      cert_file: {client_cert}\n      key_file: {client_key}\n"
    );
    restart(&mut node, config(good_auth, &skip));
    node.ok(&["image", "pull", &image]);
    assert_eq!(images(&node).len(), 1);
    assert!(blobs(&node).len() >= 3);
}

#[test]
fn archives_from_skopeo_are_imported_and_hostile_ones_refused() {
    require("skopeo", "skopeo");
    let scratch = Scratch::new("import");
    let layout = build_layout(&scratch);
    let oci = scratch.path("box-oci.tar");
    let docker = scratch.path("box-docker.tar");
    let copy = |from: String, to: String| sh("skopeo", &["--insecure-policy", "copy", &from, &to]);
    copy(format!("oci:{layout}:amd64"), format!("oci-archive:{oci}:example.com/tools/box:v1"));
    copy(format!("oci:{layout}:arm64"), format!("docker-archive:{docker}:saved/box:v2"));
    let node = Node::start("import");

    let out = node.ok(&["image", "import", &oci]);
    assert!(out.starts_with("imported example.com/tools/box:v1 (") && out.contains("linux/amd64"), "{out}");
    let out = node.ok(&["image", "import", &docker]);
    assert!(out.starts_with("imported docker.io/saved/box:v2 (") && out.contains("linux/arm64"), "{out}");
    let names: Vec<String> =
        images(&node).iter().map(|i| i["reference"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["docker.io/saved/box:v2", "example.com/tools/box:v1"]);
    // The docker archive's layers are stored under their diff IDs
    // (uncompressed), the OCI archive's under their gzip digests.
    for layer in layers(&layout, "amd64") {
        assert!(
            blobs(&node).contains(&layer.trim_start_matches("sha256:").to_string()),
            "{layer} not stored"
        );
    }

    // Hostile and broken archives: refused with the reason, nothing stored.
    let before = blobs(&node);
    let evil = scratch.path("evil.tar");
    let py = format!(
        "import tarfile, io\nt = tarfile.open('{evil}', 'w')\nfor name, data in [('../../etc/evil', b'x'), ('index.json', b'{{}}')]:\n    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\nt.close()\n"
    );
    sh("python3", &["-c", &py]);
    node.fails(&["image", "import", &evil], "points outside the archive: refusing a hostile archive");
    // An archive cut short: the last layer's bytes are missing.
    let cut = scratch.path("cut.tar");
    let bytes = std::fs::read(&docker).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    node.fails(&["image", "import", &cut], "cannot import");
    let text = scratch.path("text.tar");
    std::fs::write(&text, "just text").unwrap();
    node.fails(&["image", "import", &text], "cannot import");
    node.fails(&["image", "import", &scratch.path("absent.tar")], "check the path");
    assert_eq!(blobs(&node), before);
    assert_eq!(images(&node).len(), 2);
}

#[test]
fn archives_dropped_into_the_data_dir_are_imported_once_when_the_agent_starts() {
    require("skopeo", "skopeo");
    let scratch = Scratch::new("airgap");
    let layout = build_layout(&scratch);
    let mut node = Node::prepare("airgap", None, &[]);
    let dropped = node.dir.join("data/images");
    std::fs::create_dir_all(&dropped).unwrap();
    let archive = dropped.join("box.tar").to_string_lossy().into_owned();
    sh(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("oci:{layout}:amd64"),
            &format!("oci-archive:{archive}:example.com/tools/box:v1"),
        ],
    );
    std::fs::write(dropped.join("broken.tar"), "just text").unwrap();
    node.up();
    let names = |node: &Node| -> Vec<String> {
        images(node).iter().map(|i| i["reference"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&node), ["example.com/tools/box:v1"]);
    // The bad archive is a warning naming the file; the agent runs.
    let log = node.agent_log();
    assert!(log.contains("skipping image archive") && log.contains("broken.tar"), "{log}");

    // Once per file: removed, it stays removed across a restart.
    node.ok(&["image", "rm", "example.com/tools/box:v1"]);
    node.stop(libc::SIGTERM);
    node.up();
    assert!(names(&node).is_empty());
}

#[test]
fn a_malformed_registries_yaml_stops_node_up_naming_the_field_and_line() {
    let scratch = Scratch::new("badyaml");
    let path = scratch.path("registries.yaml");
    std::fs::write(&path, "mirrors:\n  docker.io:\n    endpoint: \"http://mirror:5000\"\n").unwrap();
    let node_up = |registries: &str| {
        let (data, socket) = (scratch.path("data"), scratch.path("sock"));
        let args = ["node", "up", "--data-dir", &data, "--socket", &socket, "--registries", registries];
        Command::new(podnet_e2e::podnet_bin()).args(args).output().unwrap()
    };
    let out = node_up(&path);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("registries config {path}: mirrors")) && err.contains("line 3"), "{err}");
    assert!(!Path::new(&scratch.path("sock")).exists(), "no agent started");

    let missing = scratch.path("absent.yaml");
    let out = node_up(&missing);
    assert!(
        stderr(&out).contains("cannot read registries config") && !out.status.success(),
        "{}",
        stderr(&out)
    );
}
