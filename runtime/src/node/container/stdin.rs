//! A container's input (`stdin: true`, `tty: true`), what `kubectl attach
//! -i` and `kubectl run -it` write to. The input is a FIFO in the pod's
//! directory ([`FIFO`]): an attach opens it for writing, from the agent.
//!
//! - `stdin: true`: the FIFO is the container's stdin, opened read-write
//!   so that it never reads EOF while no client is attached and survives
//!   an agent restart (the container itself holds both ends).
//! - `stdinOnce: true` (with `stdin`): the container's stdin is a pipe a
//!   thread of the agent fills from the FIFO, opened read-only: once the
//!   first attach that wrote to it has gone (Linux then reports a hangup,
//!   never before a writer came), the thread closes the pipe and the
//!   container reads EOF, as the kubelet closes it. An agent restart
//!   closes it too.
//! - `tty: true`: a terminal the agent makes; its other end is the
//!   container's stdin, stdout and stderr. One thread copies the
//!   terminal's output to the pod's log pipe (so the log and attached
//!   clients see it), the FIFO's bytes to the terminal, and the sizes an
//!   attach writes to a second FIFO ([`RESIZE_FIFO`], 4 bytes each:
//!   columns and rows) to the terminal, until the container's side is
//!   gone; with `stdinOnce`, the first attach's leaving hangs the
//!   terminal up (the kubelet's runtime closes it). An agent restart loses
//!   the terminal: the container keeps running, but its output stops once
//!   the terminal's buffer is full (said in the agent's log).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::model::ContainerStdin;

/// The input FIFO's name in the pod's directory.
pub const FIFO: &str = "stdin";
/// The terminal's resize FIFO's name in the pod's directory.
pub const RESIZE_FIFO: &str = "resize";

/// The input FIFO of the pod whose directory is `pod_dir`.
pub fn fifo(pod_dir: &Path) -> PathBuf {
    pod_dir.join(FIFO)
}

/// The resize FIFO beside the input FIFO `fifo` (a terminal's only).
pub fn resize_fifo(fifo: &Path) -> PathBuf {
    fifo.with_file_name(RESIZE_FIFO)
}

/// A resize message for the resize FIFO: columns, then rows (one write of
/// 4 bytes, under PIPE_BUF: never split or interleaved).
pub fn resize_message(cols: u16, rows: u16) -> [u8; 4] {
    let (c, r) = (cols.to_le_bytes(), rows.to_le_bytes());
    [c[0], c[1], r[0], r[1]]
}

/// What `runc run` gets as its stdio for a container with input, and
/// what the agent keeps.
pub struct Stdio {
    /// The container's stdin.
    pub stdin: File,
    /// Its stdout and stderr, when they are the terminal (else the log pipe).
    pub output: Option<(File, File)>,
    /// The agent's copy (a terminal, or a stdin that closes), to start
    /// once the container runs.
    pub pump: Option<Pump>,
}

/// The agent's side of a container's input: the FIFO, where its bytes
/// go, and for a terminal its output's way to the log and its sizes.
pub struct Pump {
    input: File,
    /// The terminal's master, or the container's stdin pipe.
    sink: File,
    /// For a terminal: the log pipe, and the resize FIFO.
    terminal: Option<(File, File)>,
    /// Ends at the first attach's leaving (`stdinOnce`).
    once: bool,
}

fn make_fifo(path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(std::io::Error::from)
}

/// Makes the input of a container as `mode` and `once` say (None for a
/// closed one).
pub fn make(mode: ContainerStdin, once: bool, pod_dir: &Path, log: &File) -> std::io::Result<Option<Stdio>> {
    if mode == ContainerStdin::Closed {
        return Ok(None);
    }
    let path = fifo(pod_dir);
    make_fifo(&path)?;
    // Read-write: opening does not wait for a writer, and reading never
    // ends while the holder lives. Read-only (non-blocking, so opening
    // does not wait) for `once`: it hangs up when the writers leave.
    let input = match once {
        false => std::fs::OpenOptions::new().read(true).write(true).open(&path)?,
        true => std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path)?,
    };
    if mode == ContainerStdin::Open {
        if !once {
            return Ok(Some(Stdio { stdin: input, output: None, pump: None }));
        }
        let (read, write) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        let pump = Pump { input, sink: File::from(write), terminal: None, once };
        return Ok(Some(Stdio { stdin: File::from(read), output: None, pump: Some(pump) }));
    }
    let resize = resize_fifo(&path);
    make_fifo(&resize)?;
    let resize =
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&resize)?;
    let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).map_err(std::io::Error::from)?;
    let slave = File::from(pty.slave);
    let output = Some((slave.try_clone()?, slave.try_clone()?));
    let pump = Pump { input, sink: File::from(pty.master), terminal: Some((log.try_clone()?, resize)), once };
    Ok(Some(Stdio { stdin: slave, output, pump: Some(pump) }))
}

/// Sets the terminal `master`'s size.
fn set_size(master: &File, cols: u16, rows: u16) {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives
    // the call; the fd is open while `master` is.
    #[allow(unsafe_code)]
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws)
    };
}

impl Pump {
    /// Copies on a thread of its own until the container's side is gone
    /// (or, with `once`, the first attach has left).
    pub fn start(self, id: &str) {
        let id = id.to_string();
        let spawned = std::thread::Builder::new().name(format!("tty-{id}")).spawn(move || self.run());
        if let Err(e) = spawned {
            tracing::warn!(container = %id, "cannot start the input's copy: {e}");
        }
    }

    fn run(mut self) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let (master_ready, input_ready, resize_ready) = {
                let mut fds = vec![PollFd::new(self.input.as_fd(), PollFlags::POLLIN)];
                match &self.terminal {
                    Some((_, resize)) => {
                        fds.push(PollFd::new(self.sink.as_fd(), PollFlags::POLLIN));
                        fds.push(PollFd::new(resize.as_fd(), PollFlags::POLLIN));
                    }
                    // The stdin pipe reports an error once the container
                    // (its reader) is gone: the end.
                    None => fds.push(PollFd::new(self.sink.as_fd(), PollFlags::empty())),
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
                let ready = |fd: Option<&PollFd>| fd.and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
                if self.terminal.is_none() && ready(fds.get(1)) {
                    return;
                }
                (ready(fds.get(1)), ready(fds.first()), ready(fds.get(2)))
            };
            if master_ready && let Some((log, _)) = &mut self.terminal {
                // EIO once the container's side is closed: the end.
                match self.sink.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if log.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            if resize_ready && let Some((_, resize)) = &mut self.terminal {
                // Whole messages only (each written at once); the last wins.
                let mut sizes = [0u8; 64];
                if let Ok(n) = resize.read(&mut sizes)
                    && n >= 4
                {
                    let last = &sizes[(n / 4 - 1) * 4..n / 4 * 4];
                    set_size(
                        &self.sink,
                        u16::from_le_bytes([last[0], last[1]]),
                        u16::from_le_bytes([last[2], last[3]]),
                    );
                }
            }
            if input_ready {
                match self.input.read(&mut buf) {
                    // Every writer left (only a read-only FIFO sees it).
                    Ok(0) if self.once => return,
                    Ok(n) => {
                        if self.sink.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
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
        let Stdio { stdin, output, pump } =
            make(ContainerStdin::Tty, false, &dir, &log_write).unwrap().unwrap();
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
    fn stdin_once_closes_when_the_first_writer_leaves_and_a_terminal_takes_sizes() {
        let dir = std::env::temp_dir().join(format!("podnet-stdin-once-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = File::open("/dev/null").unwrap();
        let Stdio { mut stdin, pump, .. } = make(ContainerStdin::Open, true, &dir, &log).unwrap().unwrap();
        pump.unwrap().start("once");
        // No writer yet: the container waits (no EOF before the first attach).
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut writer = std::fs::OpenOptions::new().write(true).open(fifo(&dir)).unwrap();
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        let mut all = String::new();
        stdin.read_to_string(&mut all).unwrap();
        assert_eq!(all, "hello\n", "the bytes, then EOF once the writer left");
        assert!(
            std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo(&dir)).is_err(),
            "no reader any more"
        );

        let (log_read, log_write) = nix::unistd::pipe().unwrap();
        let Stdio { stdin: slave, output, pump } =
            make(ContainerStdin::Tty, false, &dir, &File::from(log_write)).unwrap().unwrap();
        pump.unwrap().start("sized");
        let mut resize = std::fs::OpenOptions::new().write(true).open(resize_fifo(&fifo(&dir))).unwrap();
        resize.write_all(&resize_message(77, 33)).unwrap();
        let size = || {
            let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
            use std::os::fd::AsRawFd;
            // SAFETY: TIOCGWINSZ writes one winsize to the pointer.
            #[allow(unsafe_code)]
            unsafe {
                libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws)
            };
            (ws.ws_col, ws.ws_row)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() != (77, 33) {
            assert!(std::time::Instant::now() < deadline, "the terminal kept {:?}", size());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop((slave, output, log_read));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_closed_input_makes_nothing_and_an_open_one_a_fifo() {
        let dir = std::env::temp_dir().join(format!("podnet-stdin-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = File::open("/dev/null").unwrap();
        assert!(make(ContainerStdin::Closed, false, &dir, &log).unwrap().is_none());
        assert!(!fifo(&dir).exists());
        let Stdio { mut stdin, output, pump } =
            make(ContainerStdin::Open, false, &dir, &log).unwrap().unwrap();
        assert!(output.is_none() && pump.is_none());
        std::fs::OpenOptions::new().write(true).open(fifo(&dir)).unwrap().write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        stdin.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
