//! Decoding from memory that is not lent as a `&[u8]` (another process's shared segment):
//! the bytes are copied out as they are read, a small window at a time, and a byte string
//! or a string that the value takes by value (`ByteBuf`, `String`) is copied straight from
//! the source into its own allocation, once. The format is postcard's, read by a
//! deserializer of our own: postcard's hands a byte string to the value as a slice, which
//! the value then copies again.

use std::cell::Cell;
use std::os::fd::OwnedFd;

use postcard::Error as E;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};

use crate::codec::decoding;
use crate::error::{Error, ErrorKind};
use crate::stack_guard;

/// Where [`decode_from_source`] reads: `len()` bytes, copied out at offsets (never lent).
pub trait Source {
    /// The number of bytes.
    fn len(&self) -> usize;

    /// Returns whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// Whatever stops the copy (the decode then fails with [`ErrorKind::Io`]).
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::io::Result<()>;

    /// Appends the `len` bytes starting at `offset` to `out`. The default zeroes them in
    /// `out` first, then reads them with [`read_at`](Source::read_at); a source that can
    /// copy into `out`'s spare capacity saves that pass over a large byte string.
    ///
    /// # Errors
    ///
    /// As [`read_at`](Source::read_at).
    fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + len, 0);
        self.read_at(offset, &mut out[start..])
            .inspect_err(|_| out.truncate(start))
    }
}

/// Like [`decode_from`](crate::decode_from), reading the bytes from `source`, which is
/// never lent as a slice: fit for memory another process may write, where a torn read gives
/// a wrong value or an error, never undefined behaviour. A byte string or a string taken by
/// value is copied once, from the source into its own allocation.
///
/// # Errors
///
/// As [`decode_from`](crate::decode_from); [`ErrorKind::Io`] when the source refuses a read.
///
/// ```
/// struct Bytes(Vec<u8>);
/// impl mproc_wire::Source for Bytes {
///     fn len(&self) -> usize {
///         self.0.len()
///     }
///     fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::io::Result<()> {
///         buf.copy_from_slice(&self.0[offset..offset + buf.len()]);
///         Ok(())
///     }
/// }
/// let value = (7u8, "x".repeat(9000), Some(-3i64));
/// let bytes = mproc_wire::encode(&value)?.into_parts().0;
/// let back: (u8, String, Option<i64>) =
///     mproc_wire::decode_from_source(&Bytes(bytes), Vec::new())?;
/// assert_eq!(back, value);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn decode_from_source<T: DeserializeOwned, S: Source + ?Sized>(
    source: &S,
    fds: Vec<OwnedFd>,
) -> Result<T, Error> {
    let too_deep = Cell::new(false);
    let failed: Cell<Option<std::io::Error>> = Cell::new(None);
    let mut de = FromSource {
        source,
        next: 0,
        window: Box::new([0; WINDOW]),
        at: 0,
        filled: 0,
        limit: stack_guard::stack_limit(),
        too_deep: &too_deep,
        failed: &failed,
    };
    let result = decoding(fds, || T::deserialize(&mut de));
    let rest = de.source.len() - de.next + (de.filled - de.at);
    let what = std::any::type_name::<T>;
    match result {
        Ok(value) if rest == 0 => Ok(value),
        Ok(_) => Err(Error::new(
            ErrorKind::Decode,
            format!("{rest} trailing bytes after the value"),
        )),
        Err(_) if too_deep.get() => Err(Error::new(
            ErrorKind::Decode,
            format!(
                "cannot deserialize {}: the value nests too deeply for this thread's stack",
                what()
            ),
        )),
        Err(e) => Err(match failed.take() {
            Some(io) => Error::io("reading a value to decode", io),
            None => Error::new(
                ErrorKind::Decode,
                format!("cannot deserialize {}: {e}", what()),
            ),
        }),
    }
}

/// How many bytes are copied out of the source at a time for small reads (a few under
/// fuzzing, so that short inputs cross the window's edges too).
const WINDOW: usize = if cfg!(fuzzing) { 16 } else { 4096 };

/// Copies `buf.len()` bytes of `source` from `at` into `buf`, keeping a refusal in `failed`.
fn read<S: Source + ?Sized>(
    source: &S,
    at: usize,
    buf: &mut [u8],
    failed: &Cell<Option<std::io::Error>>,
) -> postcard::Result<()> {
    source.read_at(at, buf).map_err(|e| {
        failed.set(Some(e));
        E::DeserializeUnexpectedEnd
    })
}

/// postcard's deserializer, reading through a window copied out of a [`Source`].
struct FromSource<'a, S: Source + ?Sized> {
    source: &'a S,
    /// Where the next copy into the window starts in the source.
    next: usize,
    window: Box<[u8; WINDOW]>,
    /// The window's unread bytes: `window[at..filled]`.
    at: usize,
    filled: usize,
    limit: usize,
    too_deep: &'a Cell<bool>,
    failed: &'a Cell<Option<std::io::Error>>,
}

impl<S: Source + ?Sized> FromSource<'_, S> {
    /// Bytes left to read, in the window and in the source.
    fn left(&self) -> usize {
        self.filled - self.at + (self.source.len() - self.next)
    }

    /// Makes at least `n` (≤ [`WINDOW`]) unread bytes sit in the window; refuses to read
    /// on when the stack is nearly used up (see `stack_guard`).
    #[inline]
    fn ensure(&mut self, n: usize) -> postcard::Result<()> {
        if stack_guard::stack_pointer() < self.limit {
            self.too_deep.set(true);
            return Err(E::DeserializeBadEncoding);
        }
        if self.filled - self.at >= n {
            return Ok(());
        }
        if self.left() < n {
            return Err(E::DeserializeUnexpectedEnd);
        }
        self.window.copy_within(self.at..self.filled, 0);
        self.filled -= self.at;
        self.at = 0;
        let more = (WINDOW - self.filled).min(self.source.len() - self.next);
        let into = &mut self.window[self.filled..self.filled + more];
        read(self.source, self.next, into, self.failed)?;
        self.next += more;
        self.filled += more;
        Ok(())
    }

    #[inline]
    fn byte(&mut self) -> postcard::Result<u8> {
        self.ensure(1)?;
        self.at += 1;
        Ok(self.window[self.at - 1])
    }

    /// Reads a varint of at most `max_bytes` bytes whose last byte is at most `last_max`.
    #[inline]
    fn varint(&mut self, max_bytes: usize, last_max: u8) -> postcard::Result<u128> {
        let mut out = 0u128;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_bytes - 1 && b > last_max {
                    return Err(E::DeserializeBadVarint);
                }
                return Ok(out);
            }
        }
        Err(E::DeserializeBadVarint)
    }

    fn u16(&mut self) -> postcard::Result<u16> {
        Ok(self.varint(3, 0b11)? as u16)
    }

    fn u32(&mut self) -> postcard::Result<u32> {
        Ok(self.varint(5, 0b1111)? as u32)
    }

    fn u64(&mut self) -> postcard::Result<u64> {
        Ok(self.varint(10, 0b1)? as u64)
    }

    fn len(&mut self) -> postcard::Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| E::DeserializeBadVarint)
    }

    /// Reads `n` bytes into a fresh `Vec`: those in the window, then the rest straight from
    /// the source.
    fn owned(&mut self, n: usize) -> postcard::Result<Vec<u8>> {
        if self.left() < n {
            return Err(E::DeserializeUnexpectedEnd);
        }
        let from_window = n.min(self.filled - self.at);
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&self.window[self.at..self.at + from_window]);
        self.at += from_window;
        let rest = n - from_window;
        self.source
            .append_to(self.next, rest, &mut out)
            .map_err(|e| {
                self.failed.set(Some(e));
                E::DeserializeUnexpectedEnd
            })?;
        self.next += rest;
        Ok(out)
    }

    /// Reads `n` bytes for a visitor that takes a slice: from the window when they fit it.
    fn with_slice<R>(
        &mut self,
        n: usize,
        f: impl FnOnce(&[u8]) -> postcard::Result<R>,
    ) -> postcard::Result<R> {
        if n <= WINDOW {
            self.ensure(n)?;
            self.at += n;
            f(&self.window[self.at - n..self.at])
        } else {
            f(&self.owned(n)?)
        }
    }

    fn fixed<const N: usize>(&mut self) -> postcard::Result<[u8; N]> {
        self.with_slice(N, |b| b.try_into().map_err(|_| E::DeserializeUnexpectedEnd))
    }
}

impl<'de, S: Source + ?Sized> de::Deserializer<'de> for &mut FromSource<'_, S> {
    type Error = E;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> postcard::Result<V::Value> {
        Err(E::WontImplement)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(E::DeserializeBadBool),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_i8(self.byte()? as i8)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.u16()?;
        visitor.visit_i16(((n >> 1) as i16) ^ (-((n & 1) as i16)))
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.u32()?;
        visitor.visit_i32(((n >> 1) as i32) ^ (-((n & 1) as i32)))
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.u64()?;
        visitor.visit_i64(((n >> 1) as i64) ^ (-((n & 1) as i64)))
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.varint(19, 0b11)?;
        visitor.visit_i128(((n >> 1) as i128) ^ (-((n & 1) as i128)))
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u16(self.u16()?)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u32(self.u32()?)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u64(self.u64()?)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_u128(self.varint(19, 0b11)?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.fixed()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.fixed()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.len()?;
        if n > 4 {
            return Err(E::DeserializeBadChar);
        }
        let c = self.with_slice(n, |b| {
            let mut chars = std::str::from_utf8(b)
                .map_err(|_| E::DeserializeBadChar)?
                .chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(E::DeserializeBadChar),
            }
        })?;
        visitor.visit_char(c)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.len()?;
        self.with_slice(n, |b| {
            visitor.visit_str(std::str::from_utf8(b).map_err(|_| E::DeserializeBadUtf8)?)
        })
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.len()?;
        let s = String::from_utf8(self.owned(n)?).map_err(|_| E::DeserializeBadUtf8)?;
        visitor.visit_string(s)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.len()?;
        self.with_slice(n, |b| visitor.visit_bytes(b))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let n = self.len()?;
        visitor.visit_byte_buf(self.owned(n)?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            _ => Err(E::DeserializeBadOption),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let len = self.len()?;
        visitor.visit_seq(Items { de: self, len })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        visitor.visit_seq(Items { de: self, len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> postcard::Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> postcard::Result<V::Value> {
        let len = self.len()?;
        visitor.visit_map(Items { de: self, len })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> postcard::Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> postcard::Result<V::Value> {
        visitor.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> postcard::Result<V::Value> {
        Err(E::WontImplement)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> postcard::Result<V::Value> {
        Err(E::WontImplement)
    }
}

/// The elements of a sequence, a tuple or a map (its keys and values in turn, `len`
/// pairs), as postcard writes them: one after the other.
struct Items<'a, 'b, S: Source + ?Sized> {
    de: &'a mut FromSource<'b, S>,
    len: usize,
}

impl<'de, S: Source + ?Sized> SeqAccess<'de> for Items<'_, '_, S> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> postcard::Result<Option<T::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // As postcard's: no hint when fewer bytes are left than the length says (serde caps
        // what a hint reserves anyway).
        (self.de.left() >= self.len).then_some(self.len)
    }
}

impl<'de, S: Source + ?Sized> de::MapAccess<'de> for Items<'_, '_, S> {
    type Error = E;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> postcard::Result<Option<K::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> postcard::Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        // As postcard's.
        Some(self.len)
    }
}

impl<'de, S: Source + ?Sized> de::EnumAccess<'de> for &mut FromSource<'_, S> {
    type Error = E;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> postcard::Result<(V::Value, Self)> {
        let index = self.u32()?;
        let v = seed.deserialize(IntoDeserializer::<E>::into_deserializer(index))?;
        Ok((v, self))
    }
}

impl<'de, S: Source + ?Sized> de::VariantAccess<'de> for &mut FromSource<'_, S> {
    type Error = E;

    fn unit_variant(self) -> postcard::Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> postcard::Result<V::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> postcard::Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> postcard::Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;

    use super::*;

    struct Bytes(Vec<u8>);

    impl Source for Bytes {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::io::Result<()> {
            buf.copy_from_slice(&self.0[offset..offset + buf.len()]);
            Ok(())
        }
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    enum Shape {
        Unit,
        New(i16),
        Tuple(u128, i128),
        Struct { c: char, f: f32 },
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Every {
        small: (bool, i8, u8, u16, i32, u32, i64, u64, f64),
        text: String,
        bytes: ByteBuf,
        shapes: Vec<Shape>,
        map: BTreeMap<String, Option<Vec<u16>>>,
        unit: (),
    }

    fn every(n: usize) -> Every {
        Every {
            small: (
                true,
                -5,
                200,
                40_000,
                -70_000,
                3_000_000_000,
                i64::MIN,
                u64::MAX,
                0.5,
            ),
            text: "é".repeat(n),
            bytes: ByteBuf::from((0..n).map(|i| i as u8).collect::<Vec<_>>()),
            shapes: vec![
                Shape::Unit,
                Shape::New(-300),
                Shape::Tuple(u128::MAX, i128::MIN),
                Shape::Struct { c: '€', f: 1.5 },
            ],
            map: [("a".into(), Some(vec![1, 2, 300])), ("b".into(), None)].into(),
            unit: (),
        }
    }

    #[test]
    fn decodes_what_postcard_decodes_across_window_edges() {
        for n in [0, 1, 100, 4000, 4095, 4096, 4097, 10_000, 1 << 20] {
            let bytes = crate::encode(&every(n)).unwrap().into_parts().0;
            let ours: Every = decode_from_source(&Bytes(bytes.clone()), Vec::new()).unwrap();
            let theirs: Every = crate::decode_from(&bytes, Vec::new()).unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(ours, every(n));
        }
    }

    #[test]
    fn truncated_trailing_garbage_and_forged_lengths_are_decode_errors() {
        let bytes = crate::encode(&every(5000)).unwrap().into_parts().0;
        for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
            let e = decode_from_source::<Every, _>(&Bytes(bytes[..cut].to_vec()), Vec::new());
            assert_eq!(e.unwrap_err().kind(), ErrorKind::Decode, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let e = decode_from_source::<Every, _>(&Bytes(longer), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("1 trailing bytes"), "{e}");
        // A byte string that says it is 2^60 bytes long: refused, nothing allocated.
        let forged = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
        let e = decode_from_source::<ByteBuf, _>(&Bytes(forged), Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        for garbage in [
            vec![2u8],
            vec![0xff; 11],
            vec![5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb],
        ] {
            assert!(decode_from_source::<Option<String>, _>(&Bytes(garbage), Vec::new()).is_err());
        }
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Chain(Option<Box<Chain>>);

    #[test]
    fn a_value_nested_past_the_stack_is_refused() {
        let deep = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let e = decode_from_source::<Chain, _>(&Bytes(vec![1; 1 << 20]), Vec::new());
                e.err().map(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(deep.is_some_and(|e| e.contains("nests too deeply")));
    }

    struct Refusing;

    impl Source for Refusing {
        fn len(&self) -> usize {
            100
        }
        fn read_at(&self, _: usize, _: &mut [u8]) -> std::io::Result<()> {
            Err(std::io::ErrorKind::InvalidInput.into())
        }
    }

    #[test]
    fn a_refused_read_is_an_io_error() {
        let e = decode_from_source::<u8, _>(&Refusing, Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
