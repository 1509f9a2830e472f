//! The registry of files this process maps, by (device, inode): a file is never mapped both
//! as locks and as data, and a lock mapping that had to be leaked is handed out again.

use std::io;

use crate::{ForkLock, fork_order};

/// Every file this process maps, by (device, inode): whether as locks, and how many
/// mappings. A file is never mapped both ways, so no data view of a lock ever exists in
/// this process; a lock file whose mapping had to be leaked stays registered for good.
static KINDS: ForkLock<Option<Kinds>> = ForkLock::new(fork_order::MAPPED_FILES, None);

/// Per file: mapped as locks?, how many live mappings, and a lock mapping that had to be
/// leaked (address, length), to be handed out again rather than mapped anew.
type Kinds = std::collections::HashMap<(u64, u64), Kind>;

#[derive(Debug)]
struct Kind {
    locks: bool,
    count: usize,
    leaked: Option<(usize, usize)>,
}

/// Registers a new mapping of `identity`; returns a leaked lock mapping of that length to
/// reuse instead of mapping again, if there is one.
pub(super) fn register(identity: (u64, u64), locks: bool, len: usize) -> io::Result<Option<usize>> {
    let mut kinds = KINDS.lock();
    let entry = kinds
        .get_or_insert_with(Default::default)
        .entry(identity)
        .or_insert(Kind {
            locks,
            count: 0,
            leaked: None,
        });
    if entry.locks != locks {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            if locks {
                "this file is mapped as data here: it cannot be mapped as locks"
            } else {
                "this file holds locks here: it cannot be mapped as data"
            },
        ));
    }
    if let Some((ptr, leaked_len)) = entry.leaked
        && leaked_len == len
    {
        // The leaked mapping's count is still held: it simply has an owner again. Its
        // addresses are the ones this process's robust lists and held sets know.
        entry.leaked = None;
        return Ok(Some(ptr));
    }
    entry.count += 1;
    Ok(None)
}

/// Records that a lock mapping of `identity` is leaked (its count stays held).
pub(super) fn leak(identity: (u64, u64), ptr: usize, len: usize) {
    let mut kinds = KINDS.lock();
    if let Some(entry) = kinds.as_mut().and_then(|m| m.get_mut(&identity))
        && entry.leaked.is_none()
    {
        entry.leaked = Some((ptr, len));
    }
}

pub(super) fn unregister(identity: (u64, u64)) {
    let mut kinds = KINDS.lock();
    if let Some(map) = kinds.as_mut()
        && let Some(entry) = map.get_mut(&identity)
    {
        entry.count -= 1;
        if entry.count == 0 && entry.leaked.is_none() {
            map.remove(&identity);
        }
    }
}
