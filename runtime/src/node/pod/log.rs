//! Pod logs, rotated as the kubelet rotates container logs: the current file
//! `<namespace>_<name>.log` never grows past `limits.pod_log_max_bytes`; when
//! it would, it becomes `.log.1` (`.log.1` becomes `.log.2`, and so on) and
//! the oldest past `limits.pod_log_max_files` goes. `podnet logs` shows the
//! current file, as `kubectl logs` does.
//!
//! A pod's stdout and stderr are a FIFO next to its log (`.log.pipe`), which
//! the pod holds open for reading and writing: the agent reads it on a thread
//! per run with one fixed buffer and writes what it reads with the size
//! check, so a pod writing fast costs no memory (it waits on the pipe, as
//! behind containerd's shim) and a full disk only drops output. Because the
//! pod itself holds a read end, its writes never fail with EPIPE while no
//! agent runs (they wait once the pipe's 64 KiB are full), and an agent that
//! takes the pod back opens the FIFO by name and reads on. Bytes a full disk
//! dropped are counted per pod (`log_bytes_dropped` on the pod's port in
//! `podnet node stats` and the metrics).
//!
//! Logs are 0600 and their directory 0700: a pod's output is its own.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LockResult, Mutex, MutexGuard};

/// What one read from a pod's pipe takes at most.
const READ_BUFFER: usize = 32 << 10;

/// Stack of a reader thread: it only reads and writes.
const READER_STACK: usize = 64 << 10;

/// How big and how many a pod's log files may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Largest size of one file (`limits.pod_log_max_bytes`).
    pub max_bytes: u64,
    /// Files kept, the current one included (`limits.pod_log_max_files`,
    /// at least 2).
    pub max_files: u32,
}

/// The files of one pod's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    current: PathBuf,
}

impl LogPaths {
    /// The log of a pod whose current file is `current`.
    pub fn new(current: PathBuf) -> LogPaths {
        LogPaths { current }
    }

    /// The file `podnet logs` reads.
    pub fn current(&self) -> &Path {
        &self.current
    }

    /// The `n`th rotated file (1 is the newest).
    pub fn rotated(&self, n: u32) -> PathBuf {
        suffixed(&self.current, &n.to_string())
    }

    /// The FIFO the pod writes to.
    pub fn fifo(&self) -> PathBuf {
        suffixed(&self.current, "pipe")
    }

    /// Removes the log, its rotated files and its FIFO.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.current);
        let _ = std::fs::remove_file(self.fifo());
        // Contiguous from 1; a lower pod_log_max_files may have left more.
        let mut n = 1;
        while std::fs::remove_file(self.rotated(n)).is_ok() {
            n += 1;
        }
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes the logs directory private (0700), creating it if needed.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The current log file, writing through the size check.
#[derive(Debug)]
pub struct RotatingLog {
    paths: LogPaths,
    limits: LogLimits,
    file: Option<File>,
    size: u64,
    /// Set when the pod is gone: nothing is written (or created) after.
    closed: bool,
    /// Whether the last write failed (the disk is full): said once.
    failing: bool,
    /// Bytes of output lost to write errors.
    dropped: Arc<AtomicU64>,
}

/// A log shared by the readers of a pod's runs, whose count of dropped
/// bytes can be read without waiting for a write in progress.
#[derive(Debug, Clone)]
pub struct SharedLog {
    log: Arc<Mutex<RotatingLog>>,
    dropped: Arc<AtomicU64>,
}

impl SharedLog {
    /// The log, for writing or closing.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, RotatingLog>> {
        self.log.lock()
    }

    /// Bytes of output lost to write errors (a full disk), all runs.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl RotatingLog {
    /// The log at `paths`, appending to its current file.
    pub fn open(paths: LogPaths, limits: LogLimits) -> RotatingLog {
        let dropped = Arc::default();
        let mut log =
            RotatingLog { paths, limits, file: None, size: 0, closed: false, failing: false, dropped };
        log.reopen(false);
        log
    }

    /// The log, shared.
    pub fn shared(paths: LogPaths, limits: LogLimits) -> SharedLog {
        let log = RotatingLog::open(paths, limits);
        SharedLog { dropped: log.dropped.clone(), log: Arc::new(Mutex::new(log)) }
    }

    /// Stops writing for good (the pod is being removed).
    pub fn close(&mut self) {
        self.closed = true;
        self.file = None;
    }

    /// Bytes of output lost to write errors.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Appends `data`, rotating so that no file exceeds `max_bytes`. Lines
    /// are kept whole where they fit in one file.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.closed {
            let room = self.limits.max_bytes.max(1).saturating_sub(self.size);
            let take = match split(data, room, self.size == 0) {
                Some(take) => take,
                None => {
                    self.rotate();
                    continue;
                }
            };
            self.append(&data[..take]);
            data = &data[take..];
        }
    }

    fn append(&mut self, chunk: &[u8]) {
        if self.file.is_none() {
            self.reopen(false);
        }
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(chunk),
            None => Err(io::Error::other("no log file")),
        };
        match result {
            Ok(()) => {
                self.size += chunk.len() as u64;
                if self.failing {
                    self.failing = false;
                    tracing::info!(log = %self.paths.current.display(), "pod log writable again");
                }
            }
            Err(e) => {
                self.dropped.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(log = %self.paths.current.display(), "cannot write pod log, dropping output: {e}");
                }
                // A partial write moved the end: measure again.
                self.size = self.file.as_ref().and_then(|f| f.metadata().ok()).map_or(self.size, |m| m.len());
            }
        }
    }

    /// Current → .1 → .2 …, the oldest past `max_files` dropped, and a new
    /// empty current file.
    fn rotate(&mut self) {
        self.file = None;
        let last = self.limits.max_files.saturating_sub(1);
        for n in (1..last).rev() {
            if let Err(e) = std::fs::rename(self.paths.rotated(n), self.paths.rotated(n + 1))
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(log = %self.paths.current.display(), "cannot rotate pod log: {e}");
            }
        }
        let moved = match last {
            0 => std::fs::remove_file(&self.paths.current),
            _ => std::fs::rename(&self.paths.current, self.paths.rotated(1)),
        };
        if let Err(e) = moved {
            tracing::warn!(log = %self.paths.current.display(), "cannot rotate pod log, truncating it: {e}");
        }
        // Truncated either way, so the bound holds even when renames fail;
        // empty even when it cannot be opened, so writing goes on (dropped).
        self.reopen(true);
        self.size = 0;
    }

    fn reopen(&mut self, truncate: bool) {
        if self.closed {
            return;
        }
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.paths.current)
            .and_then(|file| {
                if truncate {
                    file.set_len(0)?;
                }
                // An older agent wrote logs 0644.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                Ok(file)
            });
        match opened {
            Ok(file) => {
                self.size = file.metadata().map_or(0, |m| m.len());
                self.file = Some(file);
            }
            Err(e) => {
                self.file = None;
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(log = %self.paths.current.display(), "cannot open pod log: {e}");
                }
            }
        }
    }
}

/// How much of `data` goes into a file with `room` bytes left: all of it if
/// it fits; else up to its last line end that fits; else, when the file is
/// empty (one line longer than a file), as much as fits. `None`: rotate
/// first.
fn split(data: &[u8], room: u64, empty: bool) -> Option<usize> {
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if data.len() <= room {
        return Some(data.len());
    }
    if let Some(end) = data[..room].iter().rposition(|b| *b == b'\n') {
        return Some(end + 1);
    }
    (empty && room > 0).then_some(room)
}

/// The agent's end of a pod's FIFO.
pub struct Reader(File);

/// Opens a pod's FIFO (making it if needed) for a new run: the end the pod
/// gets as stdout and stderr (read-write, so the pod is never without a
/// reader) and the agent's.
pub fn pipe(paths: &LogPaths) -> io::Result<(File, Reader)> {
    let fifo = paths.fifo();
    ensure_fifo(&fifo)?;
    // The reader first: the pipe's buffer lives as long as it, so the output
    // of a command that exits at once is still read.
    let reader = open_reader(&fifo)?;
    let pod_end = OpenOptions::new().read(true).write(true).open(&fifo)?;
    Ok((pod_end, Reader(reader)))
}

fn ensure_fifo(fifo: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(fifo) {
        Ok(meta) if meta.file_type().is_fifo() => return Ok(()),
        Ok(_) => std::fs::remove_file(fifo)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(io::Error::from)
}

/// The FIFO's read end, blocking: opened without waiting for a writer.
fn open_reader(fifo: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fifo)?;
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(file)
}

impl Reader {
    /// Starts the thread that moves the pod's output into `log`, until every
    /// process of the run has closed its end.
    pub fn start(self, log: SharedLog, pod: &str) -> io::Result<()> {
        read_into(self.0, log, pod)
    }
}

/// Reads a pod's FIFO again after the agent restarted (the pod kept
/// running): `Ok(false)` when it has none (an older agent's pod).
pub fn reattach(paths: &LogPaths, log: SharedLog, pod: &str) -> io::Result<bool> {
    let fifo = paths.fifo();
    match std::fs::symlink_metadata(&fifo) {
        Ok(meta) if meta.file_type().is_fifo() => {}
        _ => return Ok(false),
    }
    read_into(open_reader(&fifo)?, log, pod)?;
    Ok(true)
}

fn read_into(mut reader: File, log: SharedLog, pod: &str) -> io::Result<()> {
    let pod = pod.to_string();
    std::thread::Builder::new().name("pod-log".into()).stack_size(READER_STACK).spawn(move || {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match reader.read(&mut buf) {
                // Every writer is gone: the run ended.
                Ok(0) => break,
                Ok(n) => log.lock().unwrap_or_else(|e| e.into_inner()).write(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(pod = %pod, "cannot read pod output: {e}");
                    break;
                }
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sizes(paths: &LogPaths, max_files: u32) -> Vec<u64> {
        std::iter::once(paths.current().to_path_buf())
            .chain((1..max_files + 2).map(|n| paths.rotated(n)))
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .collect()
    }

    #[test]
    fn files_stay_under_the_size_and_count() {
        let dir = temp_dir("rotate");
        let paths = LogPaths::new(dir.join("default_web.log"));
        let limits = LogLimits { max_bytes: 1000, max_files: 3 };
        let mut log = RotatingLog::open(paths.clone(), limits);
        let line = b"0123456789012345678901234567890123456789012345678\n"; // 50 bytes
        for _ in 0..200 {
            log.write(line);
        }
        // 10,000 bytes in 1,000-byte files: current, .1 and .2 full, no .3.
        assert_eq!(sizes(&paths, 3), [1000, 1000, 1000, 0, 0]);
        let newest = std::fs::read(paths.current()).unwrap();
        assert!(newest.starts_with(line) && newest.ends_with(line), "whole lines");
        for file in [paths.current().to_path_buf(), paths.rotated(1)] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        paths.remove();
        assert_eq!(sizes(&paths, 3), [0; 5]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lines_stay_whole_and_long_ones_are_cut() {
        assert_eq!(split(b"abc\ndef\n", 100, false), Some(8));
        assert_eq!(split(b"abc\ndef\n", 6, false), Some(4), "up to the last line end that fits");
        assert_eq!(split(b"abcdef\n", 4, false), None, "rotate first");
        assert_eq!(split(b"abcdef\n", 4, true), Some(4), "a line longer than a file is cut");
        assert_eq!(split(b"x", 0, false), None);
    }

    #[test]
    fn a_log_that_cannot_be_written_drops_output_and_goes_on() {
        let dir = temp_dir("full");
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let paths = LogPaths::new(dir.join("default_full.log"));
        let log = RotatingLog::open(paths, LogLimits { max_bytes: 100, max_files: 2 });
        let shared = SharedLog { dropped: log.dropped.clone(), log: Arc::new(Mutex::new(log)) };
        let mut log = shared.lock().unwrap();
        log.file = Some(OpenOptions::new().append(true).open("/dev/full").unwrap());
        log.write(b"lost\n");
        assert_eq!(log.dropped(), 5);
        log.write(b"lost too\n");
        assert_eq!(log.dropped(), 14);
        drop(log);
        // What `podnet node stats` reads, without the lock.
        assert_eq!(shared.dropped(), 14);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pods_output_goes_through_the_fifo_and_survives_a_quick_exit() {
        let dir = temp_dir("fifo");
        let paths = LogPaths::new(dir.join("default_quick.log"));
        let log = RotatingLog::shared(paths.clone(), LogLimits { max_bytes: 4096, max_files: 2 });
        let (mut pod_end, reader) = pipe(&paths).unwrap();
        pod_end.write_all(b"hello from the pod\n").unwrap();
        // The pod has exited before the reader runs.
        drop(pod_end);
        reader.start(log, "t").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read(paths.current()).unwrap_or_default() != b"hello from the pod\n" {
            assert!(std::time::Instant::now() < deadline, "output never arrived");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mode = std::fs::symlink_metadata(paths.fifo()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
