//! A terminal's window size, for the CLI's `podnet exec -t`.

use std::os::fd::{AsRawFd, BorrowedFd};

mod ioctl {
    nix::ioctl_read_bad!(get_window_size, nix::libc::TIOCGWINSZ, nix::libc::winsize);
}

/// The size of the terminal `fd` is: columns and rows; None when it is no
/// terminal or has no size.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which lives
    // through the call; `fd` is a borrowed, open descriptor.
    unsafe { ioctl::get_window_size(fd.as_raw_fd(), &mut ws) }.ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}
