//! The tracker's requests and its table of names: each datagram on its socket registers
//! (`+name`) or forgets (`-name`) a segment name, and may carry the write end of a pipe to
//! answer on.
//!
//! Everything here runs in the tracker child, which may be forked from a process with
//! threads: only async-signal-safe system calls, no allocation, no locks, no panics.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::ENTRY;

/// The names to unlink: entries of `ENTRY` bytes (the name's length, then the name) in an
/// anonymous mapping, grown by doubling.
pub(super) struct Table {
    /// The mapping: `cap` entries, the first `count` in use.
    entries: *mut u8,
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
                cap * ENTRY,
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

    /// The names in the table, each passed to `f`.
    pub(super) fn for_each(&self, mut f: impl FnMut(&[u8])) {
        for i in 0..self.count {
            // SAFETY: entry `i < count <= cap` lies in the mapping; its first byte is the
            // length of the name after it (at most `ENTRY - 1`, as `apply` wrote it).
            let name = unsafe {
                let e = self.entries.add(i * ENTRY);
                std::slice::from_raw_parts(e.add(1), usize::from(*e))
            };
            f(name);
        }
    }

    /// Applies the request `msg` (one whole datagram: the operation, then the name).
    /// Returns whether it was taken: the name is in the table or needs no place there (a
    /// malformed request, which is ignored). Only a table that cannot grow refuses.
    pub(super) fn apply(&mut self, msg: &[u8]) -> bool {
        if !(2..=ENTRY).contains(&msg.len()) {
            return true;
        }
        let name = &msg[1..];
        if name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".." {
            return true; // never a segment name: never unlinked
        }
        let mut found = None;
        self.for_each_index(|i, entry| {
            if found.is_none() && entry == name {
                found = Some(i);
            }
        });
        match (msg[0], found) {
            (b'+', None) => {
                if self.count == self.cap && !self.grow() {
                    return false;
                }
                // SAFETY: entry `count < cap` lies in the mapping; the name is at most
                // `ENTRY - 1` bytes (checked above), its length fits the first byte.
                unsafe {
                    let e = self.entries.add(self.count * ENTRY);
                    *e = name.len() as u8;
                    std::ptr::copy_nonoverlapping(name.as_ptr(), e.add(1), name.len());
                }
                self.count += 1;
            }
            (b'-', Some(i)) => {
                self.count -= 1;
                if i != self.count {
                    // SAFETY: entries `i` and `count` are distinct entries of the mapping.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.entries.add(self.count * ENTRY),
                            self.entries.add(i * ENTRY),
                            ENTRY,
                        );
                    }
                }
            }
            _ => {}
        }
        true
    }

    fn for_each_index(&self, mut f: impl FnMut(usize, &[u8])) {
        let mut i = 0;
        self.for_each(|name| {
            f(i, name);
            i += 1;
        });
    }

    /// Doubles the mapping; `false` when the OS refuses.
    fn grow(&mut self) -> bool {
        // SAFETY: the mapping is `cap * ENTRY` bytes and ours alone; on success the old
        // address is no longer used.
        let grown = unsafe {
            libc::mremap(
                self.entries.cast(),
                self.cap * ENTRY,
                2 * self.cap * ENTRY,
                libc::MREMAP_MAYMOVE,
            )
        };
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
        unsafe { libc::munmap(self.entries.cast(), self.cap * ENTRY) };
    }
}

/// Receives requests on `sock` into `table` until every holder of the socket's other end
/// has closed it (or the socket fails), answering each request that carries a pipe.
pub(super) fn receive(sock: BorrowedFd<'_>, table: &mut Table) {
    let mut msg = [0u8; ENTRY + 1];
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
        if n == 0 {
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

/// Runs the tracker's receive loop in this process on `sock` (whose other end is closed
/// once the requests are sent) and returns the names it would unlink, without unlinking
/// any: the fuzz target's entry point (built with `cfg(fuzzing)` only). Ignores SIGPIPE in
/// this process, as the tracker does in its own (an answer pipe may have no reader).
#[cfg(fuzzing)]
pub fn fuzz_requests(sock: BorrowedFd<'_>) -> Vec<Vec<u8>> {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let Some(mut table) = Table::new() else {
        return Vec::new();
    };
    receive(sock, &mut table);
    let mut names = Vec::new();
    table.for_each(|name| names.push(name.to_vec()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(table: &Table) -> Vec<Vec<u8>> {
        let mut names = Vec::new();
        table.for_each(|n| names.push(n.to_vec()));
        names.sort();
        names
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
        for bad in [
            &b"+a/b"[..],
            b"+..",
            b"+.",
            b"+a\0b",
            b"+",
            b"",
            &[b'+'; ENTRY + 1],
        ] {
            assert!(table.apply(bad));
        }
        let mut want: Vec<Vec<u8>> = (0..200)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("seg-{i}").into_bytes())
            .collect();
        want.sort();
        assert_eq!(names(&table), want);
        let longest = [b'x'; ENTRY - 1];
        assert!(table.apply(&[&b"+"[..], &longest].concat()));
        assert!(names(&table).contains(&longest.to_vec()));
    }
}
