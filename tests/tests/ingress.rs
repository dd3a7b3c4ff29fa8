//! Ingress end to end: real curl and openssl from a lan namespace to the
//! node's address, through podnet's proxy on 80/443, to real pods.

use std::path::PathBuf;
use std::time::Duration;

use podnet_e2e::kubectl::{self, KUBECTL};
use podnet_e2e::{Cluster, Node, Outside, eventually, require, stderr, stdout};

/// A backend that answers every path with its pod's name, the path, and the
/// headers a proxy sets; it reads and counts a request body.
const ECHO: &str = r#"
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        h = self.headers
        text = "pod=%s path=%s host=%s xff=%s real=%s proto=%s fhost=%s body=%d\n" % (
            os.environ["POD_NAME"], self.path, h.get("Host"), h.get("X-Forwarded-For"),
            h.get("X-Real-IP"), h.get("X-Forwarded-Proto"), h.get("X-Forwarded-Host"), len(body))
        out = text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a):
        pass
# A backlog for load (h2load), not socketserver's 5 (a full one drops SYNs).
http.server.ThreadingHTTPServer.request_queue_size = 256
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

/// A backend that switches protocols when asked `Upgrade: echo`, then
/// echoes bytes back (the shape of a WebSocket handshake, without framing).
const UPGRADE: &str = r#"
import socket, sys, threading
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(4096)
        if not d:
            return
        data += d
    if b"upgrade: echo" in data.lower():
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        rest = data.split(b"\r\n\r\n", 1)[1]
        if rest:
            c.sendall(rest)
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
    else:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nno\n")
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A WebSocket echo server (Python's `websockets`): each message back as `echo:MESSAGE`.
const WEBSOCKET: &str = r#"
import asyncio, sys, websockets
async def echo(ws, path=None):
    async for message in ws:
        await ws.send("echo:" + message)
async def main():
    async with websockets.serve(echo, "0.0.0.0", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
"#;

/// A WebSocket client: connects to the node with the URI's Host, sends three
/// messages and prints the answers.
const WEBSOCKET_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], host=sys.argv[2], port=80, open_timeout=5) as ws:
        for i in range(3):
            await ws.send("m%d" % i)
            print(await asyncio.wait_for(ws.recv(), 5))
asyncio.run(main())
"#;

/// A deployment of echo backends on 8080 and a Service `name:80` for it.
fn echo_service(node: &Node, name: &str, replicas: u32) {
    backend(node, name, replicas, "echo.py", ECHO);
}

/// A deployment running the Python `program` on 8080, and a Service `name:80`.
fn backend(node: &Node, name: &str, replicas: u32, file: &str, program: &str) {
    let script = node.dir.join(file);
    std::fs::write(&script, program).unwrap();
    let replicas = replicas.to_string();
    node.ok(&[
        "create",
        "deployment",
        name,
        "--replicas",
        &replicas,
        "--readiness",
        "tcp:8080",
        "--",
        "/usr/bin/python3",
        &script.to_string_lossy(),
        "8080",
    ]);
    node.ok(&["expose", "deployment", name, "--port", "80", "--target-port", "8080"]);
}

/// Waits until `get ingress NAME` shows the node's address.
fn wait_served(node: &Node, name: &str) {
    eventually(Duration::from_secs(15), "the ingress to be served", || {
        node.ok(&["get", "ingress", name]).contains("192.168.77.1").then_some(())
    });
}

/// curl from the lan: status code, then body.
fn curl(lan: &Outside, args: &[&str]) -> (String, String) {
    let mut command = vec!["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code} %{http_version}"];
    command.extend_from_slice(args);
    let out = lan.run(&command);
    let text = stdout(&out);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    assert!(!status.is_empty(), "curl {args:?}: {}", stderr(&out));
    (status.to_string(), body.to_string())
}

fn field<'a>(body: &'a str, key: &str) -> &'a str {
    body.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap_or("")
}

#[test]
fn host_and_path_rules_route_to_services_with_404_and_503() {
    require("curl", "curl");
    let node = Node::start("ing");
    let lan = Outside::attach(&node);
    echo_service(&node, "api", 2);
    echo_service(&node, "web", 1);
    node.ok(&["create", "deployment", "idle", "--replicas", "0", "--", "sleep", "1000"]);
    node.ok(&["expose", "deployment", "idle", "--port", "80"]);
    node.ok(&[
        "create",
        "ingress",
        "shop",
        "--class",
        "podnet",
        "--rule",
        "shop.example/api*=api:80",
        "--rule",
        "shop.example/*=web:80",
        "--rule",
        "shop.example/exact=api:80",
        "--rule",
        "*.example.com/*=web:80",
        "--rule",
        "idle.example/*=idle:80",
    ]);
    // Another class's Ingress is not podnet's to serve.
    node.ok(&["create", "ingress", "other", "--class", "nginx", "--rule", "nginx.example/*=api:80"]);
    node.wait_endpoints("api", 2);
    node.wait_endpoints("web", 1);
    wait_served(&node, "shop");
    let table = node.ok(&["get", "ingress"]);
    assert!(table.starts_with("NAME    CLASS    HOSTS"), "{table}");
    assert!(
        table.contains("shop.example,*.example.com,idle.example") && table.contains("   80   "),
        "{table}"
    );

    let url = |path: &str| format!("http://{}{path}", lan.node_ip);
    let get = |host: &str, path: &str| curl(&lan, &["-H", &format!("Host: {host}"), &url(path)]);

    // Prefix, segment-wise: /api and /api/... go to api, /apix does not.
    for (path, service) in
        [("/api", "api"), ("/api/items?q=1", "api"), ("/apix", "web"), ("/", "web"), ("/exact", "api")]
    {
        let (status, body) = get("shop.example", path);
        assert_eq!(status, "200 1.1", "{path}: {body}");
        assert!(field(&body, "pod").starts_with(&format!("{service}-")), "{path} went to {body}");
        assert_eq!(field(&body, "path"), path, "{body}");
    }
    // The headers a backend sees: the Host as sent, the client, the scheme.
    let (_, body) = get("Shop.Example:80", "/api");
    assert_eq!(field(&body, "host"), "Shop.Example:80", "{body}");
    assert_eq!(field(&body, "xff"), lan.ip, "{body}");
    assert_eq!(field(&body, "real"), lan.ip, "{body}");
    assert_eq!(field(&body, "proto"), "http", "{body}");
    assert_eq!(field(&body, "fhost"), "Shop.Example:80", "{body}");
    // A spoofed X-Forwarded-For is replaced, not passed on.
    let (_, body) = curl(&lan, &["-H", "Host: shop.example", "-H", "X-Forwarded-For: 1.2.3.4", &url("/api")]);
    assert_eq!(field(&body, "xff"), lan.ip, "{body}");

    // A wildcard matches one label only.
    assert_eq!(get("blog.example.com", "/").0, "200 1.1");
    assert_eq!(get("a.blog.example.com", "/").0, "404 1.1");
    // No rule: 404; the other class's host is not served; no endpoint: 503.
    let (status, body) = get("nowhere.example", "/");
    assert_eq!(status, "404 1.1", "{body}");
    assert_eq!(get("nginx.example", "/").0, "404 1.1");
    let (status, body) = get("idle.example", "/");
    assert_eq!(status, "503 1.1", "{body}");
    assert!(body.contains("default/idle:80 has no ready endpoint"), "{body}");

    // Balanced per request, over one kept-alive connection.
    let mut args: Vec<String> =
        vec!["-sS".into(), "--max-time".into(), "10".into(), "-H".into(), "Host: shop.example".into()];
    for _ in 0..10 {
        args.push(url("/api"));
    }
    let mut command = vec!["curl", "-v"];
    command.extend(args.iter().map(String::as_str));
    let out = lan.run(&command);
    let text = stdout(&out);
    let pods: std::collections::BTreeSet<&str> = text.lines().map(|l| field(l, "pod")).collect();
    assert_eq!(pods.len(), 2, "both api pods answer: {pods:?}");
    assert!(stderr(&out).contains("Re-using existing connection"), "keep-alive: {}", stderr(&out));

    // A request body streams through to the backend.
    let big = node.dir.join("big");
    std::fs::write(&big, vec![b'x'; 3 * 1024 * 1024]).unwrap();
    let (status, body) = curl(
        &lan,
        &["-H", "Host: shop.example", "--data-binary", &format!("@{}", big.display()), &url("/api")],
    );
    assert_eq!(status, "200 1.1");
    assert_eq!(field(&body, "body"), "3145728", "{body}");

    // The counters: per rule and status class.
    let stats = node.ok(&["node", "stats"]);
    assert!(
        stats.contains("default/shop shop.example/api*") || stats.contains("default/shop shop.example/api"),
        "{stats}"
    );
    assert!(stats.contains("no_rule="), "{stats}");

    // Default backends, as ingress-nginx: an Ingress's serves the paths no
    // rule matches on the hosts it named; only one without rules catches
    // every other host.
    node.ok(&[
        "create",
        "ingress",
        "blog",
        "--rule",
        "blog.example/posts*=api:80",
        "--default-backend",
        "web:80",
    ]);
    eventually(Duration::from_secs(10), "blog's default backend", || {
        let (status, body) = get("blog.example", "/about");
        (status == "200 1.1" && field(&body, "pod").starts_with("web-")).then_some(())
    });
    assert!(field(&get("blog.example", "/posts/1").1, "pod").starts_with("api-"));
    assert_eq!(get("nowhere.example", "/").0, "404 1.1", "blog's default is not a catch-all");
    node.ok(&["create", "ingress", "catchall", "--default-backend", "api:80"]);
    eventually(Duration::from_secs(10), "the catch-all", || {
        let (status, body) = get("nowhere.example", "/x");
        (status == "200 1.1" && field(&body, "pod").starts_with("api-")).then_some(())
    });
    assert!(field(&get("blog.example", "/about").1, "pod").starts_with("web-"), "a host keeps its own");

    // Ready endpoints that refuse the connection: 502, counted as upstream errors.
    node.ok(&["expose", "deployment", "web", "--name", "closed", "--port", "80", "--target-port", "9999"]);
    node.ok(&["create", "ingress", "broken", "--rule", "closed.example/*=closed:80"]);
    node.wait_endpoints("closed", 1);
    eventually(Duration::from_secs(10), "a 502 from a refusing endpoint", || {
        let (status, body) = get("closed.example", "/");
        (status == "502 1.1").then_some(body)
    });
    let stats = node.ok(&["node", "stats"]);
    let upstream = stats
        .split_whitespace()
        .find_map(|w| w.strip_prefix("upstream_errors="))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(upstream.is_some_and(|n| n > 0), "{stats}");
    assert!(stats.contains("default/broken closed.example/"), "{stats}");

    // Deleting the last Ingress closes the ports.
    for name in ["shop", "other", "blog", "catchall", "broken"] {
        node.ok(&["delete", "ingress", name]);
    }
    eventually(Duration::from_secs(10), "port 80 to close", || {
        let out = lan.run(&["curl", "-sS", "--max-time", "2", &url("/")]);
        (!out.status.success()).then_some(())
    });
}

/// A self-signed certificate and key for `host`, made with openssl.
fn certificate(dir: &std::path::Path, host: &str) -> (PathBuf, PathBuf) {
    certificate_as(dir, host, host)
}

/// [`certificate`] with the subject `/CN=host/O=org`, in files named for `org`.
fn certificate_as(dir: &std::path::Path, host: &str, org: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{org}.crt")), dir.join(format!("{org}.key")));
    let out = std::process::Command::new(require("openssl", "openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", &format!("/CN={host}/O={org}"), "-addext", &format!("subjectAltName=DNS:{host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    (crt, key)
}

#[test]
fn https_with_sni_http2_and_a_redirect_from_http() {
    require("curl", "curl");
    let node = Node::start("ingtls");
    let lan = Outside::attach(&node);
    echo_service(&node, "web", 1);
    let (shop_crt, shop_key) = certificate(&node.dir, "shop.example");
    let (blog_crt, blog_key) = certificate(&node.dir, "blog.example");
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    // A key that is not the certificate's is refused, and nothing is stored.
    let err = node.fails(
        &["create", "secret", "tls", "bad", "--cert", &path(&shop_crt), "--key", &path(&blog_key)],
        "tls.key is not the key of tls.crt's first certificate",
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    assert!(!node.ok(&["get", "secrets"]).contains("bad"));
    node.ok(&["create", "secret", "tls", "shop-tls", "--cert", &path(&shop_crt), "--key", &path(&shop_key)]);
    node.ok(&["create", "secret", "tls", "blog-tls", "--cert", &path(&blog_crt), "--key", &path(&blog_key)]);
    let secrets = node.ok(&["get", "secrets"]);
    assert!(secrets.contains("shop-tls   kubernetes.io/tls   2"), "{secrets}");
    let yaml = node.ok(&["get", "secret", "shop-tls", "-o", "yaml"]);
    assert!(!yaml.contains("LS0t") && !yaml.contains("PRIVATE"), "no key bytes: {yaml}");
    node.ok(&[
        "create",
        "ingress",
        "shop",
        "--rule",
        "shop.example/*=web:80,tls=shop-tls",
        "--rule",
        "blog.example/*=web:80,tls=blog-tls",
        "--rule",
        "plain.example/*=web:80",
    ]);
    node.ok(&[
        "create",
        "ingress",
        "noredirect",
        "--annotation",
        "nginx.ingress.kubernetes.io/ssl-redirect=false",
        "--rule",
        "open.example/*=web:80,tls=shop-tls",
    ]);
    node.wait_endpoints("web", 1);
    wait_served(&node, "shop");
    assert!(node.ok(&["get", "ingress", "shop"]).contains("80, 443"));

    // SNI picks each host's certificate: curl verifies it against that CA.
    for (host, crt) in [("shop.example", &shop_crt), ("blog.example", &blog_crt)] {
        let resolve = format!("{host}:443:{}", lan.node_ip);
        let (status, body) =
            curl(&lan, &["--resolve", &resolve, "--cacert", &path(crt), &format!("https://{host}/x")]);
        assert_eq!(status, "200 2", "{host}: {body}");
        assert_eq!(field(&body, "proto"), "https", "{body}");
        assert_eq!(field(&body, "host"), host, "{body}");
        // HTTP/1.1 over TLS too.
        let (status, _) = curl(
            &lan,
            &["--http1.1", "--resolve", &resolve, "--cacert", &path(crt), &format!("https://{host}/x")],
        );
        assert_eq!(status, "200 1.1");
    }
    // HTTP/2 asked for explicitly, and TLS 1.2 still served.
    let resolve = format!("shop.example:443:{}", lan.node_ip);
    let (status, _) = curl(
        &lan,
        &[
            "--http2",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--resolve",
            &resolve,
            "--cacert",
            &path(&shop_crt),
            "https://shop.example/",
        ],
    );
    assert_eq!(status, "200 2");
    // openssl names the certificate SNI chose.
    let out = lan.run(&[
        "sh",
        "-c",
        &format!(
            "echo | timeout 5 openssl s_client -connect {}:443 -servername blog.example 2>&1",
            lan.node_ip
        ),
    ]);
    assert!(stdout(&out).contains("CN = blog.example"), "{}", stdout(&out));
    // A host with no certificate of its own gets the first one.
    let out = lan.run(&[
        "sh",
        "-c",
        &format!(
            "echo | timeout 5 openssl s_client -connect {}:443 -servername unknown.example 2>&1",
            lan.node_ip
        ),
    ]);
    assert!(stdout(&out).contains("CN = shop.example"), "{}", stdout(&out));

    // Plain HTTP to a TLS host: 308 to HTTPS; not for a plain host, nor with the annotation.
    let (status, _) = curl(
        &lan,
        &["-H", "Host: shop.example", "-o", "/dev/null", "-D", "-", &format!("http://{}/a?b=c", lan.node_ip)],
    );
    assert_eq!(status, "308 1.1");
    let out = lan.run(&[
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-H",
        "Host: shop.example",
        &format!("http://{}/a?b=c", lan.node_ip),
    ]);
    assert!(stdout(&out).to_lowercase().contains("location: https://shop.example/a?b=c"), "{}", stdout(&out));
    let plain =
        |host: &str| curl(&lan, &["-H", &format!("Host: {host}"), &format!("http://{}/", lan.node_ip)]).0;
    assert_eq!(plain("plain.example"), "200 1.1");
    assert_eq!(plain("open.example"), "200 1.1");

    // A failed handshake is counted, as the ingress's and as the listener's.
    let before = tls_failures(&node);
    let bb = podnet_e2e::busybox();
    lan.run(&["sh", "-c", &format!("echo garbage | timeout 5 {bb} nc {} 443", lan.node_ip)]);
    eventually(Duration::from_secs(5), "the failed handshake to be counted", || {
        (tls_failures(&node) > before).then_some(())
    });
}

/// `tls_handshakes_failed` in `podnet node stats`.
fn tls_failures(node: &Node) -> u64 {
    let stats = node.ok(&["node", "stats"]);
    stats
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tls_handshakes_failed="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tls_handshakes_failed in {stats}"))
}

/// socat holding a TCP port in a node's namespace, stopped when dropped.
struct Squatter(std::process::Child);

impl Squatter {
    /// Listens on `port` in `node`'s namespace; returns once it does.
    fn hold(node: &Node, port: u16) -> Squatter {
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.netns))
            .args([
                require("socat", "socat").to_string_lossy().as_ref(),
                &format!("TCP-LISTEN:{port},reuseaddr"),
                "EXEC:cat",
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let squatter = Squatter(child);
        eventually(Duration::from_secs(5), "the squatter to listen", || {
            let out = node.on_node(&["ss", "-Hltn", &format!("sport = :{port}")]);
            (!stdout(&out).trim().is_empty()).then_some(())
        });
        squatter
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_port_another_socket_holds_is_the_ingress_status() {
    let node = Node::start_with("ingport", Some("[ingress]\nhttp_port = 8088\nhttps_port = 0\n"));
    let squatter = Squatter::hold(&node, 8088);
    node.ok(&["create", "ingress", "shop", "--default-backend", "web:80"]);
    eventually(Duration::from_secs(5), "the problem to show", || {
        let held = format!("<pending: port 8088/TCP in use on the node ({})>", node.name);
        node.ok(&["get", "ingress"]).contains(&held).then_some(())
    });
    drop(squatter);
    let lan = Outside::attach(&node);
    eventually(Duration::from_secs(10), "the port to be served", || {
        node.ok(&["get", "ingress"]).contains("192.168.77.1").then_some(())
    });
    // web does not exist: 503.
    let (status, _) = curl(&lan, &[&format!("http://{}:8088/", lan.node_ip)]);
    assert_eq!(status, "503 1.1");
}

#[test]
fn bad_ingresses_and_secrets_are_refused_with_the_fix() {
    let node = Node::start("ingbad");
    node.fails(&["create", "ingress", "a", "--rule", "*/x=web:80"], "wildcard of one leading label");
    node.fails(&["create", "ingress", "a", "--rule", "a.*.example/x=web:80"], "must be a lowercase DNS name");
    node.fails(&["create", "ingress", "a", "--rule", "shop.example=web:80"], "the path must start with `/`");
    node.fails(&["create", "ingress", "a", "--rule", "shop.example/x=web"], "is not SERVICE:PORT");
    node.fails(&["create", "ingress", "a"], "no rules and no default backend");
    let junk = node.dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let j = junk.to_string_lossy();
    node.fails(
        &["create", "secret", "tls", "t", "--cert", &j, "--key", &j],
        "tls.crt holds no PEM certificate",
    );
    node.fails(&["create", "secret", "tls", "t", "--cert", "/nonexistent", "--key", &j], "cannot read it");
    assert!(
        node.ok(&["get", "ingress", "-A"]).is_empty() || !node.ok(&["get", "ingress", "-A"]).contains(" a ")
    );
    // apply -f takes both kinds.
    let manifest = node.dir.join("ing.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: Opaque\nstringData: {a: b}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: m}\nspec:\n  rules:\n  - host: m.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n",
    )
    .unwrap();
    let out = node.ok(&["apply", "-f", &manifest.to_string_lossy()]);
    assert!(out.contains("secret/s created") && out.contains("ingress.networking.k8s.io/m created"), "{out}");
    let out = node.ok(&["apply", "-f", &manifest.to_string_lossy()]);
    assert!(
        out.contains("secret/s unchanged") && out.contains("ingress.networking.k8s.io/m unchanged"),
        "{out}"
    );
    assert!(node.ok(&["get", "ingressclass"]).contains("podnet.io/ingress"));
}

#[test]
fn upgrades_h2c_and_the_limits_on_slow_big_or_malformed_requests() {
    require("curl", "curl");
    let config = "[ingress]\nrequest_timeout_ms = 500\nidle_timeout_s = 2\nmax_header_bytes = 8192\nmax_connections_per_client = 8\n";
    let node = Node::start_with("inglim", Some(config));
    let lan = Outside::attach(&node);
    echo_service(&node, "web", 1);
    backend(&node, "ws", 1, "upgrade.py", UPGRADE);
    backend(&node, "socket", 1, "websocket.py", WEBSOCKET);
    node.ok(&[
        "create",
        "ingress",
        "edge",
        "--rule",
        "web.example/*=web:80",
        "--rule",
        "ws.example/*=ws:80",
        "--rule",
        "socket.example/*=socket:80",
    ]);
    node.wait_endpoints("web", 1);
    node.wait_endpoints("ws", 1);
    node.wait_endpoints("socket", 1);
    wait_served(&node, "edge");
    let url = format!("http://{}/", lan.node_ip);

    // h2c: HTTP/2 with prior knowledge on the plain port.
    let (status, body) = curl(&lan, &["--http2-prior-knowledge", "-H", "Host: web.example", &url]);
    assert_eq!(status, "200 2", "{body}");

    // An upgrade: 101 from the backend, then bytes both ways.
    let addr = format!("{}:80", lan.node_ip);
    let echoed = lan.within(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "head: {}", String::from_utf8_lossy(&head));
            head.push(byte[0]);
        }
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        (String::from_utf8_lossy(&head).into_owned(), back)
    });
    assert!(echoed.0.starts_with("HTTP/1.1 101"), "{}", echoed.0);
    assert_eq!(&echoed.1, b"ping");
    // A real WebSocket client and server through the proxy.
    let client = node.dir.join("ws_client.py");
    std::fs::write(&client, WEBSOCKET_CLIENT).unwrap();
    let out =
        lan.run(&["/usr/bin/python3", &client.to_string_lossy(), "ws://socket.example/chat", lan.node_ip]);
    assert_eq!(stdout(&out), "echo:m0\necho:m1\necho:m2\n", "{}", stderr(&out));

    // A head past max_header_bytes: 431.
    let big = format!("X-Big: {}", "a".repeat(9000));
    assert_eq!(curl(&lan, &["-H", "Host: web.example", "-H", &big, &url]).0, "431 1.1");

    // Not HTTP: 400, closed.
    let malformed = lan.within(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    });
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed}");

    // A head trickled a byte every 50 ms (slowloris): 408 once the request
    // timeout is past, and closed, while another client is answered meanwhile.
    let slow = lan.within(|| std::net::TcpStream::connect(&addr).unwrap());
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        use std::io::Write;
        let head = format!("GET / HTTP/1.1\r\nHost: web.example\r\nX-Slow: {}", "a".repeat(100));
        for byte in head.bytes() {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let (status, body) = curl(&lan, &["-H", "Host: web.example", &url]);
        assert_eq!(status, "200 1.1", "others are served during a slow head: {body}");
    }
    let mut answer = String::new();
    let closed = std::io::Read::read_to_string(&mut &slow, &mut answer).is_ok();
    let elapsed = started.elapsed();
    trickle.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer:?}");
    assert!(closed && elapsed < Duration::from_secs(4), "closed after the 408: {elapsed:?}");

    // A kept-alive connection with no next request is closed, quietly.
    let idle = lan.within(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.example\r\n\r\n").unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    assert!(idle.starts_with("HTTP/1.1 200") && !idle.contains("408"), "{idle}");

    // h2load: HTTP/2 with prior knowledge, many streams on a few connections.
    let h2load = require("h2load", "nghttp2-client");
    let out = lan.run(&[
        h2load.to_str().unwrap(),
        "-n",
        "2000",
        "-c",
        "2",
        "-m",
        "5",
        &format!("--connect-to={}:80", lan.node_ip),
        "http://web.example/h2load",
    ]);
    let report = stdout(&out);
    assert!(report.contains("2000 succeeded, 0 failed, 0 errored"), "{report}{}", stderr(&out));
    assert!(report.contains("status codes: 2000 2xx"), "{report}");

    // HTTP/2 over TLS on one connection for 2 s, four times the request
    // timeout: its streams are not request heads to time.
    let (crt, key) = certificate(&node.dir, "tls.example");
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    node.ok(&["create", "secret", "tls", "tls-cert", "--cert", &path(&crt), "--key", &path(&key)]);
    node.ok(&["create", "ingress", "secure", "--rule", "tls.example/*=web:80,tls=tls-cert"]);
    eventually(Duration::from_secs(10), "HTTPS to be served", || {
        let resolve = format!("tls.example:443:{}", lan.node_ip);
        let (status, _) = curl(&lan, &["-k", "--resolve", &resolve, "https://tls.example/"]);
        (status == "200 2").then_some(())
    });
    let out = lan.run(&[
        h2load.to_str().unwrap(),
        "-n",
        "200",
        "-c",
        "1",
        "--rps",
        "100",
        &format!("--connect-to={}:443", lan.node_ip),
        "https://tls.example/long",
    ]);
    let report = stdout(&out);
    assert!(report.contains("Application protocol: h2"), "{report}");
    assert!(report.contains("200 succeeded, 0 failed, 0 errored"), "{report}{}", stderr(&out));

    // One client past max_connections_per_client: the next connection is
    // closed unanswered; once it lets go, it is served again.
    let refused = lan.within(|| {
        use std::io::{Read, Write};
        let held: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
        let mut extra = std::net::TcpStream::connect(&addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: web.example\r\n\r\n");
        let mut answer = Vec::new();
        let _ = extra.read_to_end(&mut answer);
        drop(held);
        answer
    });
    assert!(refused.is_empty(), "{}", String::from_utf8_lossy(&refused));
    eventually(Duration::from_secs(5), "the client to be served again", || {
        (curl(&lan, &["-H", "Host: web.example", &url]).0 == "200 1.1").then_some(())
    });

    let stats = node.ok(&["node", "stats"]);
    let line = stats.lines().find(|l| l.starts_with("ingress ")).unwrap_or_else(|| panic!("{stats}"));
    assert!(line.contains("request_timeout=") && line.contains("malformed_message="), "{line}");
    assert!(line.contains("per_client_limit="), "{line}");
}

#[test]
fn kubectl_applies_lists_and_deletes_ingresses_and_secrets() {
    require(KUBECTL, "kubectl");
    let node = kubectl::node_with_address("ingkube", None);
    let (crt, key) = certificate(&node.dir, "shop.example");
    let secret = secret_manifest("shop-tls", &crt, &key);
    let ingress = |path: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: shop}}\nspec:\n  ingressClassName: podnet\n  tls: [{{hosts: [shop.example], secretName: shop-tls}}]\n  rules:\n  - host: shop.example\n    http:\n      paths:\n      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
        )
    };
    let file = node.dir.join("shop.yaml");
    std::fs::write(&file, format!("{secret}---\n{}", ingress("/api"))).unwrap();
    let f = file.to_string_lossy().into_owned();
    let out = kubectl::ok(&node, &["apply", "-f", &f]);
    assert!(
        out.contains("secret/shop-tls created") && out.contains("ingress.networking.k8s.io/shop created"),
        "{out}"
    );

    let table = kubectl::ok(&node, &["get", "ingress"]);
    assert!(table.starts_with("NAME   CLASS    HOSTS          ADDRESS"), "{table}");
    assert!(table.contains("shop.example") && table.contains("80, 443"), "{table}");
    eventually(Duration::from_secs(10), "kubectl to show the ADDRESS", || {
        kubectl::ok(&node, &["get", "ingress"]).contains(kubectl::NODE_IP).then_some(())
    });
    let json = kubectl::json(&kubectl::ok(&node, &["get", "ingress", "shop", "-o", "json"]));
    let ips = &json["status"]["loadBalancer"]["ingress"];
    assert!(ips.as_array().is_some_and(|a| a.iter().any(|i| i["ip"] == kubectl::NODE_IP)), "{json}");
    let classes = kubectl::ok(&node, &["get", "ingressclass"]);
    assert!(classes.contains("podnet") && classes.contains("podnet.io/ingress"), "{classes}");
    let secrets = kubectl::ok(&node, &["get", "secrets"]);
    assert!(secrets.contains("shop-tls") && secrets.contains("kubernetes.io/tls"), "{secrets}");
    let yaml = kubectl::ok(&node, &["get", "secret", "shop-tls", "-o", "yaml"]);
    assert!(!yaml.contains("BEGIN") && !yaml.contains("LS0t"), "no key bytes: {yaml}");

    // A changed Ingress applied again is patched.
    let file2 = node.dir.join("ing.yaml");
    std::fs::write(&file2, ingress("/v2")).unwrap();
    let out = kubectl::ok(&node, &["apply", "-f", &file2.to_string_lossy()]);
    assert!(out.contains("ingress.networking.k8s.io/shop configured"), "{out}");
    let json = kubectl::json(&node.ok(&["get", "ingress", "shop", "-o", "json"]));
    assert_eq!(json["spec"]["rules"][0]["http"]["paths"][0]["path"], "/v2", "{json}");

    let out = kubectl::ok(&node, &["delete", "ingress", "shop"]);
    assert!(out.contains("deleted"), "{out}");
    kubectl::ok(&node, &["delete", "secret", "shop-tls"]);
    assert!(!node.ok(&["get", "ingress"]).contains("shop"));
    assert!(!node.ok(&["get", "secrets"]).contains("shop-tls"));
}

#[test]
fn in_a_cluster_every_nodes_ingress_reaches_pods_on_any_node() {
    require("curl", "curl");
    let cluster = Cluster::start("ingc", 1);
    let server = cluster.server();
    let member = cluster.nodes[1].name.clone();
    let script = server.dir.join("echo.py");
    std::fs::write(&script, ECHO).unwrap();
    let script = script.to_string_lossy().into_owned();
    server.ok(&[
        "run",
        "far",
        "--node",
        &member,
        "--labels",
        "app=far",
        "--readiness",
        "tcp:8080",
        "--",
        "/usr/bin/python3",
        &script,
        "8080",
    ]);
    server.ok(&["expose", "pod", "far", "--port", "80", "--target-port", "8080"]);
    // The member's port 80 is held: it reports so, and the status lists
    // only the server, saying why (the member's heartbeat carries it).
    let squatter = Squatter::hold(&cluster.nodes[1], 80);
    server.ok(&["create", "ingress", "edge", "--rule", "far.example/*=far:80"]);
    eventually(Duration::from_secs(15), "describe to name the member's held port", || {
        let described = server.ok(&["describe", "ingress", "edge"]);
        (described
            .contains(&format!("Address:          {} (not served: port 80/TCP in use", Cluster::address(0)))
            && described.contains(&format!("({member})")))
        .then_some(())
    });
    assert!(!server.ok(&["get", "ingress", "edge"]).contains(&Cluster::address(1)));
    drop(squatter);
    // The status lists every Ready node's address.
    eventually(Duration::from_secs(15), "get ingress to list both nodes", || {
        let table = server.ok(&["get", "ingress", "edge"]);
        (table.contains(&Cluster::address(0)) && table.contains(&Cluster::address(1))).then_some(())
    });
    for i in 0..2 {
        let url = format!("http://{}/hello", Cluster::address(i));
        eventually(Duration::from_secs(30), &format!("node {i}'s ingress to reach the pod"), || {
            let text = cluster.curl_host("far.example", &url).unwrap_or_default();
            (field(&text, "pod") == "far" && field(&text, "path") == "/hello").then_some(())
        });
    }
}

/// A TLS Secret's manifest for `podnet apply -f`.
fn secret_manifest(name: &str, crt: &PathBuf, key: &PathBuf) -> String {
    let indent = |p: &PathBuf| {
        std::fs::read_to_string(p).unwrap().lines().map(|l| format!("    {l}\n")).collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

#[test]
fn a_rotated_certificate_is_served_to_new_connections_and_open_ones_carry_on() {
    let node = Node::start("ingrot");
    let lan = Outside::attach(&node);
    echo_service(&node, "web", 1);
    let (old_crt, old_key) = certificate_as(&node.dir, "shop.example", "first");
    let (new_crt, new_key) = certificate_as(&node.dir, "shop.example", "second");
    let file = node.dir.join("secret.yaml");
    std::fs::write(&file, secret_manifest("shop-tls", &old_crt, &old_key)).unwrap();
    node.ok(&["apply", "-f", &file.to_string_lossy()]);
    node.ok(&["create", "ingress", "shop", "--rule", "shop.example/*=web:80,tls=shop-tls"]);
    node.wait_endpoints("web", 1);
    wait_served(&node, "shop");
    let subject = || {
        let out = lan.run(&[
            "sh",
            "-c",
            &format!(
                "echo | timeout 5 openssl s_client -connect {}:443 -servername shop.example 2>&1",
                lan.node_ip
            ),
        ]);
        stdout(&out)
    };
    assert!(subject().contains("O = first"));

    // One connection kept open across the change.
    let mut open = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lan.netns))
        .args(["openssl", "s_client", "-quiet", "-connect", &format!("{}:443", lan.node_ip)])
        .args(["-servername", "shop.example"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = open.stdin.take().unwrap();
    let output = open.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ask = |path: &str| {
        use std::io::Write;
        write!(input, "GET {path} HTTP/1.1\r\nHost: shop.example\r\n\r\n").unwrap();
        input.flush().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("pod=") => return field(&line, "path").to_string(),
                Ok(_) => {}
                Err(e) => panic!("no answer to {path} on the open connection: {e}"),
            }
        }
    };
    assert_eq!(ask("/before"), "/before");

    // Under load: h2load's HTTP/2-over-TLS connections stay open across the
    // change (2000 requests at 400/s), and a curl loop makes a new
    // connection per request; none may fail.
    let h2load = require("h2load", "nghttp2-client");
    let load = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lan.netns))
        .arg(&h2load)
        .args(["-n", "2000", "-c", "4", "-m", "1", "--rps", "100"])
        .arg(format!("--connect-to={}:443", lan.node_ip))
        .arg("https://shop.example/load")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (stop, netns, ip) = (stop.clone(), lan.netns.clone(), lan.node_ip.to_string());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{netns}"))
                    .args(["curl", "-sSk", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
                    .args(["--resolve", &format!("shop.example:443:{ip}"), "https://shop.example/loop"])
                    .output()
                    .unwrap();
                match stdout(&out).trim() {
                    "200" => ok += 1,
                    other => failed.push(format!("{other} {}", stderr(&out))),
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    std::fs::write(&file, secret_manifest("shop-tls", &new_crt, &new_key)).unwrap();
    assert!(node.ok(&["apply", "-f", &file.to_string_lossy()]).contains("secret/shop-tls configured"));
    eventually(Duration::from_secs(10), "new handshakes to get the new certificate", || {
        subject().contains("O = second").then_some(())
    });
    assert_eq!(ask("/after"), "/after", "the open connection carries on");
    let _ = open.kill();
    let _ = open.wait();
    let out = load.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = looping.join().unwrap();
    let report = stdout(&out);
    assert!(report.contains("2000 succeeded, 0 failed, 0 errored"), "{report}{}", stderr(&out));
    assert!(failed.is_empty() && ok > 0, "new connections during the change: {ok} ok, failed: {failed:?}");
}
