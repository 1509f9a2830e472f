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
    main_thread_stack().or_else(pthread_stack)
}

/// The main thread's stack, found without reading `/proc/self/maps` (which
/// `pthread_getattr_np` reads for the main thread: tens of µs in a process just started,
/// paid by every spawned child at its first decode). Its top is the end of the stack
/// mapping the kernel set up at exec, where the executable's name (`AT_EXECFN`) is the
/// last thing copied, right below a final null pointer; it grows down as far as
/// `RLIMIT_STACK` allows (glibc's answer too: its lowest address is that top less the
/// limit). `None` on another thread, with no limit, or when the layout is not this one.
fn main_thread_stack() -> Option<(usize, usize)> {
    // SAFETY: gettid and getpid take nothing and cannot fail.
    if unsafe { libc::gettid() != libc::getpid() } {
        return None;
    }
    // SAFETY: getauxval reads the auxiliary vector; 0 means the entry is missing.
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if execfn.is_null() {
        return None;
    }
    // SAFETY: AT_EXECFN points to the NUL-terminated name the kernel copied at exec, which
    // stays in place for the life of the process.
    let len = unsafe { libc::strlen(execfn) };
    let top = execfn.addr() + len + 1 + std::mem::size_of::<usize>();
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    if page == 0 || !top.is_multiple_of(page) {
        return None; // not the end of a mapping: not the layout described above
    }
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes the limit into `limit` when it returns 0.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, limit.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful getrlimit above.
    let cur = unsafe { limit.assume_init() }.rlim_cur;
    if cur == libc::RLIM_INFINITY {
        return None; // bounded by the next mapping below it instead: ask glibc
    }
    let low = top.checked_sub(usize::try_from(cur).ok()?)?;
    Some((low, top))
}

fn pthread_stack() -> Option<(usize, usize)> {
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
    /// The fast path's top is the end of the `[stack]` mapping, and its size the limit's.
    #[test]
    fn the_main_thread_stack_is_found_without_the_maps() {
        // The test runs on another thread: ask as the main thread would, skipping the check.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps.lines().find(|l| l.ends_with("[stack]")).unwrap();
        let (range, _) = line.split_once(' ').unwrap();
        let (_, end) = range.split_once('-').unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        // SAFETY: as in `main_thread_stack`.
        let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
        // SAFETY: as in `main_thread_stack`.
        let len = unsafe { libc::strlen(execfn) };
        assert_eq!(execfn.addr() + len + 1 + std::mem::size_of::<usize>(), end);
        // On this thread the fast path declines, and glibc answers instead.
        assert_eq!(super::main_thread_stack(), None);
        assert!(super::ask().is_some());
    }

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
