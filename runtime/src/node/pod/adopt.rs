//! Pods a killed agent left running. Pod commands are not tied to the
//! agent's life (no parent-death signal, a session of their own) and their
//! TAPs are persistent, so after a `kill -9` or a crash the next agent finds
//! each pod's namespace with its command still running and takes it back
//! instead of restarting it. It is no longer the command's parent, so it
//! learns of the exit through a pidfd, without the exit code.

use std::fs;
use std::io;

use crate::sys::{self, netns};

/// The command a pod was started with: the oldest session leader inside its
/// namespace whose environment names the pod's `uid` (`POD_UID`), so a
/// process of another pod that reused the name is never taken for it.
pub fn main_process(netns_name: &str, uid: &str) -> Option<i32> {
    let marker = format!("POD_UID={uid}");
    netns::pids_inside(netns_name)
        .into_iter()
        .filter_map(|pid| {
            let stat = Stat::read(pid)?;
            (stat.session == pid).then_some((stat.start_ticks, pid))
        })
        .filter(|(_, pid)| environ(*pid).is_some_and(|env| env.contains(&marker)))
        .min()
        .map(|(_, pid)| pid)
}

/// When `pid` started, in seconds since the Unix epoch.
pub fn started_at(pid: i32) -> Option<u64> {
    let ticks = Stat::read(pid)?.start_ticks;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(boot + ticks / u64::try_from(hz).ok().filter(|hz| *hz > 0)?)
}

/// Waits until `pid` exits. An error means it could not be watched (it may
/// already be gone).
pub async fn wait_exit(pid: i32) -> io::Result<()> {
    // A pidfd becomes readable when its process exits.
    let watched = sys::process::watch(sys::process::pidfd_open(pid)?, tokio::io::Interest::READABLE)?;
    let _ = watched.readable().await?;
    Ok(())
}

/// The fields of /proc/PID/stat this module needs.
struct Stat {
    session: i32,
    start_ticks: u64,
}

impl Stat {
    fn read(pid: i32) -> Option<Stat> {
        Stat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses a stat line; the command name (field 2) may hold spaces and
    /// parentheses, so fields are counted from its last `)`.
    fn parse(line: &str) -> Option<Stat> {
        let rest = &line[line.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state): session is field 6, starttime 22.
        Some(Stat { session: fields.get(3)?.parse().ok()?, start_ticks: fields.get(19)?.parse().ok()? })
    }
}

/// The environment `pid` was started with.
fn environ(pid: i32) -> Option<Vec<String>> {
    let bytes = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(bytes.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line =
            "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = Stat::parse(line).unwrap();
        assert_eq!((stat.session, stat.start_ticks), (4242, 987_654));
        assert!(Stat::parse("garbage").is_none());
    }

    #[test]
    fn this_process_has_a_start_time_and_its_exit_can_be_awaited() {
        let started = started_at(std::process::id() as i32).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(started <= now && now - started < 3600, "{started} vs {now}");

        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let pid = child.id() as i32;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let waited = tokio::time::timeout(std::time::Duration::from_secs(5), wait_exit(pid)).await;
            assert!(matches!(waited, Ok(Ok(()))), "{waited:?}");
        });
        child.wait().unwrap();
    }
}
