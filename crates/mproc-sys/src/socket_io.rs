//! Bytes through a socket, with file descriptors beside them (SCM_RIGHTS): sending,
//! receiving into a buffer or onto the end of one, and peeking.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, MsgFlags};

/// The most fds one message may carry (Linux's SCM_MAX_FD).
pub const MAX_FDS_PER_MSG: usize = 253;

/// Copies the start of the next record waiting on `fd` into `buf` without taking it (and
/// without receiving any fd attached to it). Never blocks: nothing waiting is
/// `io::ErrorKind::WouldBlock`.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::seqpacket_pair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"abc", &[])?;
/// let mut head = [0u8; 1];
/// assert_eq!(mproc_sys::peek(b.as_fd(), &mut head)?, 1);
/// assert_eq!(mproc_sys::recv_with_fds(b.as_fd(), &mut [0u8; 3], &mut Vec::new(), true)?, 3);
/// assert!(mproc_sys::peek(b.as_fd(), &mut head).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match socket::recv(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Sends `bytes` with `fds` attached to their first byte. Returns how many bytes were sent,
/// which may be fewer than `bytes.len()` (the fds went with the first byte either way).
///
/// Never raises SIGPIPE: a closed peer is an `io::ErrorKind::BrokenPipe` error.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let (x, _y) = mproc_sys::socketpair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"fd", &[x.as_fd()])?;
/// let (mut buf, mut fds) = ([0u8; 2], Vec::new());
/// mproc_sys::recv_with_fds(b.as_fd(), &mut buf, &mut fds, false)?;
/// assert_eq!(fds.len(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn send_with_fds(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_vectored_with_fds(fd, &[IoSlice::new(bytes)], fds, false)
}

/// Like [`send_with_fds`], for bytes in several pieces (one `sendmsg`, no copy to join
/// them). Returns how many bytes were sent in all. With `nonblocking`, a full socket is an
/// `io::ErrorKind::WouldBlock` error instead of a wait.
///
/// ```
/// use std::io::IoSlice;
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let n = mproc_sys::send_vectored_with_fds(a.as_fd(), &[IoSlice::new(b"he"), IoSlice::new(b"llo")], &[], false)?;
/// assert_eq!(n, 5);
/// let mut buf = [0u8; 5];
/// mproc_sys::recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new(), false)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn send_vectored_with_fds(
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MSG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a message carries at most {MAX_FDS_PER_MSG} file descriptors"),
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    loop {
        let flags = if nonblocking {
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::MSG_NOSIGNAL
        };
        match socket::sendmsg::<()>(fd.as_raw_fd(), iov, cmsgs, flags, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Receives into `buf`, appending any fds that came with the bytes to `fds` (close-on-exec).
///
/// Returns the number of bytes read; `0` means the peer closed its end. With `nonblocking`,
/// a socket with nothing to read gives `io::ErrorKind::WouldBlock`. Fds that do not fit the
/// control buffer are an `InvalidData` error rather than a silent loss. Fds that could not
/// be installed because this process has no fd free are an error too, from which
/// [`fds_not_received`] recovers the bytes that did arrive.
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    recv_with_at_most_fds(fd, buf, fds, MAX_FDS_PER_MSG, nonblocking)
}

/// Like [`recv_with_fds`], accepting at most `max_fds` fds: the control buffer is only that
/// large, so the kernel itself closes any more a peer attaches (reported as
/// `InvalidData`), and a peer cannot fill this process's fd table. With `0`, no fd is ever
/// installed.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let (x, _y) = mproc_sys::socketpair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"f", &[x.as_fd()])?;
/// let mut fds = Vec::new();
/// let err = mproc_sys::recv_with_at_most_fds(b.as_fd(), &mut [0u8; 1], &mut fds, 0, false).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
/// assert!(fds.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn recv_with_at_most_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
    nonblocking: bool,
) -> io::Result<usize> {
    let space = cmsg_space(max_fds.min(MAX_FDS_PER_MSG));
    // One control buffer per thread, reused: allocating its ~1 KiB on every receive costs
    // a malloc (and, in a freshly forked process, copied pages) per message.
    thread_local! {
        static CMSG: std::cell::RefCell<Vec<u8>> =
            std::cell::RefCell::new(nix::cmsg_space!([RawFd; MAX_FDS_PER_MSG]));
    }
    let reused = CMSG.try_with(|cell| {
        // nix takes the slice's length as the space.
        recv_into(fd, buf, fds, nonblocking, &mut cell.borrow_mut()[..space])
    });
    // This thread's locals are gone (an exit handler runs after them): a buffer of our
    // own, this once.
    reused.unwrap_or_else(|_| recv_into(fd, buf, fds, nonblocking, &mut vec![0; space]))
}

/// The control-buffer space for `n` fds (`CMSG_SPACE`), 0 for none.
fn cmsg_space(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let align = |x: usize| x.next_multiple_of(std::mem::size_of::<usize>());
    align(std::mem::size_of::<libc::cmsghdr>()) + align(n * std::mem::size_of::<RawFd>())
}

fn recv_into(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
    cmsg_buf: &mut [u8],
) -> io::Result<usize> {
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero `msghdr` is a valid empty header; the fields we set below point to
    // `iov` and `cmsg_buf`, which outlive the call.
    let mut msg = unsafe { std::mem::zeroed::<libc::msghdr>() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !cmsg_buf.is_empty() {
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_buf.len() as _;
    }
    let n = loop {
        // SAFETY: `msg` describes one writable buffer (`buf`) and a control buffer of
        // `msg_controllen` bytes, both valid for the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // Collect every fd the kernel installed, even when it had to drop some (truncation):
    // those it installed are ours to close.
    let start = fds.len();
    if msg.msg_controllen > 0 {
        // SAFETY: the kernel filled `msg_controllen` bytes of `cmsg_buf` with well-formed
        // control messages; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them, and SCM_RIGHTS data
        // is an array of `c_int` fds of the given length, now open in this process and owned
        // by no one else.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                        / std::mem::size_of::<RawFd>();
                    for k in 0..count {
                        fds.push(OwnedFd::from_raw_fd(data.add(k).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        let installed = fds.len() - start;
        fds.truncate(start); // closes the ones that did arrive
        // The kernel installs fds until the control buffer is full or one cannot be
        // installed: with room left, this process had no fd free for them (the peer sent
        // no more than allowed), and the bytes were received all the same.
        if installed < cmsg_capacity(cmsg_buf.len()) {
            return Err(io::Error::other(FdsNotReceived {
                bytes: n,
                cause: why_no_fd(fd),
            }));
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message carried more file descriptors than allowed; they were dropped",
        ));
    }
    Ok(n)
}

/// How many fds the kernel puts in a control buffer of `space` bytes.
fn cmsg_capacity(space: usize) -> usize {
    let header = std::mem::size_of::<libc::cmsghdr>();
    space.saturating_sub(header) / std::mem::size_of::<RawFd>()
}

/// Why fds could not be installed just now: the error of making one more (`EMFILE` when
/// the fd table is full, `ENFILE` when the system's is), or, if one can be made again, a
/// plain description.
fn why_no_fd(fd: BorrowedFd<'_>) -> io::Error {
    match fd.try_clone_to_owned() {
        Err(e) => e,
        Ok(_spare) => io::Error::other("the fds could not be installed in this process"),
    }
}

/// The error inside the `io::Error` of a receive whose bytes arrived but whose fds could
/// not be installed in this process (its fd table was full): the bytes are in the buffer,
/// and the fds are gone (the kernel closed them). Found with [`fds_not_received`].
#[derive(Debug)]
pub struct FdsNotReceived {
    /// The bytes received, as a successful receive would have returned.
    pub bytes: usize,
    /// Why the fds could not be installed (`EMFILE` when the fd table is full).
    pub cause: io::Error,
}

impl std::fmt::Display for FdsNotReceived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the fds that came with {} received bytes could not be installed",
            self.bytes
        )
    }
}

impl std::error::Error for FdsNotReceived {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// Returns what a receive that failed with `e` did receive, when its bytes arrived but the
/// fds that came with them could not be installed (the fd table was full): the stream went
/// on, and the caller decides what the bytes without their fds are worth.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let (x, _y) = mproc_sys::socketpair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"f", &[x.as_fd()])?;
/// // Too many fds for the buffer is not this case (the peer sent more than allowed).
/// let err = mproc_sys::recv_with_at_most_fds(b.as_fd(), &mut [0u8; 1], &mut Vec::new(), 0, false)
///     .unwrap_err();
/// assert!(mproc_sys::fds_not_received(&err).is_none());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn fds_not_received(e: &io::Error) -> Option<&FdsNotReceived> {
    e.get_ref()?.downcast_ref::<FdsNotReceived>()
}

/// Receives up to `max` bytes and appends them to `buf` without zero-filling the space
/// first (the kernel writes it). Returns how many bytes were appended; `0` means the peer
/// closed its end. Fds must not ride on these bytes: any that do are discarded by the
/// kernel (use [`recv_with_fds`] where they may come).
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"abc", &[])?;
/// let mut buf = b"x".to_vec();
/// assert_eq!(mproc_sys::recv_append(b.as_fd(), &mut buf, 16, false)?, 3);
/// assert_eq!(buf, b"xabc");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn recv_append(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    nonblocking: bool,
) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = max.min(spare.len());
    let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: `spare` points to at least `want` bytes of writable (uninitialised)
        // capacity of `buf`, which no one else can touch during the call; `recv` writes at
        // most `want` bytes there and returns how many.
        let n = unsafe { libc::recv(fd.as_raw_fd(), spare.as_mut_ptr().cast(), want, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        // SAFETY: the kernel initialised the first `n` (≤ `want`) bytes of the spare
        // capacity, so the first `len + n` bytes of `buf` are initialised.
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(n);
    }
}

/// Receives into `buf` (no fds: any that ride on these bytes are discarded by the kernel).
/// Returns how many bytes arrived; `0` means the peer closed its end.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"ab", &[])?;
/// let mut buf = [0u8; 4];
/// assert_eq!(mproc_sys::recv_append_slice(b.as_fd(), &mut buf, false)?, 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn recv_append_slice(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<usize> {
    let flags = if nonblocking {
        MsgFlags::MSG_DONTWAIT
    } else {
        MsgFlags::empty()
    };
    loop {
        match socket::recv(fd.as_raw_fd(), buf, flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}
