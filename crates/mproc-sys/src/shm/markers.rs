//! The marker traits of types that may live in shared memory: `ShmSafe` values are copied
//! in and out, `ShmAtomic` ones are lent by reference.

use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize,
};

/// Plain data that may live in memory shared between processes and be copied in and out
/// of it: any type that is [`bytemuck::AnyBitPattern`] (every bit pattern is a valid value:
/// another process, or a crash in the middle of a write, can leave any bytes there) and
/// [`bytemuck::NoUninit`] (no padding, so copying it out as bytes reads no uninitialised
/// memory), and `Send + 'static` (no references or pointers, whose meaning would not
/// survive the trip to another process).
///
/// Integers, floats, arrays of them and `()` qualify. A `#[repr(C)]` struct of your own
/// qualifies by deriving bytemuck's traits, with no `unsafe` in your code (add `bytemuck`
/// with its `derive` feature to your dependencies):
///
/// ```ignore
/// #[derive(Clone, Copy, bytemuck::AnyBitPattern, bytemuck::NoUninit)]
/// #[repr(C)]
/// struct Point { x: f64, y: f64, hits: u64 }
/// let shared = mproc::RawValue::new(Point { x: 1.0, y: 2.0, hits: 0 })?;
/// ```
///
/// `bool`, `char`, enums and references do not qualify: not every bit pattern is one.
///
/// # Safety
///
/// Do not implement it by hand: derive bytemuck's traits instead. A type that is
/// `ShmSafe` must be `Copy`, hold no pointers, references or handles (their meaning would
/// not survive the trip to another process), have no padding, and accept **every bit
/// pattern** as a valid value: another process, or a crash in the middle of a write, can
/// leave any bytes there.
pub unsafe trait ShmSafe: Copy + Send + 'static {}

// SAFETY: `AnyBitPattern` promises every bit pattern is a valid `T` (so bytes another
// process wrote, or a torn write, are still a `T`) and is never implemented for references
// or function pointers; `NoUninit` promises no padding (so its bytes can be copied out);
// raw pointers, `Pod` only under bytemuck's opt-in `unsound_ptr_pod_impl`, are not `Send`.
unsafe impl<T: bytemuck::AnyBitPattern + bytemuck::NoUninit + Send> ShmSafe for T {}

/// Types made only of atomics (or of [`RawMutex`](crate::RawMutex)-like words): shared
/// memory may be lent to them by reference, because every access they make is atomic.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types whose fields are all atomics or `ShmAtomic`
/// types, for which all zero bytes is a valid initial state, and which hold no pointers
/// whose meaning another process relies on.
pub unsafe trait ShmAtomic: Sync + Send + 'static {}

macro_rules! shm_atomic {
    ($($t:ty),*) => { $(
        // SAFETY: an atomic integer: every access is atomic; zero is valid.
        unsafe impl ShmAtomic for $t {}
    )* };
}
shm_atomic!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);
// SAFETY: an array of `ShmAtomic` values is `ShmAtomic`.
unsafe impl<T: ShmAtomic, const N: usize> ShmAtomic for [T; N] {}
