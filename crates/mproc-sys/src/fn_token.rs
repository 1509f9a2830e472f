//! Naming a function of this build so that another process running the same build can call it.
//!
//! A function is named by its offset from a fixed anchor function in the executable. Under
//! ASLR the executable loads at a different base in every process, but the distance between
//! two of its functions does not change, so an offset computed in the parent finds the same
//! function in a child that runs the same build.
//!
//! Trust model: a token is only ever read from the private socket a parent hands its own
//! child (inherited at spawn, or created before fork). Whoever can write to that socket is the
//! parent, which runs as the same user and could ptrace the child anyway. Before calling
//! anything, [`FnToken::from_parts`] still checks that the token was made by this very build
//! (the build fingerprint) and that both addresses lie inside this executable's code, so a
//! mismatched binary or a corrupted message is an error, never a jump into the unknown.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::OnceLock;

use crate::build_id;

/// The anchor every offset is taken from. Its body only has to exist at a fixed place.
#[inline(never)]
fn anchor() -> u64 {
    0x6d70_726f_6320_6f6b
}

fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// A function pointer `fn(A) -> R`, as a thunk receives it.
///
/// A `FnRef<A, R>` only comes from [`FnRef::new`], or from [`FnToken::invoke`] on a token
/// that [`FnToken::new`] built from a `FnRef<A, R>` in this same build, so [`FnRef::get`]
/// always returns the function it was made from.
///
/// ```
/// use mproc_sys::FnRef;
/// fn double(x: u32) -> u32 { x * 2 }
/// assert_eq!(FnRef::new(double).get()(21), 42);
/// ```
#[repr(transparent)]
pub struct FnRef<A, R> {
    addr: usize,
    _fn: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for FnRef<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, R> Copy for FnRef<A, R> {}

impl<A, R> std::fmt::Debug for FnRef<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnRef({:#x})", self.addr)
    }
}

impl<A, R> FnRef<A, R> {
    /// Wraps a function pointer.
    pub fn new(f: fn(A) -> R) -> Self {
        Self {
            addr: f as usize,
            _fn: PhantomData,
        }
    }

    /// Returns the function pointer.
    pub fn get(self) -> fn(A) -> R {
        // SAFETY: `addr` was taken from a `fn(A) -> R` of this build: either directly in
        // `FnRef::new`, or in `FnToken::invoke`, which rebuilds it from an offset that
        // `FnToken::new` computed from a `FnRef<A, R>` and which `FnToken::from_parts` checked
        // to belong to this build (see the module's trust model). Function pointers and
        // `usize` have the same size on every platform Rust supports.
        unsafe { std::mem::transmute::<usize, fn(A) -> R>(self.addr) }
    }
}

/// A function pointer type that a [`FnAt`] can name: `fn(A) -> R` up to `fn(A, B, C, D) -> R`.
///
/// Sealed: only function pointer types implement it, so an address read back by
/// [`FnAt::get`] is always rebuilt as the pointer type it was taken from.
pub trait FnPtr: Copy + sealed::Sealed {
    /// Returns the function's address.
    fn addr(self) -> usize;
}

mod sealed {
    pub trait Sealed {
        /// Rebuilds the pointer from its address.
        ///
        /// # Safety
        ///
        /// `addr` must be [`FnPtr::addr`](super::FnPtr::addr) of a value of this very type.
        unsafe fn from_addr(addr: usize) -> Self;
    }
}

macro_rules! fn_ptr {
    ($($arg:ident),+) => {
        impl<$($arg,)+ R> sealed::Sealed for fn($($arg),+) -> R {
            unsafe fn from_addr(addr: usize) -> Self {
                // SAFETY: the caller passes the address of a `fn($($arg),+) -> R` (see the
                // trait's contract); function pointers and `usize` have the same size.
                unsafe { std::mem::transmute::<usize, fn($($arg),+) -> R>(addr) }
            }
        }
        impl<$($arg,)+ R> FnPtr for fn($($arg),+) -> R {
            fn addr(self) -> usize {
                self as usize
            }
        }
    };
}
fn_ptr!(A);
fn_ptr!(A, B);
fn_ptr!(A, B, C);
fn_ptr!(A, B, C, D);

/// A function pointer of any [`FnPtr`] type (one to four arguments), as a thunk made with
/// [`FnToken::for_fn`] receives it: [`FnRef`] for functions of several arguments.
///
/// ```
/// use mproc_sys::FnAt;
/// fn add(a: u32, b: u32) -> u32 { a + b }
/// let f = FnAt::new(add as fn(u32, u32) -> u32);
/// assert_eq!(f.get()(40, 2), 42);
/// ```
#[repr(transparent)]
pub struct FnAt<F> {
    addr: usize,
    _fn: PhantomData<F>,
}

impl<F> Clone for FnAt<F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F> Copy for FnAt<F> {}

impl<F> std::fmt::Debug for FnAt<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnAt({:#x})", self.addr)
    }
}

impl<F: FnPtr> FnAt<F> {
    /// Wraps a function pointer.
    pub fn new(f: F) -> Self {
        Self {
            addr: f.addr(),
            _fn: PhantomData,
        }
    }

    /// Returns the function pointer.
    pub fn get(self) -> F {
        // SAFETY: `addr` is the address of an `F`: taken in `FnAt::new`, or rebuilt by
        // `FnToken::invoke` from an offset that `FnToken::for_fn` computed from an `F` of
        // this build (see the module's trust model).
        unsafe { F::from_addr(self.addr) }
    }
}

/// The type-erased form of a thunk: what [`FnToken`] stores and calls.
pub type Thunk<I, O> = fn(usize, I) -> O;

/// A function of this build, together with the thunk that calls it, in a form that can
/// travel to another process of the same build.
///
/// The thunk is a monomorphised `fn(FnRef<A, R>, I) -> O` that knows how to turn an input
/// `I` into an `A`, call the function, and turn its `R` into an output `O`. The token keeps
/// both as offsets from a fixed anchor of the executable.
///
/// ```
/// use mproc_sys::{FnRef, FnToken};
/// fn square(x: u64) -> u64 { x * x }
/// fn thunk(f: FnRef<u64, u64>, input: String) -> String {
///     f.get()(input.parse().unwrap()).to_string()
/// }
/// let token = FnToken::new(thunk, square);
/// let (fp, t, f) = token.to_parts();
/// // SAFETY: the parts come from `to_parts` of a `FnToken<String, String>` of this build.
/// let again = unsafe { FnToken::<String, String>::from_parts(fp, t, f) }.expect("same build");
/// assert_eq!(again.invoke("7".to_string()), "49");
/// ```
pub struct FnToken<I, O> {
    thunk: i64,
    func: i64,
    _io: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for FnToken<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I, O> Copy for FnToken<I, O> {}

impl<I, O> std::fmt::Debug for FnToken<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnToken")
            .field("thunk", &self.thunk)
            .field("func", &self.func)
            .finish()
    }
}

fn offset_of(addr: usize) -> i64 {
    (addr as i64).wrapping_sub(anchor_addr() as i64)
}

fn addr_of(offset: i64) -> usize {
    (anchor_addr() as i64).wrapping_add(offset) as usize
}

impl<I: 'static, O: 'static> FnToken<I, O> {
    /// Names `f` and the thunk that calls it.
    pub fn new<A, R>(thunk: fn(FnRef<A, R>, I) -> O, f: fn(A) -> R) -> Self {
        Self {
            thunk: offset_of(thunk as usize),
            func: offset_of(f as usize),
            _io: PhantomData,
        }
    }

    /// Names `f`, a function of one to four arguments, and the thunk that calls it.
    ///
    /// ```
    /// use mproc_sys::{FnAt, FnToken};
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// fn thunk(f: FnAt<fn(u32, u32) -> u32>, (a, b): (u32, u32)) -> u32 { f.get()(a, b) }
    /// let token = FnToken::for_fn(thunk, add as fn(u32, u32) -> u32);
    /// assert_eq!(token.invoke((40, 2)), 42);
    /// ```
    pub fn for_fn<F: FnPtr>(thunk: fn(FnAt<F>, I) -> O, f: F) -> Self {
        Self {
            thunk: offset_of(thunk as usize),
            func: offset_of(f.addr()),
            _io: PhantomData,
        }
    }

    /// Returns `(fingerprint, thunk offset, function offset)` for the wire. The fingerprint
    /// covers this build and the token's `I` and `O` types.
    pub fn to_parts(self) -> (u64, i64, i64) {
        (Self::fingerprint(), self.thunk, self.func)
    }

    fn fingerprint() -> u64 {
        let mut h = DefaultHasher::new();
        (build_fingerprint(), std::any::TypeId::of::<(I, O)>()).hash(&mut h);
        h.finish()
    }

    /// Rebuilds a token from [`to_parts`](Self::to_parts) output.
    ///
    /// Returns `None` when the fingerprint is not this build's (or not for these `I` and `O`)
    /// or an offset points outside this executable's code. These checks catch a mismatched
    /// binary and most corruption, but they cannot prove that an offset is the start of a
    /// function of the right type, hence the contract.
    ///
    /// # Safety
    ///
    /// The three parts must be the unmodified output of [`to_parts`](Self::to_parts) on a
    /// `FnToken<I, O>` made by [`new`](Self::new) or [`for_fn`](Self::for_fn) in a process running this same build
    /// (for example, a parent that sent them over a socket only it and this process hold).
    pub unsafe fn from_parts(fingerprint: u64, thunk: i64, func: i64) -> Option<Self> {
        if fingerprint != Self::fingerprint() {
            return None;
        }
        let (lo, hi) = text_range()?;
        let inside = |off: i64| (lo..hi).contains(&addr_of(off));
        (inside(thunk) && inside(func)).then_some(Self {
            thunk,
            func,
            _io: PhantomData,
        })
    }

    /// Calls the thunk with the function and `input`.
    pub fn invoke(self, input: I) -> O {
        // SAFETY: `thunk` is the offset of a `fn(FnRef<A, R>, I) -> O` or a
        // `fn(FnAt<F>, I) -> O` of this build (made by `new` or `for_fn`, or handed to
        // `from_parts`, whose contract says it was made by one of them). `FnRef` and `FnAt`
        // are `repr(transparent)` over `usize`, so those types and `fn(usize, I) -> O` are
        // ABI-compatible and calling one through the other is sound.
        let thunk = unsafe { std::mem::transmute::<usize, Thunk<I, O>>(addr_of(self.thunk)) };
        thunk(addr_of(self.func), input)
    }
}

/// Returns a fingerprint of the running executable: equal in two processes only when they
/// run the same build, on this host or another.
///
/// It hashes the build's identity: the ELF build-id that the linker wrote into the object
/// holding mproc's code (the executable, or a shared library), or when it has none a hash of
/// that object's whole file, read once per process; then the size of its code and the
/// anchor's place in it. Copies of one binary on two hosts agree; a build of other code does
/// not.
///
/// ```
/// assert_eq!(mproc_sys::build_fingerprint(), mproc_sys::build_fingerprint());
/// ```
pub fn build_fingerprint() -> u64 {
    static FP: OnceLock<u64> = OnceLock::new();
    *FP.get_or_init(|| {
        let mut h = DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut h);
        build_id::build_identity(anchor_addr()).hash(&mut h);
        if let Some((lo, hi)) = text_range() {
            (hi - lo, anchor_addr() - lo).hash(&mut h);
        }
        h.finish()
    })
}

/// The address range of the main executable's code, found once through `dl_iterate_phdr`.
fn text_range() -> Option<(usize, usize)> {
    static RANGE: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *RANGE.get_or_init(find_text_range)
}

fn find_text_range() -> Option<(usize, usize)> {
    let anchor = anchor_addr();
    let mut found: Option<(usize, usize)> = None;

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` for the duration of the
        // call, and `data` is the `&mut (usize, Option<(usize, usize)>)` passed below.
        let (info, (anchor, found)) =
            unsafe { (&*info, &mut *(data as *mut (usize, Option<(usize, usize)>))) };
        let base = info.dlpi_addr as usize;
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let lo = base + ph.p_vaddr as usize;
                let hi = lo + ph.p_memsz as usize;
                if (lo..hi).contains(anchor) {
                    *found = Some((lo, hi));
                    return 1;
                }
            }
        }
        0
    }

    let mut data = (anchor, found.take());
    // SAFETY: `visit` only reads the headers it is given and writes through `data`, which
    // outlives the call; `dl_iterate_phdr` is thread-safe.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut data as *mut _ as *mut libc::c_void) };
    data.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_one(x: u32) -> u32 {
        x + 1
    }

    fn thunk(f: FnRef<u32, u32>, x: u32) -> u32 {
        f.get()(x)
    }

    #[test]
    fn token_round_trips_in_process() {
        let (fp, t, f) = FnToken::new(thunk, add_one).to_parts();
        // SAFETY: the parts come straight from `to_parts` of a `FnToken<u32, u32>`.
        let tok = unsafe { FnToken::<u32, u32>::from_parts(fp, t, f) }.unwrap();
        assert_eq!(tok.invoke(41), 42);
    }

    #[test]
    fn foreign_fingerprint_types_or_offsets_are_refused() {
        let (fp, t, f) = FnToken::new(thunk, add_one).to_parts();
        // SAFETY: for all four, `from_parts` returns `None` for each of these before any call;
        // the tokens are never invoked.
        unsafe {
            assert!(FnToken::<u32, u32>::from_parts(fp ^ 1, t, f).is_none());
            assert!(FnToken::<u32, u32>::from_parts(fp, t, i64::MAX / 2).is_none());
            assert!(FnToken::<u32, u32>::from_parts(fp, i64::MIN / 2, f).is_none());
            // The same parts, read as a token of other types: refused by the fingerprint.
            assert!(FnToken::<String, Vec<u8>>::from_parts(fp, t, f).is_none());
        }
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(build_fingerprint(), build_fingerprint());
        assert!(text_range().is_some());
    }
}
