//! The current thread's stack: where it lies, so that a recursive decoder can stop short of
//! overflowing it (a stack overflow aborts the whole process).

use std::cell::Cell;

thread_local! {
    /// This thread's stack, once asked for (`Some((0, 0))`: unknown).
    static BOUNDS: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// Returns the lowest and highest address of the current thread's stack (the stack grows
/// down, towards the lowest), or `None` when the OS does not say. Asked of the OS once per
/// thread; the main thread's stack is as large as its limit allows it to grow.
///
/// ```
/// let (low, high) = mproc_sys::stack_bounds().expect("Linux tells");
/// let here = (&raw const low).addr();
/// assert!(low < here && here < high);
/// ```
pub fn stack_bounds() -> Option<(usize, usize)> {
    let bounds = BOUNDS.get().unwrap_or_else(|| {
        let bounds = ask().unwrap_or((0, 0));
        BOUNDS.set(Some(bounds));
        bounds
    });
    (bounds.1 > bounds.0).then_some(bounds)
}

fn ask() -> Option<(usize, usize)> {
    // SAFETY: a zeroed attr is filled in by pthread_getattr_np before it is read, and
    // destroyed after; both out parameters are locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0).then(|| (addr.addr(), addr.addr().saturating_add(size)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_knows_its_own_stack() {
        let size = 256 << 10;
        let (low, high, here) = std::thread::Builder::new()
            .stack_size(size)
            .spawn(|| {
                let (low, high) = super::stack_bounds().unwrap();
                let marker = 0u8;
                (low, high, (&raw const marker).addr())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(low < here && here < high);
        assert!(
            high - low >= size && high - low < 4 * size,
            "{}",
            high - low
        );
    }
}
