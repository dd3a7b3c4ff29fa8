//! A container's input (`stdin: true`, `tty: true`), what `kubectl attach
//! -i` and `kubectl run -it` write to. The input is a FIFO in the pod's
//! directory ([`FIFO`]): an attach opens it for writing, from the agent.
//!
//! - `stdin: true`: the FIFO is the container's stdin, opened read-write
//!   so that it never reads EOF while no client is attached (Kubernetes'
//!   `stdinOnce` is not kept: the input stays open) and survives an agent
//!   restart (the container itself holds both ends).
//! - `tty: true`: a terminal the agent makes; its other end is the
//!   container's stdin, stdout and stderr. One thread copies the
//!   terminal's output to the pod's log pipe (so the log and attached
//!   clients see it) and the FIFO's bytes to the terminal, until the
//!   container's side is gone. An agent restart loses the terminal: the
//!   container keeps running, but its output stops once the terminal's
//!   buffer is full (said in the agent's log).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::model::ContainerStdin;

/// The input FIFO's name in the pod's directory.
pub const FIFO: &str = "stdin";

/// The input FIFO of the pod whose directory is `pod_dir`.
pub fn fifo(pod_dir: &Path) -> PathBuf {
    pod_dir.join(FIFO)
}

/// What `runc run` gets as its stdio for a container with input, and
/// what the agent keeps.
pub struct Stdio {
    /// The container's stdin.
    pub stdin: File,
    /// Its stdout and stderr, when they are the terminal (else the log pipe).
    pub output: Option<(File, File)>,
    /// For a terminal: its agent end, to pump once the container runs.
    pub pump: Option<Pump>,
}

/// A terminal's agent end, its input FIFO and the log pipe.
pub struct Pump {
    master: File,
    input: File,
    log: File,
}

/// Makes the input of a container as `mode` says (None for a closed one).
pub fn make(mode: ContainerStdin, pod_dir: &Path, log: &File) -> std::io::Result<Option<Stdio>> {
    if mode == ContainerStdin::Closed {
        return Ok(None);
    }
    let path = fifo(pod_dir);
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(std::io::Error::from)?;
    // Read-write: opening does not wait for a writer, and reading never
    // ends while the holder lives.
    let input = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
    if mode == ContainerStdin::Open {
        return Ok(Some(Stdio { stdin: input, output: None, pump: None }));
    }
    let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).map_err(std::io::Error::from)?;
    let slave = File::from(pty.slave);
    let output = Some((slave.try_clone()?, slave.try_clone()?));
    let pump = Pump { master: File::from(pty.master), input, log: log.try_clone()? };
    Ok(Some(Stdio { stdin: slave, output, pump: Some(pump) }))
}

impl Pump {
    /// Copies both ways on a thread of its own until the container's side
    /// of the terminal is gone.
    pub fn start(self, id: &str) {
        let id = id.to_string();
        let spawned = std::thread::Builder::new().name(format!("tty-{id}")).spawn(move || self.run());
        if let Err(e) = spawned {
            tracing::warn!(container = %id, "cannot start the terminal's copy: {e}");
        }
    }

    fn run(mut self) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let (master_ready, input_ready) = {
                let mut fds = [
                    PollFd::new(self.master.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.input.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if master_ready {
                // EIO once the container's side is closed: the end.
                match self.master.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if self.log.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            if input_ready
                && let Ok(n) = self.input.read(&mut buf)
                && self.master.write_all(&buf[..n]).is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_carries_the_fifo_in_and_its_output_to_the_log() {
        let dir = std::env::temp_dir().join(format!("podnet-stdin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log_read, log_write) = nix::unistd::pipe().unwrap();
        let (mut log_read, log_write) = (File::from(log_read), File::from(log_write));
        let Stdio { stdin, output, pump } = make(ContainerStdin::Tty, &dir, &log_write).unwrap().unwrap();
        drop(log_write);
        pump.unwrap().start("t");
        // The container's side: its stdin is the terminal.
        let mut container = stdin;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(fifo(&dir)).unwrap();
        fifo.write_all(b"typed\n").unwrap();
        let mut buf = [0u8; 64];
        let n = container.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"typed\n", "the FIFO's bytes reach the terminal");
        container.write_all(b"shown").unwrap();
        let mut seen = Vec::new();
        // The terminal echoes what was typed, then what the container wrote.
        while !seen.ends_with(b"shown") {
            let n = log_read.read(&mut buf).unwrap();
            assert!(n > 0, "the log pipe ended early: {seen:?}");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).starts_with("typed"), "{seen:?}");
        // The container gone (every end of its terminal), the copy ends and
        // lets go of the log pipe.
        drop((container, output));
        let mut rest = Vec::new();
        log_read.read_to_end(&mut rest).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_closed_input_makes_nothing_and_an_open_one_a_fifo() {
        let dir = std::env::temp_dir().join(format!("podnet-stdin-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = File::open("/dev/null").unwrap();
        assert!(make(ContainerStdin::Closed, &dir, &log).unwrap().is_none());
        assert!(!fifo(&dir).exists());
        let Stdio { mut stdin, output, pump } = make(ContainerStdin::Open, &dir, &log).unwrap().unwrap();
        assert!(output.is_none() && pump.is_none());
        std::fs::OpenOptions::new().write(true).open(fifo(&dir)).unwrap().write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        stdin.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
