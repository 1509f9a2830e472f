//! Decoding that stops short of the end of the thread's stack: a message that nests deeper
//! than the stack can hold (a recursive type, a peer's long chain of `Some(Box(..))`) is a
//! decode error instead of a stack overflow, which would abort the whole process.
//!
//! Every level of a recursive value reads at least one byte (an enum's or an option's tag,
//! a length), so the postcard input checks the stack pointer at each byte it hands out.

use std::cell::Cell;

use postcard::de_flavors::{Flavor, Slice};

/// The most stack kept free below the deepest decoding frame: room for the value's own
/// `Deserialize` code between two reads, and for unwinding with the error.
const RED_ZONE: usize = 64 << 10;

/// The address of a local of the caller's frame: where the stack is now.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let marker = 0u8;
    std::hint::black_box(&raw const marker).addr()
}

/// The lowest stack address a decode starting here may reach on this thread, or 0 when the
/// thread's stack is not known (or not where this code runs: a coroutine's stack, say).
pub(crate) fn stack_limit() -> usize {
    let here = stack_pointer();
    match mproc_sys::stack_bounds() {
        Some((low, high)) if (low..high).contains(&here) => low + RED_ZONE.min((high - low) / 4),
        _ => 0,
    }
}

/// A postcard input over a byte slice that refuses to hand out more bytes once the stack
/// is below `limit`, and says so in `too_deep`.
pub(crate) struct Guarded<'de, 'a> {
    input: Slice<'de>,
    limit: usize,
    too_deep: &'a Cell<bool>,
}

impl<'de, 'a> Guarded<'de, 'a> {
    pub(crate) fn new(bytes: &'de [u8], limit: usize, too_deep: &'a Cell<bool>) -> Self {
        Self {
            input: Slice::new(bytes),
            limit,
            too_deep,
        }
    }

    #[inline(always)]
    fn check(&self) -> postcard::Result<()> {
        if stack_pointer() < self.limit {
            self.too_deep.set(true);
            return Err(postcard::Error::DeserializeBadEncoding);
        }
        Ok(())
    }
}

impl<'de, 'a: 'de> Flavor<'de> for Guarded<'de, 'a> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    #[inline]
    fn pop(&mut self) -> postcard::Result<u8> {
        self.check()?;
        self.input.pop()
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.input.size_hint()
    }

    #[inline]
    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        self.check()?;
        self.input.try_take_n(ct)
    }

    fn finalize(self) -> postcard::Result<&'de [u8]> {
        self.input.finalize()
    }
}
