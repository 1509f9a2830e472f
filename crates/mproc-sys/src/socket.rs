//! Unix stream sockets: socketpairs, and bytes sent with file descriptors beside them
//! (SCM_RIGHTS).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, sockopt,
};

/// The most fds one message may carry (Linux's SCM_MAX_FD).
pub const MAX_FDS_PER_MSG: usize = 253;

/// Creates a connected pair of Unix stream sockets, both close-on-exec.
///
/// ```
/// let (a, b) = mproc_sys::socketpair()?;
/// # drop((a, b));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
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
    send_vectored_with_fds(fd, &[IoSlice::new(bytes)], fds)
}

/// Like [`send_with_fds`], for bytes in several pieces (one `sendmsg`, no copy to join
/// them). Returns how many bytes were sent in all.
///
/// ```
/// use std::io::IoSlice;
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let n = mproc_sys::send_vectored_with_fds(a.as_fd(), &[IoSlice::new(b"he"), IoSlice::new(b"llo")], &[])?;
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
        match socket::sendmsg::<()>(fd.as_raw_fd(), iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Receives into `buf`, appending any fds that came with the bytes to `fds` (close-on-exec).
///
/// Returns the number of bytes read; `0` means the peer closed its end. With `nonblocking`,
/// a socket with nothing to read gives `io::ErrorKind::WouldBlock`. Fds that do not fit the
/// control buffer are an `InvalidData` error rather than a silent loss.
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    // One control buffer per thread, reused: allocating its ~1 KiB on every receive costs
    // a malloc (and, in a freshly forked process, copied pages) per message.
    thread_local! {
        static CMSG: std::cell::RefCell<Vec<u8>> =
            std::cell::RefCell::new(nix::cmsg_space!([RawFd; MAX_FDS_PER_MSG]));
    }
    CMSG.with(|cell| {
        // nix takes the buffer's length (not its capacity) as the space: keep it full.
        recv_into(fd, buf, fds, nonblocking, &mut cell.borrow_mut())
    })
}

fn recv_into(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
    cmsg_buf: &mut [u8],
) -> io::Result<usize> {
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match socket::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(cmsg_buf), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r?,
        }
    };
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for r in raw {
                // SAFETY: the kernel just installed `r` in our fd table for us; nobody else
                // owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message carried more file descriptors than allowed; they were dropped",
        ));
    }
    Ok(msg.bytes)
}

/// Returns the pid of the process that created the other end of a Unix socket.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// assert_eq!(mproc_sys::peer_pid(a.as_fd())?, std::process::id());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let cred = socket::getsockopt(&fd, sockopt::PeerCredentials)?;
    Ok(cred.pid() as u32)
}

/// Asks for a send buffer of `bytes` on a socket (the kernel caps it at
/// `net.core.wmem_max`).
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// mproc_sys::set_send_buffer(a.as_fd(), 256 << 10)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    socket::setsockopt(&fd, sockopt::SndBuf, &bytes)?;
    Ok(())
}

/// Returns the send buffer size of a socket, as the kernel reports it.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// assert!(mproc_sys::send_buffer_size(a.as_fd())? > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn send_buffer_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(socket::getsockopt(&fd, sockopt::SndBuf)?)
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
