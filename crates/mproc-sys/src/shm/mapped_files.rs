//! The registry of files this process maps, by (device, inode): a file is never mapped both
//! as locks and as data, and a lock mapping that had to be leaked is handed out again.

use std::io;

/// Every file this process maps, by (device, inode): whether as locks, and how many
/// mappings. A file is never mapped both ways, so no data view of a lock ever exists in
/// this process; a lock file whose mapping had to be leaked stays registered for good.
static KINDS: std::sync::Mutex<Option<Kinds>> = std::sync::Mutex::new(None);

/// Holds the registry of mapped files until dropped: for fork handlers, so that a fork
/// child never inherits it locked by a thread that does not exist there.
#[must_use = "the registry is released when this is dropped"]
pub struct MappingsGuard(#[allow(dead_code)] std::sync::MutexGuard<'static, Option<Kinds>>);

impl std::fmt::Debug for MappingsGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MappingsGuard")
    }
}

/// Per file: mapped as locks?, how many live mappings, and a lock mapping that had to be
/// leaked (address, length), to be handed out again rather than mapped anew.
type Kinds = std::collections::HashMap<(u64, u64), Kind>;

#[derive(Debug)]
struct Kind {
    locks: bool,
    count: usize,
    leaked: Option<(usize, usize)>,
}

/// Locks the registry of mapped files (see [`MappingsGuard`]).
///
/// ```
/// drop(mproc_sys::hold_mappings());
/// ```
pub fn hold_mappings() -> MappingsGuard {
    MappingsGuard(KINDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Registers a new mapping of `identity`; returns a leaked lock mapping of that length to
/// reuse instead of mapping again, if there is one.
pub(super) fn register(identity: (u64, u64), locks: bool, len: usize) -> io::Result<Option<usize>> {
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
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
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = kinds.as_mut().and_then(|m| m.get_mut(&identity))
        && entry.leaked.is_none()
    {
        entry.leaked = Some((ptr, len));
    }
}

pub(super) fn unregister(identity: (u64, u64)) {
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = kinds.as_mut()
        && let Some(entry) = map.get_mut(&identity)
    {
        entry.count -= 1;
        if entry.count == 0 && entry.leaked.is_none() {
            map.remove(&identity);
        }
    }
}
