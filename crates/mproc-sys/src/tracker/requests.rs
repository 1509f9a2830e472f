//! The tracker's requests and its table of names: each datagram on its socket registers a
//! segment name or forgets it, perhaps together with the file (device and inode) the name
//! must still be for the tracker to unlink it, and may carry the write end of a pipe to
//! answer on.
//!
//! Everything here runs in the tracker child, which may be forked from a process with
//! threads: only async-signal-safe system calls, no allocation, no locks, no panics.
//!
//! A request is one datagram, an operation byte and then:
//!
//! - `+name`: unlink `name` when the last holder ends, whatever file it names then;
//! - `-name`: forget every registration of `name`;
//! - `=` device inode `name` (two little-endian u64s, then the name): unlink `name` only if
//!   it is still that file;
//! - `~` device inode `name`: forget the registration of `name` at that file only.
//!
//! A registration is a name and its file (or none): registering the same name at two files
//! keeps both. Anything else is ignored.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::MAX_NAME;

/// A segment's file: its device and inode number (as `file_identity` gives them).
pub type FileId = (u64, u64);

/// The longest request: the operation, a file, a name.
pub(super) const MAX_REQUEST: usize = 1 + 16 + MAX_NAME;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Register,
    Forget,
}

/// Writes the request `op` for `name` (at `file`, if any) into `buf`; returns its length.
/// The name must be at most `MAX_NAME` bytes (the caller has checked it).
pub(super) fn encode(
    op: Op,
    name: &[u8],
    file: Option<FileId>,
    buf: &mut [u8; MAX_REQUEST],
) -> usize {
    let name = &name[..name.len().min(MAX_NAME)];
    let start = match (op, file) {
        (Op::Register, None) | (Op::Forget, None) => {
            buf[0] = if op == Op::Register { b'+' } else { b'-' };
            1
        }
        (op, Some((dev, ino))) => {
            buf[0] = if op == Op::Register { b'=' } else { b'~' };
            buf[1..9].copy_from_slice(&dev.to_le_bytes());
            buf[9..17].copy_from_slice(&ino.to_le_bytes());
            17
        }
    };
    buf[start..start + name.len()].copy_from_slice(name);
    start + name.len()
}

/// Reads the request `msg`: its operation, name and file. `None` for anything malformed,
/// or a name that is never a segment's (empty, too long, with `/` or NUL, `.` or `..`).
fn decode(msg: &[u8]) -> Option<(Op, &[u8], Option<FileId>)> {
    let (&op, rest) = msg.split_first()?;
    let (op, file, name) = match op {
        b'+' => (Op::Register, None, rest),
        b'-' => (Op::Forget, None, rest),
        b'=' | b'~' => {
            let (dev, rest) = rest.split_first_chunk::<8>()?;
            let (ino, name) = rest.split_first_chunk::<8>()?;
            let file = (u64::from_le_bytes(*dev), u64::from_le_bytes(*ino));
            let op = if op == b'=' { Op::Register } else { Op::Forget };
            (op, Some(file), name)
        }
        _ => return None,
    };
    let never = name.is_empty()
        || name.len() > MAX_NAME
        || name.contains(&b'/')
        || name.contains(&0)
        || name == b"."
        || name == b"..";
    (!never).then_some((op, name, file))
}

/// One registration: a name, and the file it must still be (if `has_file` is 1).
#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    file: FileId,
    has_file: u8,
    len: u8,
    name: [u8; MAX_NAME],
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.len)]
    }

    fn file(&self) -> Option<FileId> {
        (self.has_file != 0).then_some(self.file)
    }
}

/// The registrations: `Entry`s in an anonymous mapping, grown by doubling.
pub(super) struct Table {
    /// The mapping: `cap` entries, the first `count` in use.
    entries: *mut Entry,
    cap: usize,
    count: usize,
}

impl Table {
    /// Maps an empty table of 64 entries; `None` when the OS refuses.
    pub(super) fn new() -> Option<Table> {
        let cap = 64;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap * size_of::<Entry>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (entries != libc::MAP_FAILED).then_some(Table {
            entries: entries.cast(),
            cap,
            count: 0,
        })
    }

    /// Entry `i`, which must be below `count`.
    fn entry(&self, i: usize) -> &Entry {
        debug_assert!(i < self.count);
        // SAFETY: entry `i < count <= cap` lies in the mapping (page-aligned, so aligned
        // for `Entry`) and was written whole by `apply`; every bit pattern is an `Entry`.
        unsafe { &*self.entries.add(i) }
    }

    /// The registrations in the table, each passed to `f` as a name and its file (if any).
    pub(super) fn for_each(&self, mut f: impl FnMut(&[u8], Option<FileId>)) {
        for i in 0..self.count {
            let entry = self.entry(i);
            f(entry.name(), entry.file());
        }
    }

    /// Applies the request `msg` (one whole datagram). Returns whether it was taken: the
    /// registration is in the table or needs no place there (a malformed request, which is
    /// ignored). Only a table that cannot grow refuses.
    pub(super) fn apply(&mut self, msg: &[u8]) -> bool {
        let Some((op, name, file)) = decode(msg) else {
            return true;
        };
        match op {
            Op::Register => {
                let known = (0..self.count).any(|i| {
                    let e = self.entry(i);
                    e.name() == name && e.file() == file
                });
                if known {
                    return true;
                }
                if self.count == self.cap && !self.grow() {
                    return false;
                }
                let mut entry = Entry {
                    file: file.unwrap_or((0, 0)),
                    has_file: u8::from(file.is_some()),
                    len: name.len() as u8, // at most MAX_NAME (decode checked)
                    name: [0; MAX_NAME],
                };
                entry.name[..name.len()].copy_from_slice(name);
                // SAFETY: entry `count < cap` lies in the mapping.
                unsafe { self.entries.add(self.count).write(entry) };
                self.count += 1;
            }
            Op::Forget => {
                let mut i = 0;
                while i < self.count {
                    let e = self.entry(i);
                    if e.name() == name && (file.is_none() || e.file() == file) {
                        self.count -= 1;
                        // SAFETY: entries `count` and `i <= count` lie in the mapping
                        // (`copy` allows them to be the same).
                        unsafe {
                            std::ptr::copy(self.entries.add(self.count), self.entries.add(i), 1)
                        };
                    } else {
                        i += 1;
                    }
                }
            }
        }
        true
    }

    /// Doubles the mapping; `false` when the OS refuses.
    fn grow(&mut self) -> bool {
        let size = self.cap * size_of::<Entry>();
        // SAFETY: the mapping is `size` bytes and ours alone; on success the old address
        // is no longer used.
        let grown =
            unsafe { libc::mremap(self.entries.cast(), size, 2 * size, libc::MREMAP_MAYMOVE) };
        if grown == libc::MAP_FAILED {
            return false;
        }
        self.entries = grown.cast();
        self.cap *= 2;
        true
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it any more.
        unsafe { libc::munmap(self.entries.cast(), self.cap * size_of::<Entry>()) };
    }
}

/// Receives requests on `sock` into `table` until every holder of the socket's other end
/// has closed it (or the socket fails), answering each request that carries a pipe.
pub(super) fn receive(sock: BorrowedFd<'_>, table: &mut Table) {
    // One byte more than the longest request, so that a longer one shows (and is ignored).
    let mut msg = [0u8; MAX_REQUEST + 1];
    // Room for the ancillary data of a few fds (aligned as `cmsghdr` needs).
    let mut control = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: msg.as_mut_ptr().cast(),
            iov_len: msg.len(),
        };
        // SAFETY: a zeroed msghdr is a valid empty one; it is filled in below.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: the header points to `msg` and `control`, which outlive the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) };
        // The write end of the requester's answer pipe, if the request carried one; any
        // other fd is closed.
        let mut answer = -1;
        // SAFETY: the kernel filled `control` with `msg_controllen` bytes of well-formed
        // control messages; the CMSG macros walk them within that length.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<i32>();
                    let fds =
                        ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize) / 4;
                    for k in 0..fds {
                        let fd = std::ptr::read_unaligned(data.add(k));
                        if answer < 0 {
                            answer = fd;
                        } else {
                            libc::close(fd);
                        }
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        // On a seqpacket socket, 0 is both the end (every holder closed its end) and an
        // empty datagram, which a holder may send: only the end stops the tracker.
        if n == 0 && peers_gone(sock) {
            break;
        }
        if n < 0 {
            // SAFETY: reads this thread's errno.
            match unsafe { *libc::__errno_location() } {
                libc::EINTR | libc::ENOMEM | libc::ENOBUFS => continue,
                _ => break,
            }
        }
        let taken = table.apply(&msg[..n as usize]);
        if answer >= 0 {
            // Taken: the requester may go on. Not taken: closed unwritten, as by a
            // tracker that died, and the requester registers with a new one.
            // SAFETY: `answer` is an fd the kernel just installed for us, ours to close.
            unsafe {
                if taken {
                    libc::write(answer, b"k".as_ptr().cast(), 1);
                }
                libc::close(answer);
            }
        }
    }
}

/// Whether every holder of the other end of `sock` has closed it (the kernel marks a
/// seqpacket socket whose peer is gone with `POLLHUP`).
fn peers_gone(sock: BorrowedFd<'_>) -> bool {
    let mut poll = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` is one valid pollfd on our stack; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready != 0 && poll.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Runs the tracker's receive loop in this process on `sock` (whose other end is closed
/// once the requests are sent) and returns the registrations it would unlink (each name
/// with its file, if any), without unlinking any: the fuzz target's entry point (built
/// with `cfg(fuzzing)` only). Ignores SIGPIPE in this process, as the tracker does in its
/// own (an answer pipe may have no reader).
#[cfg(fuzzing)]
pub fn fuzz_requests(sock: BorrowedFd<'_>) -> Vec<(Vec<u8>, Option<FileId>)> {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let Some(mut table) = Table::new() else {
        return Vec::new();
    };
    receive(sock, &mut table);
    let mut names = Vec::new();
    table.for_each(|name, file| names.push((name.to_vec(), file)));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registrations(table: &Table) -> Vec<(Vec<u8>, Option<FileId>)> {
        let mut all = Vec::new();
        table.for_each(|n, file| all.push((n.to_vec(), file)));
        all.sort();
        all
    }

    fn names(table: &Table) -> Vec<Vec<u8>> {
        registrations(table).into_iter().map(|(n, _)| n).collect()
    }

    fn request(op: Op, name: &[u8], file: Option<FileId>) -> Vec<u8> {
        let mut buf = [0u8; MAX_REQUEST];
        let n = encode(op, name, file, &mut buf);
        buf[..n].to_vec()
    }

    #[test]
    fn the_table_is_a_set_of_valid_names_and_grows() {
        let mut table = Table::new().unwrap();
        for i in 0..200 {
            assert!(table.apply(format!("+seg-{i}").as_bytes()));
        }
        assert!(table.apply(b"+seg-7")); // already there
        for i in (0..200).filter(|i| i % 2 == 0) {
            assert!(table.apply(format!("-seg-{i}").as_bytes()));
        }
        assert!(table.apply(b"-never-registered"));
        // Never names: ignored, and taken (the requester goes on).
        let too_long = [b'+'; MAX_NAME + 2];
        for bad in [
            &b"+a/b"[..],
            b"+..",
            b"+.",
            b"+a\0b",
            b"+",
            b"",
            b"?seg-1",
            b"=short",
            b"=0123456789abcdef",
            &too_long,
        ] {
            assert!(table.apply(bad));
        }
        let mut want: Vec<Vec<u8>> = (0..200)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("seg-{i}").into_bytes())
            .collect();
        want.sort();
        assert_eq!(names(&table), want);
        let longest = [b'x'; MAX_NAME];
        assert!(table.apply(&[&b"+"[..], &longest].concat()));
        assert!(names(&table).contains(&longest.to_vec()));
        assert!(table.apply(&request(Op::Register, &longest, Some((1, 2)))));
        assert!(registrations(&table).contains(&(longest.to_vec(), Some((1, 2)))));
    }

    #[test]
    fn registrations_at_a_file_are_kept_and_forgotten_one_by_one() {
        let mut table = Table::new().unwrap();
        let (a, b) = (Some((7, 100)), Some((7, u64::MAX)));
        for (name, file) in [(&b"seg"[..], a), (b"seg", b), (b"seg", a), (b"other", b)] {
            assert!(table.apply(&request(Op::Register, name, file)));
        }
        let seg = b"seg".to_vec();
        assert_eq!(
            registrations(&table),
            vec![
                (b"other".to_vec(), b),
                (seg.clone(), Some((7, 100))),
                (seg.clone(), Some((7, u64::MAX)))
            ]
        );
        // Forgetting at another file forgets nothing; at a file, that one only.
        assert!(table.apply(&request(Op::Forget, b"seg", Some((8, 100)))));
        assert!(table.apply(&request(Op::Forget, b"seg", a)));
        assert_eq!(
            registrations(&table),
            vec![(b"other".to_vec(), b), (seg.clone(), b)]
        );
        // Forgetting a name forgets it at every file, and without one.
        assert!(table.apply(&request(Op::Register, b"seg", None)));
        assert!(table.apply(&request(Op::Forget, b"seg", None)));
        assert_eq!(registrations(&table), vec![(b"other".to_vec(), b)]);
    }

    #[test]
    fn requests_decode_as_encoded() {
        for op in [Op::Register, Op::Forget] {
            for file in [None, Some((0, 0)), Some((3, 1 << 40))] {
                let msg = request(op, b"a-name", file);
                assert_eq!(decode(&msg), Some((op, &b"a-name"[..], file)));
            }
        }
    }
}
