//! Network namespaces made as a container runtime makes them, for the
//! CNI tests (`cni.rs`, `kubernetes_mode.rs`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::{Node, busybox, stderr, stdout};

/// A container's network namespace, as a runtime makes one (`ip netns add`),
/// for CNI tests; removed with what runs in it (and its resolv.conf) on drop.
pub struct Sandbox {
    /// The namespace's name.
    pub name: String,
    servers: Vec<std::process::Child>,
}

impl Sandbox {
    /// A namespace named after the node and `tag`, its loopback up.
    pub fn new(node: &Node, tag: &str) -> Sandbox {
        let name = format!("{}-{tag}", node.name);
        let status = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
        assert!(status.success(), "ip netns add {name}");
        let sandbox = Sandbox { name, servers: Vec::new() };
        sandbox.run(&["ip", "link", "set", "lo", "up"]);
        sandbox
    }

    /// Its path, as CNI_NETNS names it.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside; its output.
    pub fn run(&self, command: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(command).output().unwrap()
    }

    /// The resolv.conf a runtime writes from the ADD result's `dns`
    /// (`ip netns exec` puts /etc/netns/NAME/resolv.conf in place).
    pub fn resolv_conf(&self, result: &Value) {
        let dns = &result["dns"];
        let search: Vec<&str> =
            dns["search"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let text = format!(
            "nameserver {}\nsearch {}\noptions ndots:5\n",
            dns["nameservers"][0].as_str().unwrap(),
            search.join(" ")
        );
        let dir = Path::new("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), text).unwrap();
    }

    /// `wget -O -` of `url` from inside (5 s at most): the body, or None.
    pub fn fetch(&self, url: &str) -> Option<String> {
        let out = self.run(&["timeout", "5", &busybox(), "wget", "-q", "-O-", url]);
        out.status.success().then(|| stdout(&out).trim().to_string())
    }

    /// Serves `body` over HTTP on port 80 inside, until drop.
    pub fn serve(&mut self, dir: &Path, body: &str) {
        let www = dir.join(format!("www-{}", self.name));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), body).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, &busybox(), "httpd", "-f", "-p", "80", "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
    }

    /// `nslookup NAME` from inside, through the resolv.conf's server.
    pub fn lookup(&self, name: &str) -> String {
        let out = self.run(&[&busybox(), "nslookup", name]);
        stdout(&out) + &stderr(&out)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}
