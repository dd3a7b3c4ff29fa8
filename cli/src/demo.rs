//! `podnet demo`: a throwaway node in a network namespace of its own, two
//! web pods and a client, the client fetching a page from a web pod through
//! the switch, then everything removed. It drives the real CLI so what it
//! prints is what a user would type.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use runtime::sys::netns;

use crate::error::{CliError, step};

struct Demo {
    dir: PathBuf,
    node_ns: String,
    socket: PathBuf,
    agent: Option<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(agent.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = agent.wait();
        }
        let _ = netns::remove(&self.node_ns);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Runs `cmd` inside the named namespace `ns`.
fn in_netns(cmd: &mut Command, ns: &Path) -> Result<(), CliError> {
    let file = std::fs::File::open(ns).map_err(step(format!("open {}", ns.display())))?;
    crate::sys::setns_before_exec(cmd, file);
    Ok(())
}

impl Demo {
    fn podnet(&self, args: &[&str]) -> Result<String, CliError> {
        println!("$ podnet {}", args.join(" "));
        let exe = std::env::current_exe()?;
        let out = Command::new(exe).args(args).env("PODNET_SOCKET", &self.socket).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{text}");
        if !out.status.success() {
            return Err(CliError::Message(format!(
                "`podnet {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(text)
    }
}

pub(crate) async fn run() -> Result<ExitCode, CliError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "podnet demo must run as root: it creates network namespaces and TAP devices (try sudo)".into()
        );
    }
    let busybox = which("busybox")
        .ok_or("podnet demo needs busybox for its web pods: apt-get install busybox-static")?;
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("podnet-demo-{pid}"));
    let mut demo =
        Demo { socket: dir.join("podnet.sock"), dir, node_ns: format!("podnet-demo-{pid}"), agent: None };
    std::fs::create_dir_all(demo.dir.join("www"))?;
    std::fs::write(demo.dir.join("www/index.html"), "hello from a podnet pod\n")?;
    netns::create(&demo.node_ns, || Ok(())).map_err(step("cannot create the demo node namespace"))?;

    println!(
        "# a node agent in its own network namespace ({}), logs in {}",
        demo.node_ns,
        demo.dir.join("agent.log").display()
    );
    let log = std::fs::File::create(demo.dir.join("agent.log"))?;
    let mut agent = Command::new(std::env::current_exe()?);
    agent
        .args(["node", "up", "--name", "demo", "--data-dir"])
        .arg(demo.dir.join("data"))
        .env("PODNET_SOCKET", &demo.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    in_netns(&mut agent, &netns::path(&demo.node_ns))?;
    demo.agent = Some(agent.spawn().map_err(step("cannot start the agent"))?);
    let deadline = Instant::now() + Duration::from_secs(10);
    while runtime::api::Client::connect(&demo.socket).await.is_err() {
        if Instant::now() > deadline {
            return Err(CliError::Message(format!(
                "the demo agent did not start; see {}",
                demo.dir.join("agent.log").display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let www = demo.dir.join("www");
    let busybox = busybox.to_string_lossy();
    demo.podnet(&["run", "client", "--", "sleep", "infinity"])?;
    demo.podnet(&[
        "create",
        "deployment",
        "web",
        "--replicas",
        "2",
        "--",
        &busybox,
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        &www.to_string_lossy(),
    ])?;
    let web_ip = wait_for_web_ip(&demo)?;
    demo.podnet(&["get", "pods", "-o", "wide"])?;
    let page =
        demo.podnet(&["exec", "client", "--", &busybox, "wget", "-qO-", &format!("http://{web_ip}:8080/")])?;
    demo.podnet(&["delete", "deployment", "web"])?;
    demo.podnet(&["get", "pods"])?;
    drop(demo);
    println!(
        "# the client fetched {:?} from a web pod across podnet's switch; everything is removed again",
        page.trim()
    );
    Ok(ExitCode::SUCCESS)
}

fn wait_for_web_ip(demo: &Demo) -> Result<String, CliError> {
    let exe = std::env::current_exe()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new(&exe)
            .args(["get", "pods", "-o", "json"])
            .env("PODNET_SOCKET", &demo.socket)
            .output();
        if let Ok(out) = out
            && let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(ip) = list["items"].as_array().into_iter().flatten().find_map(|pod| {
                let ready = pod["status"]["containerStatuses"][0]["ready"].as_bool() == Some(true);
                let web = pod["metadata"]["labels"]["app"] == "web";
                (ready && web).then(|| pod["status"]["podIP"].as_str().map(str::to_string)).flatten()
            })
        {
            return Ok(ip);
        }
        if Instant::now() > deadline {
            return Err("the web pods did not start within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
