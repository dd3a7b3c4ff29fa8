//! The module against a real runtime (root, and runc or crun installed):
//! containers in a network namespace and on a busybox rootfs the test
//! makes, and nothing left once they are deleted.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::*;
use crate::model::{PullPolicy, ResourceList, RunAs};
use crate::sys::netns;

/// The test's own files, namespace and runtime state, removed on drop.
struct Fixture {
    base: PathBuf,
    netns: String,
    runtime: OciRuntime,
    layers: Vec<PathBuf>,
    etc: EtcFiles,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // After a failed assertion: containers killed, rootfs unmounted.
        let ids =
            ["state", "pods"].iter().filter_map(|d| std::fs::read_dir(self.base.join(d)).ok()).flatten();
        for entry in ids.flatten() {
            if let Some(id) = entry.file_name().to_str() {
                let _ = self.runtime.delete(id, &self.pod_dir(id));
            }
        }
        let _ = netns::remove(&self.netns);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl Fixture {
    /// None (with the reason printed) where the test cannot run.
    fn new(name: &str) -> Option<Fixture> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: running containers needs root");
            return None;
        }
        let busybox = ["/usr/bin/busybox", "/bin/busybox"].into_iter().map(Path::new).find(|p| p.exists());
        let path = std::env::var_os("PATH").unwrap_or_default();
        if oci_runtime::which("runc", &path).is_none() && oci_runtime::which("crun", &path).is_none() {
            eprintln!("skipped: no OCI runtime on this machine (apt-get install runc crun)");
            return None;
        }
        let busybox = busybox.expect("busybox-static (scripts/test installs it)");
        let runtime = OciRuntime::detect(None).unwrap();
        eprintln!("{}: {} on {:?} cgroups", name, runtime.describe(), runtime.cgroups());
        let base = std::env::temp_dir().join(format!("podnet-ctr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let runtime = runtime.with_state_root(base.join("state"));
        // Layer 0: busybox and its applets; layer 1, on top: /etc and a file
        // that hides layer 0's.
        let bottom = base.join("layers/0");
        std::fs::create_dir_all(bottom.join("bin")).unwrap();
        std::fs::copy(busybox, bottom.join("bin/busybox")).unwrap();
        for applet in ["sh", "echo", "cat", "hostname", "sleep", "id", "grep", "ls"] {
            std::os::unix::fs::symlink("busybox", bottom.join("bin").join(applet)).unwrap();
        }
        std::fs::write(bottom.join("layer"), "bottom\n").unwrap();
        let top = base.join("layers/1");
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::create_dir_all(top.join("home/app")).unwrap();
        std::fs::write(
            top.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(top.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
        std::fs::write(top.join("layer"), "top\n").unwrap();
        let files = base.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let etc = EtcFiles {
            resolv_conf: files.join("resolv.conf"),
            hosts: files.join("hosts"),
            hostname: files.join("hostname"),
        };
        std::fs::write(&etc.resolv_conf, "nameserver 10.96.0.10\nsearch default.svc.cluster.local\n")
            .unwrap();
        std::fs::write(&etc.hosts, "127.0.0.1\tlocalhost\n10.244.0.9\tweb\n").unwrap();
        std::fs::write(&etc.hostname, "web\n").unwrap();
        let netns = format!("pn-ctest-{name}-{}", std::process::id());
        netns::create(&netns, || Ok(())).unwrap();
        crate::sys::reaper::set_subreaper().unwrap();
        Some(Fixture { base, netns, runtime, layers: vec![bottom, top], etc })
    }

    fn pod_dir(&self, id: &str) -> PathBuf {
        self.base.join("pods").join(id)
    }

    fn log(&self, id: &str) -> (PathBuf, File) {
        let path = self.base.join(format!("{id}.log"));
        (path.clone(), File::create(path).unwrap())
    }

    /// Starts `command` as container `id`.
    fn create(
        &self,
        id: &str,
        command: &[&str],
        config: &RunConfig,
        security: &SecurityContext,
        resources: &Resources,
        log: &File,
    ) -> Result<Container, ContainerError> {
        let image = ImageSpec {
            image: "test".into(),
            pull_policy: PullPolicy::Never,
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            env: Vec::new(),
            env_refs: Vec::new(),
            env_error: None,
            volumes: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            stdin_once: false,
            stdin: Default::default(),
        };
        let netns = netns::path(&self.netns);
        let pod_dir = self.pod_dir(id);
        self.runtime.create(&ContainerSpec {
            id: id.into(),
            pod_dir,
            layers: self.layers.clone(),
            image,
            config: config.clone(),
            env: vec![("POD_NAME".into(), "web".into())],
            hostname: "web".into(),
            netns,
            etc: self.etc.clone(),
            security: *security,
            resources: *resources,
            pids_limit: DEFAULT_PIDS_LIMIT,
            log: log.try_clone().unwrap(),
        })
    }

    /// True when nothing of container `id` is left: no mount, runtime
    /// state, cgroup or directory.
    fn assert_gone(&self, id: &str) {
        let pod_dir = self.pod_dir(id);
        assert!(!rootfs::is_mounted(&pod_dir.join("rootfs")), "{id}: rootfs still mounted");
        assert!(!pod_dir.exists(), "{id}: {} left", pod_dir.display());
        assert!(!self.runtime.state_root().join(id).exists(), "{id}: runtime state left");
        assert_eq!(self.runtime.state(id), None);
        for cgroup in cgroup_dirs(id) {
            assert!(!cgroup.exists(), "{id}: cgroup {} left", cgroup.display());
        }
    }
}

/// Where container `id`'s cgroup is, in each hierarchy that has one.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["", "memory", "pids", "cpu", "unified"]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join("podnet").join(id))
        .collect()
}

#[tokio::test]
async fn a_container_runs_in_the_pods_namespace_with_its_limits_and_exit_code() {
    let Some(fx) = Fixture::new("run") else { return };
    let (log_path, log) = fx.log("c-run");
    let resources = Resources {
        limits: ResourceList { memory: Some(64 << 20), cpu_millis: Some(500) },
        ..Default::default()
    };
    let script = "echo hi; hostname; cat /layer; \
                  echo cap=$(grep CapEff /proc/self/status | cut -f2); \
                  echo seccomp=$(grep Seccomp: /proc/self/status | cut -f2); \
                  echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max); \
                  echo timer_list=$(wc -c < /proc/timer_list); \
                  unshare -U true 2>/dev/null; echo unshare=$?; \
                  echo nofile=$(ulimit -n)/$(ulimit -Hn); \
                  echo sysctl=$(echo 1 2>/dev/null > /proc/sys/kernel/panic && echo written || echo refused); \
                  cat /etc/hosts; echo pod=$POD_NAME uid=$(id -u); exit 3";
    let container = fx
        .create(
            "c-run",
            &["sh", "-c", script],
            &RunConfig::default(),
            &SecurityContext::default(),
            &resources,
            &log,
        )
        .unwrap();
    // Tokio's own children are reaped meanwhile, and do not take the
    // container's exit.
    let other = tokio::process::Command::new("true").status().await.unwrap();
    assert!(other.success());
    assert_eq!(wait_exit(container.pid).await, Some(3));
    let out = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["hi", "web", "top"], "{out}");
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap().1;
    for expected in [
        "cap=00000000a80425fb".to_string(),
        "seccomp=2".into(),
        format!("mem={}", 64u64 << 20),
        "unshare=1".into(),
        format!("nofile=1024/{}", hard.min(bundle::NOFILE_HARD_MAX)),
        "sysctl=refused".into(),
        "10.244.0.9\tweb".into(),
        "pod=web uid=0".into(),
    ] {
        assert!(lines.contains(&expected.as_str()), "{expected} not in:\n{out}");
    }
    // A masked file reads empty (where the kernel has it).
    if Path::new("/proc/timer_list").exists() {
        assert!(lines.contains(&"timer_list=0"), "{out}");
    }
    fx.runtime.delete("c-run", &fx.pod_dir("c-run")).unwrap();
    fx.assert_gone("c-run");
    fx.runtime.delete("c-run", &fx.pod_dir("c-run")).unwrap();
}

#[tokio::test]
async fn a_running_container_is_found_killed_and_deleted_without_a_trace() {
    let Some(fx) = Fixture::new("kill") else { return };
    let (_, log) = fx.log("c-kill");
    let config = RunConfig { user: "app".into(), ..RunConfig::default() };
    let container = fx
        .create(
            "c-kill",
            &["sleep", "1000"],
            &config,
            &SecurityContext::default(),
            &Resources::default(),
            &log,
        )
        .unwrap();
    assert_eq!(fx.runtime.state("c-kill"), Some(container.pid));
    // It is the agent's child, in the pod's network namespace, as the
    // image's user `app`.
    // Read once it has exec'd `sleep`: until then it is runc's init, which
    // still holds capabilities (seen on a loaded machine).
    let comm = format!("/proc/{}/comm", container.pid);
    for _ in 0..1000 {
        if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", container.pid)).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    assert_eq!(field("PPid:"), std::process::id().to_string());
    assert!(field("Uid:").starts_with("1000\t"), "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000");
    let inode =
        |path: &Path| std::fs::metadata(path).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    assert_eq!(
        inode(&PathBuf::from(format!("/proc/{}/ns/net", container.pid))),
        inode(&netns::path(&fx.netns))
    );
    assert!(rootfs::is_mounted(&fx.pod_dir("c-kill").join("rootfs")));
    // Making it again is refused, and leaves the running one alone.
    let again = fx
        .create(
            "c-kill",
            &["true"],
            &RunConfig::default(),
            &SecurityContext::default(),
            &Resources::default(),
            &log,
        )
        .unwrap_err();
    assert_eq!(again.to_string(), "container c-kill exists already: delete it first");
    assert_eq!(fx.runtime.state("c-kill"), Some(container.pid));
    assert!(rootfs::is_mounted(&fx.pod_dir("c-kill").join("rootfs")));

    fx.runtime.kill("c-kill", Signal::SIGKILL).unwrap();
    assert_eq!(wait_exit(container.pid).await, Some(128 + libc::SIGKILL));
    assert_eq!(fx.runtime.state("c-kill"), None);
    fx.runtime.delete("c-kill", &fx.pod_dir("c-kill")).unwrap();
    fx.assert_gone("c-kill");

    // A container deleted while it runs goes too.
    let container = fx
        .create(
            "c-del",
            &["sleep", "1000"],
            &RunConfig::default(),
            &SecurityContext::default(),
            &Resources::default(),
            &log,
        )
        .unwrap();
    fx.runtime.delete("c-del", &fx.pod_dir("c-del")).unwrap();
    assert_eq!(wait_exit(container.pid).await, Some(128 + libc::SIGKILL));
    fx.assert_gone("c-del");
}

#[tokio::test]
async fn a_privileged_container_has_every_capability_and_no_filter() {
    let Some(fx) = Fixture::new("priv") else { return };
    let (log_path, log) = fx.log("c-priv");
    let script = "echo cap=$(grep CapEff /proc/self/status | cut -f2); \
                  echo seccomp=$(grep Seccomp: /proc/self/status | cut -f2); echo timer_list=$(wc -c < /proc/timer_list)";
    let security = SecurityContext { privileged: true, run_as: None };
    let container = fx
        .create(
            "c-priv",
            &["sh", "-c", script],
            &RunConfig::default(),
            &security,
            &Resources::default(),
            &log,
        )
        .unwrap();
    assert_eq!(wait_exit(container.pid).await, Some(0));
    let out = std::fs::read_to_string(&log_path).unwrap();
    // Every capability the node has.
    let all = security::node_bounding();
    assert!(out.contains(&format!("cap={all:016x}\n")), "{out}");
    assert!(out.contains("seccomp=0\n"), "{out}");
    if Path::new("/proc/timer_list").exists() {
        assert!(!out.contains("timer_list=0\n"), "{out}");
    }
    fx.runtime.delete("c-priv", &fx.pod_dir("c-priv")).unwrap();
    fx.assert_gone("c-priv");
}

#[tokio::test]
async fn a_failed_create_says_why_and_leaves_nothing() {
    let Some(fx) = Fixture::new("fail") else { return };
    let (_, log) = fx.log("c-fail");
    let security = SecurityContext { privileged: false, run_as: Some(RunAs { uid: 1000, gid: 1000 }) };
    let limits =
        Resources { limits: ResourceList { memory: Some(32 << 20), cpu_millis: None }, ..Default::default() };
    let err = fx
        .create("c-fail", &["/no/such/program"], &RunConfig::default(), &security, &limits, &log)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c-fail") && err.contains("/no/such/program"), "{err}");
    assert!(err.contains("no such file or directory"), "{err}");
    fx.assert_gone("c-fail");

    // An image user that is not there: refused before the runtime runs.
    let config = RunConfig { user: "postgres".into(), ..RunConfig::default() };
    let err = fx
        .create("c-user", &["true"], &config, &SecurityContext::default(), &Resources::default(), &log)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no user `postgres` in the image's /etc/passwd"), "{err}");
    fx.assert_gone("c-user");

    let err = fx
        .create(
            "c-none",
            &[],
            &RunConfig::default(),
            &SecurityContext::default(),
            &Resources::default(),
            &log,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "the image has no command: give one after --");
    fx.assert_gone("c-none");

    // Deleting what was never made, or half made, is fine.
    fx.runtime.delete("c-never", &fx.pod_dir("c-never")).unwrap();
    std::fs::create_dir_all(fx.pod_dir("c-half").join("upper")).unwrap();
    std::fs::create_dir_all(fx.pod_dir("c-half").join("rootfs")).unwrap();
    fx.runtime.delete("c-half", &fx.pod_dir("c-half")).unwrap();
    fx.assert_gone("c-half");
}

#[tokio::test]
async fn crun_is_refused_exactly_where_it_cannot_run() {
    // The detection rule against what crun really does on this node.
    let path = std::env::var_os("PATH").unwrap_or_default();
    if oci_runtime::which("crun", &path).is_none() || !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root and crun");
        return;
    }
    let chosen = OciRuntime::detect(Some("crun"));
    let Some(fx) = Fixture::new("crun") else { return };
    let crun = oci_runtime::probe(&oci_runtime::which("crun", &path).unwrap()).unwrap();
    let runtime =
        OciRuntime { found: crun, root: fx.base.join("crun-state"), cgroups: fx.runtime.cgroups().clone() };
    let (_, log) = fx.log("c-crun");
    let image = ImageSpec {
        image: "t".into(),
        pull_policy: PullPolicy::Never,
        command: vec!["true".into()],
        args: vec![],
        env: vec![],
        env_refs: vec![],
        env_error: None,
        volumes: Vec::new(),
        mounts: Vec::new(),
        files: Vec::new(),
        stdin_once: false,
        stdin: Default::default(),
    };
    let netns = netns::path(&fx.netns);
    let pod_dir = fx.pod_dir("c-crun");
    let ran = runtime.create(&ContainerSpec {
        id: "c-crun".into(),
        pod_dir: pod_dir.clone(),
        layers: fx.layers.clone(),
        image,
        config: RunConfig::default(),
        env: Vec::new(),
        hostname: "web".into(),
        netns,
        etc: fx.etc.clone(),
        security: SecurityContext::default(),
        resources: Resources::default(),
        pids_limit: DEFAULT_PIDS_LIMIT,
        log,
    });
    match (&chosen, &ran) {
        (Ok(_), Ok(_)) => {}
        (Err(refused), Err(failed)) => {
            assert!(refused.to_string().contains("hybrid"), "{refused}");
            assert!(failed.to_string().contains("hybrid mode not supported"), "{failed}");
        }
        _ => panic!("detection says {chosen:?}, crun did {ran:?}"),
    }
    if let Ok(container) = ran {
        let _ = wait_exit(container.pid).await;
    }
    runtime.delete("c-crun", &pod_dir).unwrap();
    assert!(!pod_dir.exists());
}
