//! discovery.k8s.io/v1 EndpointSlices (issue #15): what kube-proxy, CoreDNS
//! and client libraries read of a Service's endpoints, listed, got, selected
//! by `kubernetes.io/service-name` and watched with real kubectl and the
//! Python client. Needs root, kubectl and python3-kubernetes.

use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::{Node, eventually, require, stdout};

const BY_SERVICE: &str = "kubernetes.io/service-name=web";

/// A child process stopped when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The addresses of the Service's slice, sorted.
fn addresses(node: &Node) -> Vec<String> {
    let list = json(&ok(node, &["get", "endpointslices", "-l", BY_SERVICE, "-o", "json"]));
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one slice per Service: {list}");
    let mut out: Vec<String> = items[0]["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[test]
fn kubectl_and_the_python_client_read_and_watch_a_services_endpointslice() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubeslice", None);
    let resources = ok(&node, &["api-resources", "--api-group=discovery.k8s.io"]);
    assert!(resources.contains("endpointslices") && resources.contains("discovery.k8s.io/v1"), "{resources}");

    node.named_web("web", 1, 8080, &[]);
    node.ok(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    let one = eventually(Duration::from_secs(30), "the slice to hold the ready pod", || {
        let a = addresses(&node);
        (a.len() == 1).then_some(a)
    });

    // kubectl's columns: NAME ADDRESSTYPE PORTS ENDPOINTS AGE.
    let table = ok(&node, &["get", "endpointslices"]);
    let row = table.lines().find(|l| l.starts_with("web-")).unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["IPv4", "8080", one[0].as_str()], "{table}");
    let name = cells[0].to_string();
    let got = json(&ok(&node, &["get", "endpointslice", &name, "-o", "json"]));
    assert_eq!(got["ports"][0]["port"], 8080, "{got}");
    assert_eq!(got["endpoints"][0]["targetRef"]["kind"], "Pod", "{got}");
    assert_eq!(got["metadata"]["labels"]["kubernetes.io/service-name"], "web", "{got}");

    // A watch from now on sees the second pod join.
    let out = node.dir.join("slices.out");
    let _watch = Killed(
        kubectl_command(
            &node,
            KUBECTL,
            &["get", "endpointslices", "-w", "--output-watch-events", "-l", BY_SERVICE, "-o", "wide"],
        )
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("kubectl get -w"),
    );
    // Its first line (the list) before the change, so the change is an
    // event, not already in the list.
    eventually(Duration::from_secs(30), "the watch to list the slice", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines().any(|l| l.starts_with("ADDED") && l.contains(&name)).then_some(())
    });
    ok(&node, &["scale", "deployment", "web", "--replicas=2"]);
    let two = eventually(Duration::from_secs(30), "a second ready pod in the slice", || {
        let a = addresses(&node);
        (a.len() == 2).then_some(a)
    });
    let seen = eventually(Duration::from_secs(30), "the watch to show both addresses", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("MODIFIED") && two.iter().all(|a| l.contains(a.as_str())))
            .then_some(text)
    });
    assert!(seen.contains(&name), "{seen}");

    // The Python client's DiscoveryV1Api, as a controller written in Python
    // reads endpoints.
    let python = "/usr/bin/python3";
    let have = Command::new(python).args(["-c", "import kubernetes"]).output();
    assert!(
        have.is_ok_and(|o| o.status.success()),
        "the Python kubernetes client is missing: apt-get install python3-kubernetes (scripts/test does this)"
    );
    let script = format!(
        "import sys\nfrom kubernetes import client, config\nconfig.load_kube_config(config_file=sys.argv[1])\n\
         s = client.DiscoveryV1Api().list_namespaced_endpoint_slice('default', label_selector='{BY_SERVICE}').items[0]\n\
         print(s.address_type, s.ports[0].port, ' '.join(sorted(e.addresses[0] for e in s.endpoints if e.conditions.ready)))\n"
    );
    let py = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .args(["timeout", "60", python, "-c", &script])
        .arg(kubeconfig(&node))
        .env("HOME", &node.dir)
        .output()
        .expect("run python3");
    assert!(py.status.success(), "{}{}", stdout(&py), String::from_utf8_lossy(&py.stderr));
    assert_eq!(stdout(&py).trim(), format!("IPv4 8080 {}", two.join(" ")));

    // The Service goes, and its slice with it.
    node.ok(&["delete", "service", "web"]);
    eventually(Duration::from_secs(30), "the watch to show the slice deleted", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("DELETED"))
            .then_some(())
    });
    assert!(!ok(&node, &["get", "endpointslices"]).contains("web-"));
}
