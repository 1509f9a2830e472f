//! The shared arena: small shared objects (locks, values, arrays) are carved out of 64 KiB
//! memfd chunks, so that a thousand locks cost a few fds and mappings, not a thousand.
//!
//! Locks live in chunks of their own (lock regions: arrays of 64-byte `LockSlot`s), apart
//! from data. `mproc-sys` refuses to map a file as locks and as data in one process, so a
//! lying message cannot make memory that holds our locks writable to us as data.
//!
//! Blocks are never reused: a chunk's memory goes back to the OS when the last process
//! that maps it drops its last block in it. That way no process can free memory another
//! one still uses, whatever order they end in (a fork child, a crash, a handle still in a
//! pipe), at the price of a chunk staying alive while any of its blocks does.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};

use mproc_sys::{
    ForkLock, LOCK_SLOT, LockSlot, Pinned, PinnedPlain, Region, ShmAtomic, ShmSafe, fork_order,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};

/// The size of an arena chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Blocks larger than this get a chunk of their own.
const LARGE: usize = 16 * 1024;
/// Every block starts on its own cache line (no false sharing between locks).
pub const BLOCK_ALIGN: usize = 64;

pub(crate) struct Chunk {
    region: Arc<Region>,
    fd: OwnedFd,
    identity: (u64, u64),
}

impl Chunk {
    fn is_locks(&self) -> bool {
        self.region.is_lock_region()
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut cache = CACHE.lock();
        if let Some(map) = cache.as_mut()
            && map
                .get(&self.identity)
                .is_some_and(|w| w.strong_count() == 0)
        {
            map.remove(&self.identity);
        }
    }
}

/// Chunks mapped in this process, by file identity: a block received twice maps once.
static CACHE: ForkLock<Option<ChunkCache>> = ForkLock::new(fork_order::ARENA_CHUNKS, None);

/// Chunks by file identity (device, inode).
type ChunkCache = HashMap<(u64, u64), Weak<Chunk>>;

/// The chunks this process allocates data and locks from, each with its next free offset
/// and the process that owns the cursor (a fork child must not go on allocating from its
/// parent's cursor).
static CURRENT: ForkLock<[Option<Cursor>; 2]> =
    ForkLock::new(fork_order::ARENA_CURSORS, [None, None]);

type Cursor = (u32, Arc<Chunk>, usize);

fn new_chunk(len: usize, locks: bool) -> Result<Arc<Chunk>> {
    let made = if locks {
        Region::anonymous_locks_with_fd(len)
    } else {
        Region::anonymous_with_fd("mproc-arena", len)
    };
    let (region, fd) = made.map_err(|e| Error::io("creating a shared arena chunk", e))?;
    let identity = mproc_sys::file_identity(fd.as_fd())
        .map_err(|e| Error::io("creating a shared arena chunk", e))?;
    let chunk = Arc::new(Chunk {
        region: Arc::new(region),
        fd,
        identity,
    });
    let mut cache = CACHE.lock();
    cache
        .get_or_insert_with(HashMap::new)
        .insert(identity, Arc::downgrade(&chunk));
    Ok(chunk)
}

/// A piece of shared memory from the arena: zeroed when allocated, 64-byte aligned,
/// transferable (as a spawn argument, through a pipe) and inherited by fork.
///
/// The building block of the shared objects in `mproc-shm`, `mproc-sync` and
/// `mproc-queue`. Offsets are relative to the block and checked against its length.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// let block = mproc_shm::Block::alloc(128)?;
/// block.get::<AtomicU32>(0)?.store(5, Ordering::Relaxed);
/// block.write::<u64>(8, 9)?;
/// assert_eq!(block.read::<u32>(0)?, 5);
/// assert_eq!(block.read::<u64>(8)?, 9);
/// # Ok::<(), mproc_shm::Error>(())
/// ```
#[derive(Clone)]
pub struct Block {
    chunk: Arc<Chunk>,
    offset: usize,
    len: usize,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

fn oob(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{what} is outside the shared block"),
    )
}

impl Block {
    /// Allocates `len` zeroed bytes (at least one).
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(100)?;
    /// assert_eq!(block.len(), 100);
    /// assert_eq!(block.read::<u64>(0)?, 0); // zeroed
    /// assert_eq!(block.as_ptr() as usize % mproc_shm::BLOCK_ALIGN, 0);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NoSpace` or `Io` when a new chunk cannot be made.
    pub fn alloc(len: usize) -> Result<Block> {
        let len = len.max(1);
        if len > LARGE {
            let size = len.checked_next_multiple_of(4096).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    "a shared block cannot be that large",
                )
            })?;
            return Ok(Block {
                chunk: new_chunk(size, false)?,
                offset: 0,
                len,
            });
        }
        let (chunk, offset) = carve(len.next_multiple_of(BLOCK_ALIGN), false)?;
        Ok(Block { chunk, offset, len })
    }

    /// Checks that values of `T` can live in blocks (aligned to at most 64 bytes).
    ///
    /// ```
    /// use mproc_shm::Block;
    /// #[repr(align(128))]
    /// struct Wide(u8);
    /// assert!(Block::check_align::<u64>().is_ok());
    /// assert!(Block::check_align::<Wide>().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an over-aligned type.
    pub fn check_align<T>() -> Result<()> {
        if align_of::<T>() > BLOCK_ALIGN {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("shared values are aligned to at most {BLOCK_ALIGN} bytes"),
            ));
        }
        Ok(())
    }

    /// Returns the block's length in bytes.
    ///
    /// ```
    /// assert_eq!(mproc_shm::Block::alloc(10)?.len(), 10);
    /// assert_eq!(mproc_shm::Block::alloc(0)?.len(), 1); // at least one byte
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the block is empty (never: blocks are at least one byte).
    ///
    /// ```
    /// assert!(!mproc_shm::Block::alloc(0)?.is_empty());
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, offset: usize, size: usize) -> Result<usize> {
        match offset.checked_add(size) {
            Some(end) if end <= self.len => Ok(self.offset + offset),
            _ => Err(oob(&format!("{size} bytes at offset {offset}"))),
        }
    }

    /// Lends the atomic value at `offset`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let block = mproc_shm::Block::alloc(8)?;
    /// block.get::<AtomicU32>(4)?.fetch_add(3, Ordering::Relaxed);
    /// assert_eq!(block.read::<u32>(4)?, 3);
    /// assert!(block.get::<AtomicU32>(8).is_err()); // outside the block
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn get<A: ShmAtomic>(&self, offset: usize) -> Result<&A> {
        let at = self.at(offset, size_of::<A>())?;
        self.chunk
            .region
            .get(at)
            .map_err(|e| Error::io("misaligned shared value", e))
    }

    /// Lends the atomic value at `offset` through a handle that keeps the memory mapped,
    /// so that each later access is a plain dereference.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let block = mproc_shm::Block::alloc(8)?;
    /// let counter = block.pin::<AtomicU64>(0)?;
    /// drop(block); // the pinned handle keeps the memory mapped
    /// counter.fetch_add(1, Ordering::Relaxed);
    /// assert_eq!(counter.load(Ordering::Relaxed), 1);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn pin<A: ShmAtomic>(&self, offset: usize) -> Result<Pinned<A>> {
        let at = self.at(offset, size_of::<A>())?;
        Pinned::new(&self.chunk.region, at).map_err(|e| Error::io("misaligned shared value", e))
    }

    /// Lends the plain value at `offset`, checked once: each read or write through the
    /// handle is then a single copy (see [`PinnedPlain`]). The handle keeps the memory
    /// mapped.
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(16)?;
    /// let pair = block.pin_plain::<[u32; 2]>(8)?;
    /// pair.write([1, 2]);
    /// assert_eq!(block.read::<u32>(12)?, 2);
    /// assert!(block.pin_plain::<u64>(12).is_err()); // does not fit
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn pin_plain<T: ShmSafe>(&self, offset: usize) -> Result<PinnedPlain<T>> {
        let at = self.at(offset, size_of::<T>())?;
        PinnedPlain::new(&self.chunk.region, at)
            .map_err(|e| Error::io("misaligned shared value", e))
    }

    /// Lends `count` atomics starting at `offset`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let block = mproc_shm::Block::alloc(16)?;
    /// let words = block.get_slice::<AtomicU32>(0, 4)?;
    /// words[3].store(9, Ordering::Relaxed);
    /// assert_eq!(block.read::<u32>(12)?, 9);
    /// assert!(block.get_slice::<AtomicU32>(0, 5).is_err()); // does not fit
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit or are misaligned.
    pub fn get_slice<A: ShmAtomic>(&self, offset: usize, count: usize) -> Result<&[A]> {
        let size = size_of::<A>()
            .checked_mul(count)
            .ok_or_else(|| oob("the slice"))?;
        let at = self.at(offset, size)?;
        self.chunk
            .region
            .get_slice(at, count)
            .map_err(|e| Error::io("misaligned shared slice", e))
    }

    /// Copies the value at `offset` out.
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(16)?;
    /// block.write::<i16>(2, -7)?;
    /// assert_eq!(block.read::<i16>(2)?, -7);
    /// assert!(block.read::<u64>(12).is_err()); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn read<T: ShmSafe>(&self, offset: usize) -> Result<T> {
        let at = self.at(offset, size_of::<T>())?;
        self.chunk
            .region
            .read(at)
            .map_err(|e| Error::io("misaligned shared value", e))
    }

    /// Copies `value` in at `offset`.
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(16)?;
    /// block.write::<[u32; 2]>(8, [1, 2])?;
    /// assert_eq!(block.read::<u32>(12)?, 2);
    /// assert!(block.write::<u32>(3, 1).is_err()); // misaligned
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn write<T: ShmSafe>(&self, offset: usize, value: T) -> Result<()> {
        let at = self.at(offset, size_of::<T>())?;
        self.chunk
            .region
            .write(at, value)
            .map_err(|e| Error::io("misaligned shared value", e))
    }

    /// Copies values starting at `offset` into `dst`.
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(16)?;
    /// block.copy_from(0, &[1u16, 2, 3])?;
    /// let mut out = [0u16; 2];
    /// block.copy_to(2, &mut out)?; // elements 1 and 2
    /// assert_eq!(out, [2, 3]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit or are misaligned.
    pub fn copy_to<T: ShmSafe>(&self, offset: usize, dst: &mut [T]) -> Result<()> {
        let at = self.at(offset, size_of_val(dst))?;
        self.chunk
            .region
            .copy_to(at, dst)
            .map_err(|e| Error::io("misaligned shared slice", e))
    }

    /// Copies `src` in, starting at `offset`.
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(8)?;
    /// block.copy_from(4, &[9u8, 8, 7, 6])?;
    /// assert_eq!(block.read::<[u8; 4]>(4)?, [9, 8, 7, 6]);
    /// assert!(block.copy_from(6, &[0u8; 4]).is_err()); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit or are misaligned.
    pub fn copy_from<T: ShmSafe>(&self, offset: usize, src: &[T]) -> Result<()> {
        let at = self.at(offset, size_of_val(src))?;
        self.chunk
            .region
            .copy_from(at, src)
            .map_err(|e| Error::io("misaligned shared slice", e))
    }

    /// Returns a pointer to the block's first byte (valid for [`len`](Block::len) bytes
    /// while the block lives; other processes may write there at any time).
    ///
    /// ```
    /// let block = mproc_shm::Block::alloc(8)?;
    /// block.write::<u8>(5, 42)?;
    /// let p = block.as_ptr();
    /// // SAFETY: byte 5 is inside the block, which `block` keeps mapped; nobody else writes to it.
    /// assert_eq!(unsafe { p.add(5).read_volatile() }, 42);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.chunk.region.as_ptr().wrapping_add(self.offset)
    }
}

/// Takes `size` bytes from this process's current chunk of the kind, starting a new chunk
/// when it is full (or was inherited from a parent by fork).
fn carve(size: usize, locks: bool) -> Result<(Arc<Chunk>, usize)> {
    let pid = std::process::id();
    let mut current = CURRENT.lock();
    let cursor = &mut current[locks as usize];
    let usable =
        matches!(&*cursor, Some((owner, _, next)) if *owner == pid && next + size <= CHUNK_SIZE);
    if !usable {
        *cursor = Some((pid, new_chunk(CHUNK_SIZE, locks)?, 0));
    }
    let (_, chunk, next) = cursor.as_mut().expect("set above");
    let offset = *next;
    *next += size;
    Ok((chunk.clone(), offset))
}

/// Maps (or finds already mapped) the chunk behind a received fd, of the kind the message
/// says, refusing a file this process already maps as the other kind.
fn received_chunk(
    fd: OwnedFd,
    chunk_len: usize,
    locks: bool,
) -> std::result::Result<Arc<Chunk>, String> {
    if !mproc_sys::is_size_sealed(fd.as_fd()) {
        // Anyone holding an unsealed file could shrink it under our mapping (SIGBUS).
        return Err("the chunk is not a size-sealed memfd".into());
    }
    let identity = mproc_sys::file_identity(fd.as_fd()).map_err(|e| e.to_string())?;
    let mut cache = CACHE.lock();
    let map = cache.get_or_insert_with(HashMap::new);
    let known = map.get(&identity).and_then(Weak::upgrade);
    let result = match known {
        Some(chunk) if chunk.region.len() == chunk_len && chunk.is_locks() == locks => Ok(chunk),
        Some(chunk) => Err(Some(chunk)),
        None => {
            // `map` refuses a length beyond the file's size.
            let mapped = if locks {
                Region::map_locks(fd.as_fd(), chunk_len)
            } else {
                Region::map(fd.as_fd(), chunk_len)
            };
            match mapped {
                Ok(region) => {
                    let chunk = Arc::new(Chunk {
                        region: Arc::new(region),
                        fd,
                        identity,
                    });
                    map.insert(identity, Arc::downgrade(&chunk));
                    Ok(chunk)
                }
                Err(e) => {
                    drop(cache);
                    return Err(format!("cannot map a received shared block: {e}"));
                }
            }
        }
    };
    // Release the cache before any chunk is dropped (its drop takes the cache lock).
    drop(cache);
    result.map_err(|chunk| {
        drop(chunk);
        "its length or kind does not match the chunk already mapped".to_string()
    })
}

/// Sent as its chunk's fd, the chunk's length, and where the block lies in it.
impl Serialize for Block {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (
            mproc_wire::FdRef(self.chunk.fd.as_fd()),
            self.chunk.region.len() as u64,
            self.offset as u64,
            self.len as u64,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (fd, chunk_len, offset, len): (mproc_wire::Fd, u64, u64, u64) =
            Deserialize::deserialize(d)?;
        let bad = |what: &str| D::Error::custom(format!("received a bad shared block: {what}"));
        let (chunk_len, offset, len) = (
            usize::try_from(chunk_len).map_err(|_| bad("chunk length"))?,
            usize::try_from(offset).map_err(|_| bad("offset"))?,
            usize::try_from(len).map_err(|_| bad("length"))?,
        );
        if !offset.is_multiple_of(BLOCK_ALIGN)
            || offset.checked_add(len).is_none_or(|e| e > chunk_len)
        {
            return Err(bad("the block is not inside its chunk"));
        }
        let chunk = received_chunk(fd.into_owned(), chunk_len, false).map_err(|e| bad(&e))?;
        Ok(Block { chunk, offset, len })
    }
}

/// A lock slot from the arena's lock chunks: a robust mutex and six atomic words, zero when
/// allocated, transferable and inherited by fork. The building block of `mproc-sync`.
///
/// ```
/// use mproc_sys::LockStatus;
/// let block = mproc_shm::LockBlock::alloc()?;
/// let slot = block.slot();
/// assert_eq!(slot.mutex().lock(None), LockStatus::Acquired);
/// slot.mutex().unlock()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LockBlock {
    chunk: Arc<Chunk>,
    slot: Pinned<LockSlot>,
    offset: usize,
}

impl fmt::Debug for LockBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockBlock")
            .field("offset", &self.offset)
            .finish()
    }
}

impl LockBlock {
    /// Allocates a zeroed lock slot.
    ///
    /// ```
    /// let block = mproc_shm::LockBlock::alloc()?;
    /// assert!(!block.slot().mutex().is_locked()); // zeroed: unlocked
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NoSpace` or `Io` when a new chunk cannot be made.
    pub fn alloc() -> Result<LockBlock> {
        let (chunk, offset) = carve(LOCK_SLOT, true)?;
        Self::at(chunk, offset).map_err(|e| Error::new(ErrorKind::Io, e))
    }

    fn at(chunk: Arc<Chunk>, offset: usize) -> std::result::Result<LockBlock, String> {
        let slot = Pinned::lock_slot(&chunk.region, offset).map_err(|e| e.to_string())?;
        Ok(LockBlock {
            chunk,
            slot,
            offset,
        })
    }

    /// Returns the slot: a pinned pointer, so each access is a plain dereference.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let block = mproc_shm::LockBlock::alloc()?;
    /// block.slot().words()[0].store(3, Ordering::Relaxed); // six words beside the mutex
    /// let same = block.clone();
    /// assert_eq!(same.slot().words()[0].load(Ordering::Relaxed), 3);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    #[inline]
    pub fn slot(&self) -> &Pinned<LockSlot> {
        &self.slot
    }
}

/// Sent as its chunk's fd, the chunk's length, and the slot's offset.
impl Serialize for LockBlock {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (
            mproc_wire::FdRef(self.chunk.fd.as_fd()),
            self.chunk.region.len() as u64,
            self.offset as u64,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LockBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (fd, chunk_len, offset): (mproc_wire::Fd, u64, u64) = Deserialize::deserialize(d)?;
        let bad = |what: &str| D::Error::custom(format!("received a bad lock: {what}"));
        let chunk_len = usize::try_from(chunk_len).map_err(|_| bad("chunk length"))?;
        let offset = usize::try_from(offset).map_err(|_| bad("offset"))?;
        if !offset.is_multiple_of(LOCK_SLOT)
            || offset.checked_add(LOCK_SLOT).is_none_or(|e| e > chunk_len)
        {
            return Err(bad("the slot is not inside its chunk"));
        }
        let chunk = received_chunk(fd.into_owned(), chunk_len, true).map_err(|e| bad(&e))?;
        LockBlock::at(chunk, offset).map_err(|e| bad(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_share_chunks_and_a_received_block_maps_its_chunk_once() {
        let a = Block::alloc(40).unwrap();
        let b = Block::alloc(100).unwrap();
        assert!(Arc::ptr_eq(&a.chunk, &b.chunk));
        assert_eq!(b.offset, a.offset + 64);
        let a2: Block = mproc_wire::decode(mproc_wire::encode(&a).unwrap()).unwrap();
        let b2: Block = mproc_wire::decode(mproc_wire::encode(&b).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a2.chunk, &a.chunk));
        assert!(Arc::ptr_eq(&b2.chunk, &a.chunk));
        a2.write::<u64>(0, 11).unwrap();
        assert_eq!(a.read::<u64>(0).unwrap(), 11);
        assert!(a.read::<u64>(40).is_err(), "past the end of the block");
        assert!(a.read::<u64>(4).is_err(), "misaligned");
    }

    #[test]
    fn lock_chunks_and_data_are_never_taken_for_each_other() {
        let lock = LockBlock::alloc().unwrap();
        let data = Block::alloc(64).unwrap();
        let lock_fd = mproc_wire::FdRef(lock.chunk.fd.as_fd());
        let data_fd = mproc_wire::FdRef(data.chunk.fd.as_fd());
        let n = CHUNK_SIZE as u64;
        // A lock chunk sent as data, and data sent as a lock.
        let msg = mproc_wire::encode(&(lock_fd, n, 0u64, 64u64)).unwrap();
        assert!(mproc_wire::decode::<Block>(msg).is_err());
        let msg = mproc_wire::encode(&(data_fd, n, 0u64)).unwrap();
        assert!(mproc_wire::decode::<LockBlock>(msg).is_err());
        // A lock chunk sent as a shared memory segment, and a segment sent as a lock.
        let msg = mproc_wire::encode(&(None::<String>, lock_fd, n)).unwrap();
        assert!(mproc_wire::decode::<crate::SharedMemory>(msg).is_err());
        let shm = crate::SharedMemory::create(4096).unwrap();
        let msg = mproc_wire::encode(&shm).unwrap();
        let (_, fd, _): (Option<String>, mproc_wire::Fd, u64) = mproc_wire::decode(msg).unwrap();
        let msg = mproc_wire::encode(&(mproc_wire::FdRef(fd.as_fd()), 4096u64, 0u64)).unwrap();
        assert!(mproc_wire::decode::<LockBlock>(msg).is_err());
        // An anonymous segment whose size could be changed under us is refused.
        let loose = mproc_sys::memfd_create("loose").unwrap();
        nix_free_truncate(&loose, 4096);
        let msg = mproc_wire::encode(&(None::<String>, mproc_wire::FdRef(loose.as_fd()), 4096u64))
            .unwrap();
        assert!(mproc_wire::decode::<crate::SharedMemory>(msg).is_err());
        // The honest round trips work.
        let back: LockBlock = mproc_wire::decode(mproc_wire::encode(&lock).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&back.chunk, &lock.chunk));
        // A lock region lends nothing but its slots.
        assert!(lock.chunk.region.read::<u64>(0).is_err());
        assert!(
            lock.chunk
                .region
                .get::<std::sync::atomic::AtomicU64>(32)
                .is_err()
        );
        assert!(lock.chunk.region.fill(0, 8, 0).is_err());
    }

    fn nix_free_truncate(fd: &OwnedFd, len: u64) {
        std::fs::File::from(fd.try_clone().unwrap())
            .set_len(len)
            .unwrap();
    }

    #[test]
    fn a_lock_chunk_held_by_a_forgotten_guard_stays_mapped() {
        // Hold the first lock of a chunk without a guard, move the arena past that chunk,
        // drop every handle: the chunk must stay mapped, since the thread's robust list
        // still points into it.
        std::thread::spawn(|| {
            let held = loop {
                let l = LockBlock::alloc().unwrap();
                if l.offset == 0 {
                    break l;
                }
            };
            let more: Vec<LockBlock> = (0..CHUNK_SIZE / LOCK_SLOT)
                .map(|_| LockBlock::alloc().unwrap())
                .collect();
            assert!(more.iter().any(|l| !Arc::ptr_eq(&l.chunk, &held.chunk)));
            assert_eq!(
                held.slot().mutex().lock(None),
                mproc_sys::LockStatus::Acquired
            );
            let sent = mproc_wire::encode(&held).unwrap(); // the lock, on its way elsewhere
            drop(more);
            drop(held);
            // More locking goes through the list the kernel will walk at thread exit.
            let other = LockBlock::alloc().unwrap();
            assert_eq!(
                other.slot().mutex().lock(None),
                mproc_sys::LockStatus::Acquired
            );
            other.slot().mutex().unlock().unwrap();
            // The lock comes back: the same mapping, so its holder can release it.
            let back: LockBlock = mproc_wire::decode(sent).unwrap();
            back.slot().mutex().unlock().unwrap();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_lying_block_is_refused() {
        let a = Block::alloc(8).unwrap();
        let fd = mproc_wire::FdRef(a.chunk.fd.as_fd());
        for (chunk_len, offset, len) in [
            (CHUNK_SIZE as u64 * 2, 0u64, 8u64),
            (CHUNK_SIZE as u64, CHUNK_SIZE as u64 - 4, 8),
            (CHUNK_SIZE as u64, 3, 8),
            (64, 0, 8),
            (u64::MAX, 0, 8),
        ] {
            let msg = mproc_wire::encode(&(fd, chunk_len, offset, len)).unwrap();
            assert!(mproc_wire::decode::<Block>(msg).is_err());
        }
    }
}
