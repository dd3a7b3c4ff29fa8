//! Images for the end-to-end tests, built from files on the machine:
//! busybox-static in an OCI layout made with umoci, pushed with skopeo to a
//! real registry (Debian's docker-registry) in a lan namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Outside, busybox, eventually, require, stderr, stdout};

/// The registry's address in the lan namespace ([`Outside`]'s host).
pub const REGISTRY: &str = "192.168.77.2:5000";

/// Runs a command on the host, asserting success; its stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {} failed: {}", args.join(" "), stderr(&out));
    stdout(&out)
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory named for `tag` and this process.
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("podnet-oci-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside it, as text.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The applets the app image links to busybox.
const APPLETS: &[&str] = &[
    "sh", "httpd", "cat", "echo", "env", "hostname", "id", "ls", "sleep", "wget", "touch", "ps", "kill",
    "timeout", "nslookup",
];

/// Adds image `tag` to the OCI layout `layout` (made if missing): a
/// busybox root with a web page saying `page`, users root and app (1000),
/// `FOO=from-image`, working dir /www and `httpd -f -p 8080` as its CMD.
pub fn build_app_image(scratch: &Scratch, layout: &str, tag: &str, page: &str) {
    require("umoci", "umoci");
    if !Path::new(layout).join("index.json").exists() {
        sh("umoci", &["init", "--layout", layout]);
    }
    let root = scratch.0.join(format!("root-{tag}"));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["bin", "www", "etc", "tmp", "home/app"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), format!("{page}\n")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    let image = format!("{layout}:{tag}");
    sh("umoci", &["new", "--image", &image]);
    sh("umoci", &["insert", "--image", &image, &root.to_string_lossy(), "/"]);
    sh(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.env",
            "FOO=from-image",
            "--config.env",
            "PATH=/bin",
            "--config.workingdir",
            "/www",
            "--config.cmd",
            "/bin/httpd",
            "--config.cmd",
            "-f",
            "--config.cmd",
            "-p",
            "--config.cmd",
            "8080",
            "--architecture",
            host_arch(),
            "--os",
            "linux",
        ],
    );
}

/// This machine's architecture, as OCI names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "arm" => "arm",
        _ => "amd64",
    }
}

/// How a test registry is secured.
#[derive(Default, Clone, Copy)]
pub struct Security<'a> {
    /// An htpasswd file: basic auth.
    pub htpasswd: Option<&'a str>,
    /// Certificate, key, and the CA of its clients' certificates: TLS.
    pub tls: Option<(&'a str, &'a str, &'a str)>,
}

/// A docker-registry in the lan namespace, plain HTTP; its data directory.
pub fn start_registry(lan: &mut Outside, scratch: &Scratch) -> String {
    start_secured_registry(lan, scratch, Security::default())
}

/// A docker-registry in the lan namespace, with basic auth and TLS as
/// `security` says; its data directory.
pub fn start_secured_registry(lan: &mut Outside, scratch: &Scratch, security: Security<'_>) -> String {
    require("docker-registry", "docker-registry");
    let storage = scratch.path("registry-data");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\nhttp:\n  addr: {REGISTRY}\n  secret: podnet-test\n"
    );
    if let Some((cert, key, client_ca)) = security.tls {
        config += &format!(
            "  tls:\n    certificate: {cert}\n    key: {key}\n    clientcas:\n      - {client_ca}\n"
        );
    }
    if let Some(file) = security.htpasswd {
        config += &format!("auth:\n  htpasswd:\n    realm: podnet-test\n    path: {file}\n");
    }
    let path = scratch.path("registry.yml");
    std::fs::write(&path, config).unwrap();
    lan.spawn(&["docker-registry", "serve", &path], Path::new(&scratch.path("registry.log")));
    eventually(Duration::from_secs(15), "the registry to listen", || {
        let out = lan.run(&["ss", "-Hltn", "sport = :5000"]);
        (!stdout(&out).trim().is_empty()).then_some(())
    });
    storage
}

/// Pushes `layout:tag` to the lan registry as `repo` (plain HTTP).
pub fn push(lan: &Outside, layout: &str, tag: &str, repo: &str) {
    push_with(lan, layout, tag, repo, None, None);
}

/// Pushes `layout:tag` as `repo` with skopeo's `--dest-creds` and
/// `--dest-cert-dir` when given.
pub fn push_with(
    lan: &Outside,
    layout: &str,
    tag: &str,
    repo: &str,
    creds: Option<&str>,
    cert_dir: Option<&str>,
) {
    require("skopeo", "skopeo");
    let source = format!("oci:{layout}:{tag}");
    let dest = format!("docker://{REGISTRY}/{repo}");
    let mut args = vec!["skopeo", "--insecure-policy", "copy", "--all", "--dest-tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--dest-creds", creds]);
    }
    if let Some(dir) = cert_dir {
        args.extend(["--dest-cert-dir", dir]);
    }
    args.extend([source.as_str(), dest.as_str()]);
    let out = lan.run(&args);
    assert!(out.status.success(), "skopeo copy {source} {dest} failed: {}", stderr(&out));
}

/// A registries.yaml in `scratch` sending the lan registry's name to it
/// over plain HTTP; its path.
pub fn plain_registries(scratch: &Scratch) -> String {
    let path = scratch.path("registries.yaml");
    std::fs::write(
        &path,
        format!("mirrors:\n  \"{REGISTRY}\":\n    endpoint:\n      - \"http://{REGISTRY}\"\n"),
    )
    .unwrap();
    path
}
