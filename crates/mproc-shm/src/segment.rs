//! `SharedMemory`: a segment of bytes shared between processes, anonymous (a memfd passed
//! by fd) or named (`/dev/shm`, reserved up front, made under a tracked temporary name and
//! tracked until its process tree ends).

use std::collections::HashSet;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use mproc_sys::{FileId, ForkLock, Region, ShmAtomic, ShmSafe, Tracker, fork_order};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};

/// A block of memory shared between processes. Python: `shared_memory.SharedMemory`.
///
/// [`create`](SharedMemory::create) makes an anonymous segment: a memfd that travels by fd
/// (as a spawn argument, through a pipe, or inherited by fork), so there is no name to
/// leak and nothing is left in `/dev/shm` whatever happens.
/// [`create_named`](SharedMemory::create_named) makes a segment other programs can
/// [`open`](SharedMemory::open) by name.
///
/// Access is by copies ([`read_at`](SharedMemory::read_at),
/// [`write_at`](SharedMemory::write_at), [`read`](SharedMemory::read),
/// [`write`](SharedMemory::write)) and by atomics ([`atomics`](SharedMemory::atomics)): another process can write at any
/// moment, so no plain reference into the memory is ever handed out. Use a lock from
/// `mproc-sync` (or atomics) to agree on who writes when; [`as_ptr`](SharedMemory::as_ptr)
/// is there for code that manages its own access.
///
/// Clones share one mapping; dropping the last handle unmaps it in this process only
/// (Python's `close()`).
///
/// ```
/// use mproc_shm::SharedMemory;
/// let shm = SharedMemory::create(4096)?;
/// shm.write_at(0, b"hello")?;
/// let mut buf = [0u8; 5];
/// shm.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert_eq!(shm.len(), 4096);
/// # Ok::<(), mproc_shm::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    mapped: Arc<Mapped>,
    name: Option<String>,
}

/// The mapping and the fd behind it, shared by the clones of a handle.
struct Mapped {
    region: Region,
    fd: OwnedFd,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("len", &self.len())
            .finish()
    }
}

fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "a shared memory segment needs a size greater than zero",
        ));
    }
    Ok(())
}

fn range_error(e: std::io::Error) -> Error {
    Error::io("out of the segment's range", e)
}

/// Steps (1) to (3) of [`SharedMemory::create_named_as`], once the temporary name `temp`
/// is tracked: on failure, `temp` is unlinked and `name` forgotten at its file.
fn create_under<T>(
    temp: &str,
    name: &str,
    size: usize,
    build: impl FnOnce(SharedMemory) -> Result<T>,
) -> Result<T> {
    let context = || format!("creating shared memory segment {name:?}");
    let fd = mproc_sys::shm_create(temp, size).map_err(|e| Error::io(context(), e))?;
    let named = || -> Result<T> {
        let file = mproc_sys::file_identity(fd.as_fd()).map_err(|e| Error::io(context(), e))?;
        let region = Region::map(fd.as_fd(), size).map_err(|e| Error::io(context(), e))?;
        let shm = SharedMemory {
            mapped: Arc::new(Mapped { region, fd }),
            name: Some(name.to_string()),
        };
        track(name, Some(file))?;
        let renamed = build(shm).and_then(|built| {
            mproc_sys::shm_rename_noreplace(temp, name)
                .map(|()| built)
                .map_err(|e| Error::io(context(), e))
        });
        if renamed.is_err() {
            untrack(name, Some(file));
        }
        renamed
    };
    let made = named();
    if made.is_err() {
        let _ = mproc_sys::shm_unlink(temp);
    }
    made
}

impl SharedMemory {
    /// Creates an anonymous segment of `size` zeroed bytes.
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(100)?;
    /// assert_eq!((shm.len(), shm.name()), (100, None)); // anonymous
    /// assert_eq!(shm.read::<u64>(0)?, 0); // zeroed
    /// assert!(mproc_shm::SharedMemory::create(0).is_err());
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero size; `NoSpace` or `Io` from the OS.
    pub fn create(size: usize) -> Result<Self> {
        check_size(size)?;
        let (region, fd) = Region::anonymous_with_fd("mproc-shm", size)
            .map_err(|e| Error::io("creating a shared memory segment", e))?;
        Ok(SharedMemory {
            mapped: Arc::new(Mapped { region, fd }),
            name: None,
        })
    }

    /// Creates the named segment `/dev/shm/<name>` of `size` zeroed bytes, mode 0600.
    ///
    /// Its pages are reserved now, so a full `/dev/shm` fails here (`NoSpace`) instead of
    /// killing a process with SIGBUS later. The name is tracked: when this process and
    /// its fork children have all ended, however they ended (SIGKILL included), a tracker
    /// process unlinks it, unless [`unlink`](SharedMemory::unlink) or
    /// [`untrack`](SharedMemory::untrack) came first. Processes that
    /// [`open`](SharedMemory::open) the name never take ownership.
    ///
    /// The name never leaks, wherever this process is killed (SIGKILL included) inside
    /// this call: the segment is made under a tracked temporary name (`name`, cut to fit,
    /// then `.mproc-tmp-<pid>-<random>`), and renamed to `name` (never replacing an
    /// existing segment) only once the tracker holds `name` at the segment's inode. The
    /// name appears whole, at its full size; an `AlreadyExists` failure leaves the
    /// existing segment, and its own tracking, as they were.
    ///
    /// ```
    /// use mproc_shm::{ErrorKind, SharedMemory};
    /// let name = format!("mproc-doc-{}", std::process::id());
    /// let shm = SharedMemory::create_named(&name, 100)?;
    /// let other = SharedMemory::open(&name)?;
    /// other.write::<u32>(0, 7)?;
    /// assert_eq!(shm.read::<u32>(0)?, 7);
    /// assert_eq!(SharedMemory::create_named(&name, 1).unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// shm.unlink()?;
    /// assert_eq!(SharedMemory::open(&name).unwrap_err().kind(), ErrorKind::NotFound);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero size or a bad name (empty, over 250 bytes, or holding
    /// `/` or NUL); `AlreadyExists`; `NoSpace`; `Io`. Nothing is left behind.
    pub fn create_named(name: &str, size: usize) -> Result<Self> {
        Self::create_named_as(name, size, Ok)
    }

    /// Creates the named segment `name` as [`create_named`](SharedMemory::create_named)
    /// does, and has `build` fill it (given a handle already named `name`) before the
    /// name appears: whoever opens `name` finds what `build` wrote.
    ///
    /// The steps, each safe to be killed at (the tracker unlinks what it holds once the
    /// tree has ended): (1) a temporary name is tracked, then created (`O_EXCL`), mapped
    /// and its inode read; (2) `name` is tracked *at that inode*; (3) the file is renamed
    /// to `name`, never replacing one; (4) the temporary name is forgotten. Killed before
    /// (2), only the temporary name exists and is unlinked; between (2) and (3), `name` is
    /// absent or another file and is left alone; after (3), `name` is that inode and goes.
    ///
    /// (1) does not wait for the tracker's answer: its request is in the socket before
    /// the file exists, a creator killed after sending it leaves it there for the tracker
    /// to read, and the answer to (2), which comes after it on the same socket, confirms
    /// both (a tracker that died in between fails (2), and its successor is given every
    /// name, the temporary one included).
    pub(crate) fn create_named_as<T>(
        name: &str,
        size: usize,
        build: impl FnOnce(SharedMemory) -> Result<T>,
    ) -> Result<T> {
        check_size(size)?;
        let context = || format!("creating shared memory segment {name:?}");
        let temp = mproc_sys::shm_temporary_name(name).map_err(|e| Error::io(context(), e))?;
        track_ahead(&temp)?;
        let made = create_under(&temp, name, size, build);
        untrack(&temp, None);
        made
    }

    /// Opens the named segment `/dev/shm/<name>`, whatever its size. Opening never takes
    /// ownership: only the creator's tree unlinks it.
    ///
    /// ```
    /// use mproc_shm::SharedMemory;
    /// let name = format!("mproc-doc-open-{}", std::process::id());
    /// let shm = SharedMemory::create_named(&name, 64)?;
    /// shm.write_at(0, b"hi")?;
    /// let other = SharedMemory::open(&name)?; // as another program would
    /// assert_eq!(other.read::<u8>(1)?, b'i');
    /// shm.unlink()?;
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound`; `InvalidInput` for a bad name; `Io`.
    pub fn open(name: &str) -> Result<Self> {
        let context = || format!("opening shared memory segment {name:?}");
        let fd = mproc_sys::shm_open_existing(name).map_err(|e| Error::io(context(), e))?;
        let size = mproc_sys::file_size(fd.as_fd()).map_err(|e| Error::io(context(), e))?;
        let region = Region::map(fd.as_fd(), size as usize).map_err(|e| Error::io(context(), e))?;
        Ok(SharedMemory {
            mapped: Arc::new(Mapped { region, fd }),
            name: Some(name.to_string()),
        })
    }

    /// Removes the segment's name (Python: `unlink()`). Mappings stay valid; the memory is
    /// freed when the last one goes. The tracker forgets the name.
    ///
    /// ```
    /// use mproc_shm::{ErrorKind, SharedMemory};
    /// let name = format!("mproc-doc-unlink-{}", std::process::id());
    /// let shm = SharedMemory::create_named(&name, 64)?;
    /// shm.unlink()?;
    /// shm.write::<u8>(0, 1)?; // the mapping stays valid
    /// assert_eq!(SharedMemory::open(&name).unwrap_err().kind(), ErrorKind::NotFound);
    /// assert_eq!(SharedMemory::create(64)?.unlink().unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an anonymous segment; `NotFound` if the name is already gone.
    pub fn unlink(&self) -> Result<()> {
        let name = self.name.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "an anonymous segment has no name to unlink",
            )
        })?;
        mproc_sys::shm_unlink(name)
            .map_err(|e| Error::io(format!("unlinking shared memory segment {name:?}"), e))?;
        untrack(name, self.file());
        Ok(())
    }

    /// Stops tracking this named segment: it outlives the process tree that created it
    /// (until someone calls [`unlink`](SharedMemory::unlink)). Python: `track=False`.
    ///
    /// ```
    /// use mproc_shm::SharedMemory;
    /// let name = format!("mproc-doc-untrack-{}", std::process::id());
    /// let shm = SharedMemory::create_named(&name, 64)?;
    /// shm.untrack(); // it outlives this process tree now...
    /// drop(shm);
    /// SharedMemory::open(&name)?.unlink()?; // ...until someone unlinks it
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn untrack(&self) {
        if let Some(name) = &self.name {
            untrack(name, self.file());
        }
    }

    /// The file behind this handle, as the tracker holds its name; `None` (every
    /// registration of the name) should fstat fail.
    fn file(&self) -> Option<FileId> {
        mproc_sys::file_identity(self.mapped.fd.as_fd()).ok()
    }

    /// Returns the size in bytes (Python: `size`).
    ///
    /// ```
    /// assert_eq!(mproc_shm::SharedMemory::create(4096)?.len(), 4096);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.mapped.region.len()
    }

    /// Returns whether the segment is empty (never, for a created one).
    ///
    /// ```
    /// assert!(!mproc_shm::SharedMemory::create(1)?.is_empty());
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.mapped.region.is_empty()
    }

    /// Returns the name, or `None` for an anonymous segment.
    ///
    /// ```
    /// use mproc_shm::SharedMemory;
    /// assert_eq!(SharedMemory::create(64)?.name(), None);
    /// let name = format!("mproc-doc-name-{}", std::process::id());
    /// let shm = SharedMemory::create_named(&name, 64)?;
    /// assert_eq!(shm.name(), Some(name.as_str()));
    /// shm.unlink()?;
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Returns the start of the mapping, valid for [`len`](SharedMemory::len) bytes while
    /// this handle lives. Other processes may write to the memory at any time.
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(8)?;
    /// shm.write::<u8>(3, 42)?;
    /// let p = shm.as_ptr();
    /// // SAFETY: byte 3 is inside the mapping, which `shm` keeps; nobody else writes to it.
    /// assert_eq!(unsafe { p.add(3).read_volatile() }, 42);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapped.region.as_ptr()
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(16)?;
    /// shm.write_at(4, b"abc")?;
    /// let mut buf = [0u8; 3];
    /// shm.read_at(4, &mut buf)?;
    /// assert_eq!(&buf, b"abc");
    /// assert!(shm.read_at(15, &mut buf).is_err()); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range does not fit.
    #[inline]
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.mapped.region.copy_to(offset, buf).map_err(range_error)
    }

    /// Copies `data` in, starting at `offset`.
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(16)?;
    /// shm.write_at(0, b"hello")?;
    /// assert_eq!(shm.read::<u8>(4)?, b'o');
    /// assert!(shm.write_at(12, b"hello").is_err()); // does not fit
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range does not fit.
    #[inline]
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.mapped
            .region
            .copy_from(offset, data)
            .map_err(range_error)
    }

    /// Sets `len` bytes starting at `offset` to `byte`.
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(16)?;
    /// shm.fill(8, 8, 0xff)?;
    /// assert_eq!(shm.read::<u64>(0)?, 0);
    /// assert_eq!(shm.read::<u64>(8)?, u64::MAX);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range does not fit.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.mapped
            .region
            .fill(offset, len, byte)
            .map_err(range_error)
    }

    /// Copies the value at `offset` out (aligned for `T`).
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(16)?;
    /// shm.write::<f64>(8, 2.5)?;
    /// assert_eq!(shm.read::<f64>(8)?, 2.5);
    /// assert!(shm.read::<f64>(4).is_err()); // misaligned
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    #[inline]
    pub fn read<T: ShmSafe>(&self, offset: usize) -> Result<T> {
        self.mapped.region.read(offset).map_err(range_error)
    }

    /// Copies `value` in at `offset` (aligned for `T`).
    ///
    /// ```
    /// let shm = mproc_shm::SharedMemory::create(16)?;
    /// shm.write::<[u16; 2]>(4, [1, 2])?;
    /// assert_eq!(shm.read::<u32>(4)?, 0x0002_0001); // little-endian
    /// assert!(shm.write::<u64>(16, 7).is_err()); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    #[inline]
    pub fn write<T: ShmSafe>(&self, offset: usize, value: T) -> Result<()> {
        self.mapped.region.write(offset, value).map_err(range_error)
    }

    /// Lends `count` atomics starting at `offset`, shared with every process that maps
    /// the segment.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let shm = mproc_shm::SharedMemory::create(64)?;
    /// let counters = shm.atomics::<AtomicU64>(0, 8)?;
    /// counters[3].fetch_add(2, Ordering::Relaxed);
    /// assert_eq!(shm.read::<u64>(24)?, 2);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit or are misaligned.
    pub fn atomics<A: ShmAtomic>(&self, offset: usize, count: usize) -> Result<&[A]> {
        self.mapped
            .region
            .get_slice(offset, count)
            .map_err(range_error)
    }
}

/// Sent as its name (if any), its fd and its length; the receiver maps the same memory.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (
            &self.name,
            mproc_wire::FdRef(self.mapped.fd.as_fd()),
            self.mapped.region.len() as u64,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (name, fd, len): (Option<String>, mproc_wire::Fd, u64) = Deserialize::deserialize(d)?;
        let fd = fd.into_owned();
        let len = usize::try_from(len).map_err(D::Error::custom)?;
        match &name {
            // An anonymous segment is a memfd we sealed; an unsealed file could be shrunk
            // under our mapping by whoever else holds it (SIGBUS on access).
            None if !mproc_sys::is_size_sealed(fd.as_fd()) => {
                return Err(D::Error::custom(
                    "received an anonymous segment that is not a size-sealed memfd",
                ));
            }
            None => {}
            // A named one cannot be sealed: it must at least be the segment of that name in
            // /dev/shm, which only its owner's user can resize.
            Some(name) => {
                let same = mproc_sys::shm_open_existing(name)
                    .and_then(|f| mproc_sys::file_identity(f.as_fd()))
                    .ok()
                    == mproc_sys::file_identity(fd.as_fd()).ok();
                if !same {
                    return Err(D::Error::custom(format!(
                        "received segment {name:?} is not the one of that name in /dev/shm"
                    )));
                }
            }
        }
        // `map` refuses a length beyond the file's size, so a lying sender cannot make us
        // touch pages that do not exist.
        let region = Region::map(fd.as_fd(), len)
            .map_err(|e| D::Error::custom(format!("cannot map a received segment: {e}")))?;
        Ok(SharedMemory {
            mapped: Arc::new(Mapped { region, fd }),
            name,
        })
    }
}

/// This process's tracker and the names it registered (to re-register if it must be
/// restarted). A fork child shares its parent's tracker.
static TRACKING: ForkLock<Option<Tracking>> = ForkLock::new(fork_order::SEGMENT_TRACKING, None);

struct Tracking {
    tracker: Tracker,
    /// Each registered name, with the file it must still be to be unlinked (if any).
    names: HashSet<(String, Option<FileId>)>,
}

/// How many trackers one registration starts, each killed in turn, before it gives up.
const TRACKER_STARTS: usize = 4;

/// Registers `name` (at `file`, if given: see [`Tracker::register`]) with this process's
/// tracker, starting one if there is none. A dead tracker is replaced, and every name it
/// held is registered with its successor; should the successor die too before it has them
/// all, another is started. The names stay in the table whatever happens, so a
/// registration that gives up leaves them for the next one to hand over.
fn track(name: &str, file: Option<FileId>) -> Result<()> {
    let registration = (name.to_string(), file);
    let mut guard = TRACKING.lock();
    if let Some(tracking) = guard.as_mut() {
        match tracking.tracker.register(name, file) {
            Ok(()) => {
                tracking.names.insert(registration);
                return Ok(());
            }
            Err(e) if tracker_gone(&e) => {} // killed: start another below
            Err(e) => return Err(Error::io("registering a segment with the tracker", e)),
        }
    }
    let mut gone = None;
    for _ in 0..TRACKER_STARTS {
        let tracker =
            Tracker::start().map_err(|e| Error::io("starting the shared memory tracker", e))?;
        let tracking = match guard.as_mut() {
            Some(tracking) => {
                std::mem::replace(&mut tracking.tracker, tracker).reap();
                tracking
            }
            None => guard.insert(Tracking {
                tracker,
                names: HashSet::new(),
            }),
        };
        let registered = (tracking.names.iter().chain([&registration]))
            .try_for_each(|(n, f)| tracking.tracker.register(n, *f));
        match registered {
            Ok(()) => {
                tracking.names.insert(registration);
                return Ok(());
            }
            Err(e) if tracker_gone(&e) => gone = Some(e),
            Err(e) => return Err(Error::io("registering a segment with the tracker", e)),
        }
    }
    let e = gone.unwrap_or_else(|| std::io::ErrorKind::BrokenPipe.into());
    Err(Error::io("registering a segment with the tracker", e))
}

/// Registers `name` (at no file) with this process's tracker without waiting for its
/// answer ([`Tracker::register_ahead`]): the next [`track`] confirms it. With no tracker,
/// or a dead one, registers as [`track`] does.
fn track_ahead(name: &str) -> Result<()> {
    {
        let mut guard = TRACKING.lock();
        if let Some(tracking) = guard.as_mut()
            && tracking.tracker.register_ahead(name, None).is_ok()
        {
            tracking.names.insert((name.to_string(), None));
            return Ok(());
        }
    }
    track(name, None)
}

/// Whether a registration failed because the tracker is gone (killed).
fn tracker_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
    )
}

/// Forgets the registration of `name` at `file` (with `None`: every registration of
/// `name`).
fn untrack(name: &str, file: Option<FileId>) {
    let mut guard = TRACKING.lock();
    if let Some(tracking) = guard.as_mut() {
        tracking
            .names
            .retain(|(n, f)| n != name || (file.is_some() && *f != file));
        let _ = tracking.tracker.unregister(name, file);
    }
}
