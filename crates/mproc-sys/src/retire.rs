//! The descriptors mproc's objects own (pipe ends, queue sockets, child handles), so that a
//! child made by `fork` can close the ones it was not given: it inherits a copy of every
//! descriptor of its parent, and a copy of the parent's end of a pipe would keep the child's
//! own end from ever seeing the stream end.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Descriptors below this are recorded without a lock (`0`: none, else the inode | `MARK`).
const SMALL: usize = 1024;
const MARK: u64 = 1 << 63;
static SMALL_FDS: [AtomicU64; SMALL] = [const { AtomicU64::new(0) }; SMALL];
static LARGE_FDS: Mutex<Option<HashMap<RawFd, u64>>> = Mutex::new(None);

fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: `fstat` only writes into the stat buffer we own; a closed fd yields EBADF.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: see above; `st` is a valid, writable `stat`.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino | MARK)
}

/// Records `fd` as owned by an mproc object: a child started by the fork method closes it
/// (see [`retire_owned_fds_except`]) unless the object was in the child's argument. The
/// owner calls [`untrack_owned_fd`] before closing it (a record left behind is checked by
/// inode before use, but anonymous inodes, such as pidfds' before Linux 6.9, are shared
/// with other kinds of fd).
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// mproc_sys::track_owned_fd(a.as_fd());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn track_owned_fd(fd: BorrowedFd<'_>) {
    let raw = fd.as_raw_fd();
    let Some(ino) = inode(raw) else { return };
    match usize::try_from(raw) {
        Ok(i) if i < SMALL => SMALL_FDS[i].store(ino, Ordering::Relaxed),
        _ => {
            if let Some(mut map) = large_fds() {
                map.get_or_insert_with(HashMap::new).insert(raw, ino);
            }
        }
    }
}

/// Forgets `fd`, about to be closed by its owner (see [`track_owned_fd`]).
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// mproc_sys::track_owned_fd(a.as_fd());
/// mproc_sys::untrack_owned_fd(a.as_fd());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn untrack_owned_fd(fd: BorrowedFd<'_>) {
    forget(fd.as_raw_fd());
}

/// The table of fds from `SMALL` up, unless another thread holds it for long (in a fork
/// child, the thread that held it at the fork is gone: never block on it there).
fn large_fds() -> Option<std::sync::MutexGuard<'static, Option<HashMap<RawFd, u64>>>> {
    for _ in 0..100 {
        match LARGE_FDS.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// In a child just made by `fork`, before it runs anything else: points every descriptor
/// recorded by [`track_owned_fd`] that is still the same file and not in `keep` at
/// `/dev/null` (close-on-exec), so that this process no longer holds the object; the fd
/// number stays taken, so an inherited object that still believes it owns the number only
/// ever closes `/dev/null`. Returns how many were retired. Descriptors mproc does not own
/// are left alone.
///
/// Meant for a single-threaded process (a fork child); elsewhere it would pull descriptors
/// from under the threads using them.
pub fn retire_owned_fds_except(keep: &[RawFd]) -> usize {
    let mut targets = Vec::new();
    for (i, slot) in SMALL_FDS.iter().enumerate() {
        let ino = slot.load(Ordering::Relaxed);
        if ino != 0 {
            targets.push((i as RawFd, ino));
        }
    }
    // Another thread of the parent may have held the lock at the fork: skip, then.
    if let Some(map) = large_fds() {
        targets.extend(map.iter().flatten().map(|(&fd, &ino)| (fd, ino)));
    }
    let mut null = None;
    let mut retired = 0;
    for (fd, ino) in targets {
        if keep.contains(&fd) || inode(fd) != Some(ino) {
            continue;
        }
        let null = match null {
            Some(n) => n,
            None => {
                // SAFETY: a valid NUL-terminated path; the fd returned is closed below.
                let n =
                    unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
                if n < 0 {
                    return retired;
                }
                null = Some(n);
                n
            }
        };
        // SAFETY: `dup3` atomically replaces `fd` (an fd this process has open, recorded
        // as owned by an mproc object) with a copy of `/dev/null`; memory safety does not
        // depend on which file an fd number refers to, and the number stays allocated, so
        // no owner of it can close another file by mistake.
        if unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) } == fd {
            retired += 1;
        }
        forget(fd);
    }
    if let Some(n) = null {
        // SAFETY: `n` was opened above and is owned by nothing else.
        unsafe { libc::close(n) };
    }
    retired
}

fn forget(fd: RawFd) {
    match usize::try_from(fd) {
        Ok(i) if i < SMALL => SMALL_FDS[i].store(0, Ordering::Relaxed),
        _ => {
            if let Some(mut map) = large_fds()
                && let Some(map) = map.as_mut()
            {
                map.remove(&fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_retired_fd_reads_as_dev_null_and_a_kept_one_is_untouched() {
        let (a, b) = crate::socketpair().unwrap();
        let (c, d) = crate::socketpair().unwrap();
        track_owned_fd(a.as_fd());
        track_owned_fd(c.as_fd());
        // In-process stand-in for a fork child: retire all tracked fds but `c` (other
        // tests' tracked fds in this process are retired too, so this test runs alone in
        // its own process: see the integration tests for the fork case proper).
        let before = retire_owned_fds_except(&[c.as_raw_fd()]);
        assert!(before >= 1);
        assert_eq!(crate::fd_kind(a.as_raw_fd()), crate::FdKind::Other);
        assert_eq!(crate::fd_kind(c.as_raw_fd()), crate::FdKind::Socket);
        // `b` sees its peer gone: nothing else held `a`'s socket.
        let zero = Some(std::time::Duration::ZERO);
        assert_eq!(crate::poll_readable(&[b.as_fd()], zero).unwrap(), [true]);
        assert_eq!(crate::poll_readable(&[d.as_fd()], zero).unwrap(), [false]);
        drop((a, b, c, d));
    }
}
