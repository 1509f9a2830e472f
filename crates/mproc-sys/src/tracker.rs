//! The segment tracker: a tiny forked process that unlinks named shared-memory segments
//! once every process holding its socket (the creator and its fork children) has ended,
//! however they ended; a name registered with its file only while it is still that file.
//!
//! The child runs only async-signal-safe system calls (no allocation, no locks, no panics),
//! so it can be forked from a process with threads. Its requests and its table of names
//! are in `tracker/requests.rs`.

mod requests;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub use requests::FileId;
#[cfg(fuzzing)]
pub use requests::fuzz_requests;
use requests::{MAX_REQUEST, Op, Table};

/// The longest name the tracker takes (the longest file name, `NAME_MAX`; mproc's own
/// names are shorter).
const MAX_NAME: usize = 255;

/// How long `register` waits for the tracker's answer.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection to a segment tracker process.
///
/// ```
/// let tracker = mproc_sys::Tracker::start()?;
/// let name = format!("mproc-doc-tracker-{}", std::process::id());
/// drop(mproc_sys::shm_create(&name, 64)?);
/// tracker.register(&name, None)?;
/// drop(tracker); // the last holder of the socket: the tracker unlinks the segment
/// let gone = std::time::Instant::now() + std::time::Duration::from_secs(10);
/// while mproc_sys::shm_open_existing(&name).is_ok() && std::time::Instant::now() < gone {
///     std::thread::sleep(std::time::Duration::from_millis(5));
/// }
/// assert!(mproc_sys::shm_open_existing(&name).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Tracker {
    sock: OwnedFd,
    pid: u32,
    /// The process that started the tracker: its parent, the only one that may reap it.
    starter: u32,
}

impl Tracker {
    /// Forks the tracker process. Its socket end is close-on-exec in this process, so fork
    /// children share the tracker and spawned (exec'd) children do not.
    ///
    /// # Errors
    ///
    /// The OS error from socketpair or fork.
    pub fn start() -> io::Result<Tracker> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        // Block every signal around the clone, so that no handler of ours runs in the child
        // before it has reset them all (the child unblocks them afterwards).
        // SAFETY: sigset operations on sets on our stack.
        let old_mask = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            old
        };
        // SAFETY: a bare fork (clone with SIGCHLD, no fork handlers: the caller may hold
        // locks that handlers take). The child branch calls only async-signal-safe system
        // calls (see `serve`) and never returns, so forking from a process with other
        // threads, without libc's fork bookkeeping, is sound.
        let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) } as i32;
        if pid != 0 {
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
        }
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            serve(theirs.as_raw_fd(), ours.as_raw_fd());
        }
        drop(theirs);
        Ok(Tracker {
            sock: ours,
            pid: pid as u32,
            starter: std::process::id(),
        })
    }

    /// Reaps the tracker after finding it dead (its socket closed), before starting
    /// another; waits for it to finish exiting. Only the process that started it may: in a
    /// fork child the pid is not ours to wait for.
    pub fn reap(&self) {
        if std::process::id() == self.starter {
            let _ = crate::wait_pid(self.pid, true);
        }
    }

    /// Returns the tracker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the tracker to unlink `name` when the last holder ends, and waits until the
    /// tracker says it has the name in its table: a request sent to a tracker that is being
    /// killed would otherwise go down with it, and the segment would never be unlinked.
    ///
    /// With a `file` (the device and inode of [`file_identity`](crate::file_identity)),
    /// the tracker unlinks `name` only if it is still that file then: a name registered
    /// before it is renamed onto that file, or after its file was replaced by another
    /// program's, is left alone. Without one, it unlinks whatever `name` is. The same name
    /// registered at two files is two registrations.
    ///
    /// The request carries the write end of a pipe; the tracker writes a byte on it once
    /// the name is in its table, and a tracker that dies first closes it unwritten (the
    /// socket is shared with fork children, so the answer cannot come on it).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a name that is not a valid segment name (see
    /// [`shm_create`](crate::shm_create)); `BrokenPipe` if the tracker died (before or
    /// after reading: register the name with a new one).
    pub fn register(&self, name: &str, file: Option<FileId>) -> io::Result<()> {
        crate::shm::named::check_name(name)?;
        let (answer, reply_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let mut msg = [0u8; MAX_REQUEST];
        let len = requests::encode(Op::Register, name.as_bytes(), file, &mut msg);
        crate::send_with_fds(self.sock.as_fd(), &msg[..len], &[reply_end.as_fd()])?;
        drop(reply_end);
        // A live tracker answers in microseconds; one that is stuck for this long is left
        // to its fate (the name may still be registered).
        let answered = crate::wait_readable(answer.as_fd(), crate::deadline_after(ANSWER_WAIT))?;
        if !answered {
            return Ok(());
        }
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(&answer, &mut byte) {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(io::Error::from(io::ErrorKind::BrokenPipe)),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends the registration of `name` (at `file`, if any) without waiting for the
    /// tracker's answer. The socket keeps order, so the tracker has it in its table once
    /// a later [`register`](Tracker::register) from this thread has been answered; a
    /// tracker that dies before storing it fails that later registration, and every name
    /// should then go to its successor. It saves a round trip where a confirmed
    /// registration follows anyway.
    ///
    /// # Errors
    ///
    /// As [`register`](Tracker::register) (`BrokenPipe` or `ConnectionReset` when the
    /// tracker is already gone).
    pub fn register_ahead(&self, name: &str, file: Option<FileId>) -> io::Result<()> {
        self.send(Op::Register, name, file)
    }

    /// Asks the tracker to forget `name` (it was unlinked, or should outlive us): its
    /// registration at `file`, or, with `None`, every registration of `name`.
    ///
    /// # Errors
    ///
    /// As [`register`](Tracker::register).
    pub fn unregister(&self, name: &str, file: Option<FileId>) -> io::Result<()> {
        self.send(Op::Forget, name, file)
    }

    fn send(&self, op: Op, name: &str, file: Option<FileId>) -> io::Result<()> {
        crate::shm::named::check_name(name)?;
        let mut msg = [0u8; MAX_REQUEST];
        let len = requests::encode(op, name.as_bytes(), file, &mut msg);
        loop {
            match nix::sys::socket::send(
                self.sock.as_raw_fd(),
                &msg[..len],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => return Ok(()),
            }
        }
    }
}

/// Unmaps every shared mapping this (forked) process inherited, reading
/// `/proc/self/maps` with raw system calls: the tracker must not keep its parent's shared
/// memory alive for as long as it runs.
///
/// # Safety
///
/// Only for the tracker child, which touches no shared mapping afterwards.
unsafe fn unmap_shared() {
    // SAFETY: plain system calls on buffers on our stack; the ranges come from the
    // kernel's own list of our mappings.
    unsafe {
        for _pass in 0..1024 {
            let fd = libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return;
            }
            let mut ranges = [(0usize, 0usize); 64];
            let mut found = 0;
            let mut buf = [0u8; 4096];
            let mut line = [0u8; 128];
            let mut len = 0;
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                for &b in &buf[..n as usize] {
                    if b != b'\n' {
                        if len < line.len() {
                            line[len] = b;
                            len += 1;
                        }
                        continue;
                    }
                    if let Some(range) = shared_range(&line[..len])
                        && found < ranges.len()
                    {
                        ranges[found] = range;
                        found += 1;
                    }
                    len = 0;
                }
            }
            libc::close(fd);
            if found == 0 {
                return;
            }
            for &(start, end) in &ranges[..found] {
                libc::munmap(start as *mut libc::c_void, end - start);
            }
        }
    }
}

/// Parses `start-end perms ...` from a line of `/proc/self/maps`; returns the range of a
/// shared mapping (`s` as the fourth permission letter).
fn shared_range(line: &[u8]) -> Option<(usize, usize)> {
    fn hex(s: &[u8]) -> Option<usize> {
        let mut v: usize = 0;
        for &c in s {
            let d = (c as char).to_digit(16)? as usize;
            v = v.checked_mul(16)?.checked_add(d)?;
        }
        (!s.is_empty()).then_some(v)
    }
    let dash = line.iter().position(|&c| c == b'-')?;
    let space = dash + 1 + line[dash + 1..].iter().position(|&c| c == b' ')?;
    let perms = line.get(space + 1..space + 5)?;
    let (start, end) = (hex(&line[..dash])?, hex(&line[dash + 1..space])?);
    (perms[3] == b's' && end > start).then_some((start, end))
}

/// The tracker's main loop. Never returns.
fn serve(sock: i32, parents: i32) -> ! {
    // SAFETY: every call below is an async-signal-safe system call on memory we own (the
    // stack, or the anonymous mapping `table`); nothing allocates or takes a lock.
    unsafe {
        libc::setsid();
        // No handler of the parent's may run here (it could allocate or take a lock).
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if parents != 3 && parents != sock {
            libc::close(parents); // the other end: holding it, we would never see the end
        }
        if sock != 3 {
            libc::dup2(sock, 3);
        }
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            for fd in 4..(limit.rlim_cur.min(1 << 20) as i32) {
                libc::close(fd);
            }
        }
        unmap_shared();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 3 {
                libc::close(null);
            }
        }
        let Some(mut table) = Table::new() else {
            libc::_exit(2);
        };
        requests::receive(BorrowedFd::borrow_raw(3), &mut table);
        unlink_registered(&table);
        libc::_exit(0);
    }
}

/// Unlinks `/dev/shm/<name>` for every registration in `table`; a name registered at a
/// file only if it is that file now (same device and inode, by `lstat`).
///
/// Between the `lstat` and the `unlink` another process could replace the name, and the
/// replacement would be unlinked. That takes a program that re-creates one of our names
/// within microseconds of our whole tree ending, and the tracker's only other choice,
/// unlinking without looking, removes such a replacement whenever it comes; there is no
/// "unlink if still this inode" call to close it.
fn unlink_registered(table: &Table) {
    const PREFIX: &[u8] = b"/dev/shm/";
    let mut path = [0u8; PREFIX.len() + MAX_NAME + 1];
    path[..PREFIX.len()].copy_from_slice(PREFIX);
    table.for_each(|name, file| {
        let len = name.len().min(MAX_NAME);
        path[PREFIX.len()..PREFIX.len() + len].copy_from_slice(&name[..len]);
        path[PREFIX.len() + len] = 0;
        // SAFETY: `path` is NUL-terminated; lstat and unlink are async-signal-safe system
        // calls that only read it (and write `st`, on our stack).
        unsafe {
            if let Some((dev, ino)) = file {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::lstat(path.as_ptr().cast(), &mut st) != 0
                    || st.st_dev != dev
                    || st.st_ino != ino
                {
                    return; // gone, or another file: not ours to unlink
                }
            }
            libc::unlink(path.as_ptr().cast());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_keeps_no_shared_memory_and_no_inherited_fds() {
        let (_region, _fd) = crate::Region::anonymous_with_fd("big", 1 << 20).unwrap();
        let tracker = Tracker::start().unwrap();
        let maps = format!("/proc/{}/maps", tracker.pid());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&maps).unwrap();
            let shared = text
                .lines()
                .filter_map(|l| shared_range(l.as_bytes()))
                .count();
            if shared == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still shared:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let fds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", tracker.pid()))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .collect();
        assert!(fds.iter().all(|&fd| fd <= 3), "{fds:?}");
        assert!(tracker.register("a/b", None).is_err() && tracker.register("..", None).is_err());
    }

    #[test]
    fn maps_lines_parse() {
        assert_eq!(
            shared_range(b"7f00-7f10 rw-s 00000000 00:01 12 /memfd:x (deleted)"),
            Some((0x7f00, 0x7f10))
        );
        assert_eq!(shared_range(b"7f00-7f10 rw-p 00000000 00:00 0"), None);
        assert_eq!(shared_range(b"garbage"), None);
    }

    fn unique(tag: &str) -> String {
        format!("mproc-sys-tracker-{tag}-{}", std::process::id())
    }

    fn exists(name: &str) -> bool {
        crate::shm_open_existing(name).is_ok()
    }

    #[test]
    fn an_empty_datagram_does_not_end_the_tracker() {
        let (first, second) = (unique("empty-first"), unique("empty-second"));
        drop(crate::shm_create(&first, 64).unwrap());
        drop(crate::shm_create(&second, 64).unwrap());
        let tracker = Tracker::start().unwrap();
        tracker.register(&first, None).unwrap();
        // A holder of the socket sends a datagram of no bytes: a read of 0, as at the end.
        // SAFETY: a send of no bytes from no buffer, on our own socket.
        let sent = unsafe { libc::send(tracker.sock.as_raw_fd(), std::ptr::null(), 0, 0) };
        assert_eq!(sent, 0);
        // The tracker is still there, holding the first name, and takes the second.
        tracker.register(&second, None).unwrap();
        assert!(
            exists(&first),
            "the tracker ended early and unlinked a live name"
        );
        let pid = tracker.pid();
        drop(tracker);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while crate::wait_pid(pid, false).unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the tracker did not end"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!exists(&first) && !exists(&second));
    }

    #[test]
    fn a_name_registered_at_a_file_is_unlinked_only_while_it_is_that_file() {
        let (replaced, same, bare) = (unique("replaced"), unique("same"), unique("bare"));
        // `replaced` is registered at its first file, then re-created: its first file is
        // still open, so the second cannot have its inode.
        let first = crate::shm_create(&replaced, 64).unwrap();
        let first_id = crate::file_identity(first.as_fd()).unwrap();
        crate::shm_unlink(&replaced).unwrap();
        let second = crate::shm_create(&replaced, 64).unwrap();
        assert_ne!(crate::file_identity(second.as_fd()).unwrap(), first_id);
        let same_fd = crate::shm_create(&same, 64).unwrap();
        let same_id = crate::file_identity(same_fd.as_fd()).unwrap();
        drop(crate::shm_create(&bare, 64).unwrap());
        let mut table = Table::new().unwrap();
        let mut msg = [0u8; MAX_REQUEST];
        for (name, file) in [
            (&replaced, Some(first_id)),
            (&same, Some(same_id)),
            (&bare, None),
            (&unique("never-created"), Some(same_id)),
        ] {
            let len = requests::encode(Op::Register, name.as_bytes(), file, &mut msg);
            assert!(table.apply(&msg[..len]));
        }
        unlink_registered(&table);
        assert!(exists(&replaced), "another file's name was unlinked");
        assert!(!exists(&same) && !exists(&bare));
        crate::shm_unlink(&replaced).unwrap();
    }

    #[test]
    fn the_tracker_unlinks_a_name_at_its_file_and_leaves_a_replaced_one() {
        let (kept, gone) = (unique("t-kept"), unique("t-gone"));
        let old = crate::shm_create(&kept, 64).unwrap();
        let old_id = crate::file_identity(old.as_fd()).unwrap();
        crate::shm_unlink(&kept).unwrap();
        let _new = crate::shm_create(&kept, 64).unwrap();
        let fd = crate::shm_create(&gone, 64).unwrap();
        let tracker = Tracker::start().unwrap();
        tracker.register(&kept, Some(old_id)).unwrap();
        tracker
            .register(&gone, Some(crate::file_identity(fd.as_fd()).unwrap()))
            .unwrap();
        // The last holder closes its end: the tracker unlinks and exits (a fork child of
        // another test may hold the socket for a while: wait, with a deadline).
        let pid = tracker.pid();
        drop(tracker);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while crate::wait_pid(pid, false).unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the tracker did not end"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(exists(&kept), "a replaced name was unlinked");
        assert!(!exists(&gone), "the tracker left its name");
        crate::shm_unlink(&kept).unwrap();
    }
}
