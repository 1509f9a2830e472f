//! `ShareableList`: Python's fixed-length list of int / float / bool / str / bytes / None
//! items in one shared segment.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::raw::index_error;
use crate::segment::SharedMemory;

const MAGIC: u32 = u32::from_le_bytes(*b"MPSL");
const HEADER: usize = 8;
const SLOT: usize = 16;

/// One item of a [`ShareableList`].
///
/// Plain values convert into items with `From`, so a list can be made from them directly.
///
/// ```
/// use mproc_shm::Item;
/// assert_eq!(Item::from(7i64), Item::Int(7));
/// assert_eq!(Item::from("hi"), Item::Str("hi".into()));
/// assert_eq!(Item::from(b"hi".as_slice()), Item::Bytes(b"hi".to_vec()));
/// assert_eq!(Item::from(()), Item::None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// Python's `None`.
    None,
    /// A 64-bit signed integer (Python's `int`, within range).
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Item {
    fn tag(&self) -> u32 {
        match self {
            Item::None => 0,
            Item::Int(_) => 1,
            Item::Float(_) => 2,
            Item::Bool(_) => 3,
            Item::Str(_) => 4,
            Item::Bytes(_) => 5,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Item::None => Vec::new(),
            Item::Int(i) => i.to_le_bytes().to_vec(),
            Item::Float(f) => f.to_le_bytes().to_vec(),
            Item::Bool(b) => vec![*b as u8],
            Item::Str(s) => s.as_bytes().to_vec(),
            Item::Bytes(b) => b.clone(),
        }
    }

    /// The space a slot created for this item gets: 8 bytes for a number, bool or None;
    /// 8 × (⌊len / 8⌋ + 1) for a string (len in bytes) or bytes, as in Python.
    fn capacity(&self) -> usize {
        match self {
            Item::Str(s) => 8 * (s.len() / 8 + 1),
            Item::Bytes(b) => 8 * (b.len() / 8 + 1),
            _ => 8,
        }
    }
}

macro_rules! item_from {
    ($($t:ty => $v:expr),* $(,)?) => { $(
        impl From<$t> for Item {
            fn from(x: $t) -> Item {
                #[allow(clippy::redundant_closure_call)]
                ($v)(x)
            }
        }
    )* };
}
item_from!(
    i64 => Item::Int,
    i32 => |x: i32| Item::Int(x.into()),
    f64 => Item::Float,
    bool => Item::Bool,
    String => Item::Str,
    &str => |x: &str| Item::Str(x.to_string()),
    Vec<u8> => Item::Bytes,
    &[u8] => |x: &[u8]| Item::Bytes(x.to_vec()),
    () => |_| Item::None,
);

/// A fixed-length list in shared memory. Python: `shared_memory.ShareableList`.
///
/// Items are [`Item`]s (int, float, bool, str, bytes, None). Each slot keeps the space it
/// was created with: a string or bytes slot 8 × (⌊len / 8⌋ + 1) bytes, any other 8
/// bytes. An item may change type if the new value fits; one that does not fit is
/// refused with `ExceedsStorage`. There is no append or insert.
///
/// The list has no lock, as in Python: give it one (a `mproc_sync::Lock`) when several
/// processes write. A read racing a write of the same slot can get a mix of the two
/// values, or a `Corrupt` error; never a string that is not UTF-8, and never a panic.
/// Items are limited to 4 GiB each and 2³² of them (as Python limits them to 10 MB).
///
/// ```
/// use mproc_shm::{ErrorKind, Item, ShareableList};
/// let list = ShareableList::new(["howdy".into(), Item::Int(7), Item::None])?;
/// assert_eq!(list.len(), 3);
/// assert_eq!(list.get(0)?, Item::Str("howdy".into()));
/// list.set(0, "hi there")?;                      // 8 bytes fit the 8-byte slot
/// assert_eq!(list.set(0, "too long now").unwrap_err().kind(), ErrorKind::ExceedsStorage);
/// list.set(2, 2.5)?;                             // a slot may change type
/// assert_eq!(list.to_vec()?, vec![Item::Str("hi there".into()), Item::Int(7), Item::Float(2.5)]);
/// assert_eq!(list.index(&Item::Int(7))?, Some(1));
/// # Ok::<(), mproc_shm::Error>(())
/// ```
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    /// Each slot's data offset and capacity, read once and checked against the segment.
    slots: Vec<(usize, usize)>,
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.shm.name())
            .field("len", &self.slots.len())
            .finish()
    }
}

impl ShareableList {
    /// Makes an anonymous list holding `items`.
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let list = ShareableList::new([Item::Int(1), Item::from("two"), Item::None])?;
    /// assert_eq!(list.get(1)?, Item::Str("two".into()));
    /// let numbers = ShareableList::new([1.5, 2.5])?; // anything that converts into an Item
    /// assert_eq!(numbers.get(0)?, Item::Float(1.5));
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NoSpace`/`Io` from the OS.
    pub fn new<I>(items: impl IntoIterator<Item = I>) -> Result<Self>
    where
        I: Into<Item>,
    {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        let shm = SharedMemory::create(Self::size_for(&items)?)?;
        Self::init(shm, &items)
    }

    /// Makes a list holding `items` in the named segment `name` (tracked as
    /// [`SharedMemory::create_named`] describes, and never leaked, wherever its creator
    /// is killed). The list is written before the name appears: whoever opens `name`
    /// finds it whole.
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let name = format!("mproc-doc-list-{}", std::process::id());
    /// let list = ShareableList::create_named(&name, ["a", "b"])?;
    /// let other = ShareableList::open(&name)?; // as another program would
    /// other.set(1, "c")?;
    /// assert_eq!(list.get(1)?, Item::from("c"));
    /// list.shm().unlink()?;
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create_named`].
    pub fn create_named<I>(name: &str, items: impl IntoIterator<Item = I>) -> Result<Self>
    where
        I: Into<Item>,
    {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        SharedMemory::create_named_as(name, Self::size_for(&items)?, |shm| Self::init(shm, &items))
    }

    /// Attaches to the list in the named segment `name`.
    ///
    /// ```
    /// use mproc_shm::{ErrorKind, ShareableList};
    /// let name = format!("mproc-doc-list-open-{}", std::process::id());
    /// let list = ShareableList::create_named(&name, [1i64, 2])?;
    /// assert_eq!(ShareableList::open(&name)?.to_vec()?, list.to_vec()?);
    /// list.shm().unlink()?;
    /// assert_eq!(ShareableList::open(&name).unwrap_err().kind(), ErrorKind::NotFound);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound`; `Corrupt` when the segment does not hold a list.
    pub fn open(name: &str) -> Result<Self> {
        Self::attach(SharedMemory::open(name)?)
    }

    fn size_for(items: &[Item]) -> Result<usize> {
        let too_big = || {
            Error::new(
                ErrorKind::InvalidInput,
                "a ShareableList item or list is too large",
            )
        };
        if u32::try_from(items.len()).is_err()
            || items.iter().any(|i| u32::try_from(i.capacity()).is_err())
        {
            return Err(too_big());
        }
        items
            .iter()
            .try_fold(HEADER + SLOT * items.len(), |n, i| {
                n.checked_add(i.capacity())
            })
            .ok_or_else(too_big)
    }

    fn init(shm: SharedMemory, items: &[Item]) -> Result<Self> {
        shm.write::<u32>(4, items.len() as u32)?;
        let mut offset = HEADER + SLOT * items.len();
        let mut slots = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let cap = item.capacity();
            shm.write::<u32>(HEADER + SLOT * i + 4, cap as u32)?;
            slots.push((offset, cap));
            offset += cap;
        }
        let list = ShareableList { shm, slots };
        for (i, item) in items.iter().enumerate() {
            list.set(i, item.clone())?;
        }
        list.shm.write::<u32>(0, MAGIC)?;
        Ok(list)
    }

    fn attach(shm: SharedMemory) -> Result<Self> {
        let corrupt = || {
            Error::new(
                ErrorKind::Corrupt,
                "the segment does not hold a ShareableList",
            )
        };
        if shm.len() < HEADER || shm.read::<u32>(0)? != MAGIC {
            return Err(corrupt());
        }
        let count = shm.read::<u32>(4)? as usize;
        let mut offset = count
            .checked_mul(SLOT)
            .and_then(|n| n.checked_add(HEADER))
            .filter(|&n| n <= shm.len())
            .ok_or_else(corrupt)?;
        let mut slots = Vec::with_capacity(count);
        for i in 0..count {
            let cap = shm.read::<u32>(HEADER + SLOT * i + 4)? as usize;
            if cap < 8 || offset + cap > shm.len() {
                return Err(corrupt());
            }
            slots.push((offset, cap));
            offset += cap;
        }
        Ok(ShareableList { shm, slots })
    }

    /// Returns the number of items.
    ///
    /// ```
    /// let list = mproc_shm::ShareableList::new([1i64, 2, 3])?;
    /// assert_eq!(list.len(), 3);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Returns whether the list is empty.
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// assert!(ShareableList::new(Vec::<Item>::new())?.is_empty());
    /// assert!(!ShareableList::new([Item::None])?.is_empty());
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Returns the segment holding the list (Python: `shm`).
    ///
    /// ```
    /// let list = mproc_shm::ShareableList::new(["abc"])?;
    /// assert_eq!(list.shm().name(), None); // an anonymous segment
    /// assert!(list.shm().len() > 8); // a header, the item's slot, and its 8 bytes
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Copies item `i` out.
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let list = ShareableList::new([Item::Bool(true), Item::Bytes(vec![1, 2])])?;
    /// assert_eq!(list.get(0)?, Item::Bool(true));
    /// assert_eq!(list.get(1)?, Item::Bytes(vec![1, 2]));
    /// assert!(list.get(2).is_err()); // Python: IndexError
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` past the end (Python: `IndexError`); `Corrupt` when the slot holds
    /// garbage (or a write raced this read).
    pub fn get(&self, i: usize) -> Result<Item> {
        let (offset, cap) = *self
            .slots
            .get(i)
            .ok_or_else(|| index_error(i, self.len()))?;
        let desc = HEADER + SLOT * i;
        let tag = self.shm.read::<u32>(desc)?;
        let len = self.shm.read::<u32>(desc + 8)? as usize;
        let corrupt = || Error::new(ErrorKind::Corrupt, format!("item {i} holds garbage"));
        let bytes = |n: usize| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; n];
            self.shm.read_at(offset, &mut buf)?;
            Ok(buf)
        };
        let word = || -> Result<[u8; 8]> {
            let mut b = [0u8; 8];
            self.shm.read_at(offset, &mut b)?;
            Ok(b)
        };
        Ok(match tag {
            0 => Item::None,
            1 => Item::Int(i64::from_le_bytes(word()?)),
            2 => Item::Float(f64::from_le_bytes(word()?)),
            3 => match word()?[0] {
                0 => Item::Bool(false),
                1 => Item::Bool(true),
                _ => return Err(corrupt()),
            },
            4 if len <= cap => Item::Str(String::from_utf8(bytes(len)?).map_err(|_| corrupt())?),
            5 if len <= cap => Item::Bytes(bytes(len)?),
            _ => return Err(corrupt()),
        })
    }

    /// Stores `item` at `i`.
    ///
    /// ```
    /// use mproc_shm::{ErrorKind, Item, ShareableList};
    /// let list = ShareableList::new([Item::Int(0), Item::from("abc")])?;
    /// list.set(0, 2.5)?; // a slot may change type
    /// list.set(1, b"bytes".as_slice())?; // 5 bytes fit the 8 that "abc" got
    /// assert_eq!(list.to_vec()?, [Item::Float(2.5), Item::Bytes(b"bytes".to_vec())]);
    /// let err = list.set(1, "more than 8 bytes").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ExceedsStorage);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` past the end; `ExceedsStorage` when it does not fit the slot.
    pub fn set(&self, i: usize, item: impl Into<Item>) -> Result<()> {
        let item = item.into();
        let (offset, cap) = *self
            .slots
            .get(i)
            .ok_or_else(|| index_error(i, self.len()))?;
        let payload = item.payload();
        if payload.len() > cap {
            return Err(Error::new(
                ErrorKind::ExceedsStorage,
                format!(
                    "an item of {} bytes exceeds the {cap} bytes of storage of item {i}",
                    payload.len()
                ),
            ));
        }
        let desc = HEADER + SLOT * i;
        self.shm.write_at(offset, &payload)?;
        self.shm.write::<u32>(desc + 8, payload.len() as u32)?;
        self.shm.write::<u32>(desc, item.tag())?;
        Ok(())
    }

    /// Copies every item out.
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let list = ShareableList::new([Item::Int(1), Item::None])?;
    /// assert_eq!(list.to_vec()?, [Item::Int(1), Item::None]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Corrupt` as for [`get`](ShareableList::get).
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// Counts the items equal to `item` (Python: `count`).
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let list = ShareableList::new([1i64, 2, 1])?;
    /// assert_eq!(list.count(&Item::Int(1))?, 2);
    /// assert_eq!(list.count(&Item::Int(3))?, 0);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Corrupt` as for [`get`](ShareableList::get).
    pub fn count(&self, item: &Item) -> Result<usize> {
        Ok(self.to_vec()?.iter().filter(|x| *x == item).count())
    }

    /// Returns the index of the first item equal to `item` (Python: `index`, which raises
    /// `ValueError` where this returns `None`).
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let list = ShareableList::new(["a", "b"])?;
    /// assert_eq!(list.index(&Item::from("b"))?, Some(1));
    /// assert_eq!(list.index(&Item::from("z"))?, None); // Python: ValueError
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Corrupt` as for [`get`](ShareableList::get).
    pub fn index(&self, item: &Item) -> Result<Option<usize>> {
        Ok(self.to_vec()?.iter().position(|x| x == item))
    }

    /// Returns the layout in Python's `struct` notation (Python: `format`): `Ns` for a
    /// string or bytes slot of N bytes, `q` an int, `d` a float, `xxxxxxx?` a bool,
    /// `xxxxxxxx` None.
    ///
    /// ```
    /// use mproc_shm::{Item, ShareableList};
    /// let list = ShareableList::new([Item::from("howdy"), Item::Int(1), Item::Float(2.0)])?;
    /// assert_eq!(list.format()?, "8sqd");
    /// let flags = ShareableList::new([Item::Bool(true), Item::None])?;
    /// assert_eq!(flags.format()?, "xxxxxxx?xxxxxxxx");
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Corrupt` as for [`get`](ShareableList::get).
    pub fn format(&self) -> Result<String> {
        let mut f = String::new();
        for (i, (_, cap)) in self.slots.iter().enumerate() {
            match self.get(i)? {
                Item::Str(_) | Item::Bytes(_) => f.push_str(&format!("{cap}s")),
                Item::Int(_) => f.push('q'),
                Item::Float(_) => f.push('d'),
                Item::Bool(_) => f.push_str("xxxxxxx?"),
                Item::None => f.push_str("xxxxxxxx"),
            }
        }
        Ok(f)
    }
}

/// Sent as its segment: the receiver maps the same list.
impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(d)?;
        ShareableList::attach(shm).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_capacities_and_type_changes() {
        let list = ShareableList::new([
            Item::from("howdy"),
            Item::from("12345678"),
            Item::Bytes(vec![]),
            Item::Bool(true),
        ])
        .unwrap();
        assert_eq!(list.format().unwrap(), "8s16s8sxxxxxxx?");
        list.set(1, "0123456789abcdef").unwrap();
        assert_eq!(
            list.set(1, "0123456789abcdefg").unwrap_err().kind(),
            ErrorKind::ExceedsStorage
        );
        list.set(3, Item::Int(-5)).unwrap();
        assert_eq!(list.get(3).unwrap(), Item::Int(-5));
        assert_eq!(list.get(4).unwrap_err().kind(), ErrorKind::InvalidInput);
        let copy: ShareableList = mproc_wire::decode(mproc_wire::encode(&list).unwrap()).unwrap();
        assert_eq!(copy.to_vec().unwrap(), list.to_vec().unwrap());
        assert!(ShareableList::new(Vec::<Item>::new()).unwrap().is_empty());
    }

    #[test]
    fn garbage_slots_are_errors_not_panics() {
        let list = ShareableList::new([Item::from("abc"), Item::Bool(false)]).unwrap();
        let shm = list.shm();
        shm.write::<u32>(HEADER + 8, 1000).unwrap(); // str length past its capacity
        assert_eq!(list.get(0).unwrap_err().kind(), ErrorKind::Corrupt);
        shm.write::<u32>(HEADER + 8, 2).unwrap();
        shm.write_at(HEADER + 2 * SLOT, &[0xff, 0xfe]).unwrap(); // not UTF-8
        assert_eq!(list.get(0).unwrap_err().kind(), ErrorKind::Corrupt);
        shm.write::<u32>(HEADER + SLOT, 77).unwrap(); // unknown tag
        assert_eq!(list.get(1).unwrap_err().kind(), ErrorKind::Corrupt);
        shm.write::<u32>(4, u32::MAX).unwrap(); // a count that cannot fit
        let msg = mproc_wire::encode(&list).unwrap();
        assert!(mproc_wire::decode::<ShareableList>(msg).is_err());
    }
}
