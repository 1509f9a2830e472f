//! Making sockets and tuning them: Unix socket pairs (stream or seqpacket), peer
//! credentials, send buffers, TCP keepalive.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, sockopt};

/// Creates a connected pair of Unix stream sockets, both close-on-exec.
///
/// ```
/// let (a, b) = mproc_sys::socketpair()?;
/// # drop((a, b));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// Creates a connected pair of Unix `SOCK_SEQPACKET` sockets (close-on-exec): each send is
/// received whole, as one record, even when several processes share an end.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::seqpacket_pair()?;
/// mproc_sys::send_with_fds(a.as_fd(), b"one", &[])?;
/// mproc_sys::send_with_fds(a.as_fd(), b"two", &[])?;
/// let mut buf = [0u8; 8];
/// assert_eq!(mproc_sys::recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new(), false)?, 3);
/// assert_eq!(&buf[..3], b"one");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// Moves an fd that landed on 0, 1 or 2 (a program closed its standard streams) to a
/// number of 3 or more, so that nothing that later sets up the standard streams can
/// clobber it.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: `F_DUPFD_CLOEXEC` returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
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

/// Makes a TCP connection notice a peer that vanished (its machine lost power, its network
/// went): keepalive probes after `idle` of silence, every `interval`, `count` of them
/// unanswered end the connection; and data unacknowledged for `idle + interval * count`
/// ends it too (`TCP_USER_TIMEOUT`). A blocked read or write then fails instead of waiting
/// for ever.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let s = std::net::TcpStream::connect(listener.local_addr()?)?;
/// mproc_sys::set_tcp_keepalive(s.as_fd(), Duration::from_secs(10), Duration::from_secs(5), 3)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_tcp_keepalive(
    fd: BorrowedFd<'_>,
    idle: std::time::Duration,
    interval: std::time::Duration,
    count: u32,
) -> io::Result<()> {
    let secs = |d: std::time::Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
    socket::setsockopt(&fd, sockopt::KeepAlive, &true)?;
    socket::setsockopt(&fd, sockopt::TcpKeepIdle, &secs(idle))?;
    socket::setsockopt(&fd, sockopt::TcpKeepInterval, &secs(interval))?;
    socket::setsockopt(&fd, sockopt::TcpKeepCount, &count)?;
    let total = idle.saturating_add(interval.saturating_mul(count));
    let ms = u32::try_from(total.as_millis()).unwrap_or(u32::MAX);
    socket::setsockopt(&fd, sockopt::TcpUserTimeout, &ms)?;
    Ok(())
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
