//! The shared arena: small shared objects (locks, values, arrays) are carved out of 64 KiB
//! memfd chunks, so that a thousand locks cost a few fds and mappings, not a thousand.
//!
//! Blocks are never reused: a chunk's memory goes back to the OS when the last process
//! that maps it drops its last block in it. That way no process can free memory another
//! one still uses, whatever order they end in (a fork child, a crash, a handle still in a
//! pipe), at the price of a chunk staying alive while any of its blocks does.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use mproc_sys::{Pinned, Region, ShmAtomic, ShmSafe};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};

/// The size of an arena chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Blocks larger than this get a chunk of their own.
const LARGE: usize = 16 * 1024;
/// Every block starts on its own cache line (no false sharing between locks).
pub const BLOCK_ALIGN: usize = 64;

struct Chunk {
    region: Arc<Region>,
    fd: OwnedFd,
    identity: (u64, u64),
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
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
static CACHE: Mutex<Option<ChunkCache>> = Mutex::new(None);

/// Chunks by file identity (device, inode).
type ChunkCache = HashMap<(u64, u64), Weak<Chunk>>;

/// The chunk this process allocates from, with its next free offset and the process that
/// owns the cursor (a fork child must not go on allocating from its parent's cursor).
static CURRENT: Mutex<Option<(u32, Arc<Chunk>, usize)>> = Mutex::new(None);

fn new_chunk(len: usize) -> Result<Arc<Chunk>> {
    let (region, fd) = Region::anonymous_with_fd("mproc-arena", len)
        .map_err(|e| Error::io("creating a shared arena chunk", e))?;
    let identity = mproc_sys::file_identity(fd.as_fd())
        .map_err(|e| Error::io("creating a shared arena chunk", e))?;
    let chunk = Arc::new(Chunk {
        region: Arc::new(region),
        fd,
        identity,
    });
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
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
    /// # Errors
    ///
    /// `NoSpace` or `Io` when a new chunk cannot be made.
    pub fn alloc(len: usize) -> Result<Block> {
        let len = len.max(1);
        if len > LARGE {
            let size = len.div_ceil(4096) * 4096;
            return Ok(Block {
                chunk: new_chunk(size)?,
                offset: 0,
                len,
            });
        }
        let rounded = len.div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
        let pid = std::process::id();
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        let usable = matches!(&*current, Some((owner, _, next)) if *owner == pid && next + rounded <= CHUNK_SIZE);
        if !usable {
            *current = Some((pid, new_chunk(CHUNK_SIZE)?, 0));
        }
        let (_, chunk, next) = current.as_mut().expect("set above");
        let block = Block {
            chunk: chunk.clone(),
            offset: *next,
            len,
        };
        *next += rounded;
        Ok(block)
    }

    /// Checks that values of `T` can live in blocks (aligned to at most 64 bytes).
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
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the block is empty (never: blocks are at least one byte).
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
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn pin<A: ShmAtomic>(&self, offset: usize) -> Result<Pinned<A>> {
        let at = self.at(offset, size_of::<A>())?;
        Pinned::new(&self.chunk.region, at).map_err(|e| Error::io("misaligned shared value", e))
    }

    /// Lends `count` atomics starting at `offset`.
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
    pub fn as_ptr(&self) -> *mut u8 {
        self.chunk.region.as_ptr().wrapping_add(self.offset)
    }
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
        let fd = fd.into_owned();
        let identity = mproc_sys::file_identity(fd.as_fd()).map_err(D::Error::custom)?;
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let map = cache.get_or_insert_with(HashMap::new);
        let known = map.get(&identity).and_then(Weak::upgrade);
        let chunk = match known {
            Some(chunk) if chunk.region.len() == chunk_len => chunk,
            Some(chunk) => {
                // Release the cache before the chunk (its drop takes the cache lock).
                drop(cache);
                drop(chunk);
                return Err(bad("its chunk length does not match the chunk"));
            }
            None => {
                // `map` refuses a length beyond the file's size.
                let region = Region::map(fd.as_fd(), chunk_len).map_err(|e| {
                    D::Error::custom(format!("cannot map a received shared block: {e}"))
                })?;
                let chunk = Arc::new(Chunk {
                    region: Arc::new(region),
                    fd,
                    identity,
                });
                map.insert(identity, Arc::downgrade(&chunk));
                chunk
            }
        };
        drop(cache);
        Ok(Block { chunk, offset, len })
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
