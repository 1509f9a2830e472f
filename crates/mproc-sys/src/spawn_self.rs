//! `SpawnSelf`: starting a new process that runs an executable (normally this one, through
//! `/proc/self/exe`) with `posix_spawn`, handing it one fd at a fixed number.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::Pid;

/// Starts a new process running an executable (normally this one, through `/proc/self/exe`)
/// with `posix_spawn`, handing it one fd at a fixed number.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// let (_ours, theirs) = mproc_sys::socketpair()?;
/// let pid = mproc_sys::SpawnSelf::new()
///     .env("MY_MARKER", "1")
///     .pass_fd(theirs.as_fd(), 3)
///     .spawn()?;
/// mproc_sys::wait_pid(pid, true)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SpawnSelf<'a> {
    exe: PathBuf,
    env: Vec<(OsString, OsString)>,
    removed: Vec<OsString>,
    fd: Option<(BorrowedFd<'a>, RawFd)>,
}

impl Default for SpawnSelf<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> SpawnSelf<'a> {
    /// Prepares to run `/proc/self/exe` with this process's `argv[0]` and environment.
    pub fn new() -> Self {
        Self {
            exe: PathBuf::from("/proc/self/exe"),
            env: Vec::new(),
            removed: Vec::new(),
            fd: None,
        }
    }

    /// Runs `exe` instead of this process's own executable.
    pub fn executable(mut self, exe: impl Into<PathBuf>) -> Self {
        self.exe = exe.into();
        self
    }

    /// Sets an environment variable in the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes an environment variable in the child.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.removed.push(key.as_ref().to_owned());
        self
    }

    /// Hands `fd` to the child as fd number `target` (not close-on-exec there).
    pub fn pass_fd(mut self, fd: BorrowedFd<'a>, target: RawFd) -> Self {
        self.fd = Some((fd, target));
        self
    }

    /// Starts the child and returns its pid.
    pub fn spawn(self) -> io::Result<Pid> {
        let cstr =
            |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        let exe = cstr(self.exe.as_os_str().as_bytes())?;
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| self.exe.clone().into_os_string());
        let argv0 = cstr(argv0.as_bytes())?;
        let mut env: Vec<CString> = Vec::new();
        for (k, v) in std::env::vars_os() {
            if self.removed.contains(&k) || self.env.iter().any(|(k2, _)| *k2 == k) {
                continue;
            }
            env.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        for (k, v) in &self.env {
            env.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        let argv: [*mut libc::c_char; 2] = [argv0.as_ptr() as *mut _, std::ptr::null_mut()];
        let mut envp: Vec<*mut libc::c_char> = env.iter().map(|c| c.as_ptr() as *mut _).collect();
        envp.push(std::ptr::null_mut());

        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(r))
            }
        };
        // SAFETY: `actions` and `attr` are initialised by their `init` calls before any other
        // use, destroyed exactly once below, and every pointer handed to `posix_spawn` points
        // into `exe`, `argv0`, `env`, `argv` and `envp`, which outlive the call.
        unsafe {
            check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
            if let Err(e) = check(libc::posix_spawnattr_init(attr.as_mut_ptr())) {
                libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
                return Err(e);
            }
            let result = (|| {
                if let Some((fd, target)) = self.fd {
                    // dup2 onto another number clears close-on-exec on the copy.
                    check(libc::posix_spawn_file_actions_adddup2(
                        actions.as_mut_ptr(),
                        fd.as_raw_fd(),
                        target,
                    ))?;
                }
                // Standard input comes from /dev/null, as in Python's children.
                let null = c"/dev/null";
                check(libc::posix_spawn_file_actions_addopen(
                    actions.as_mut_ptr(),
                    0,
                    null.as_ptr(),
                    libc::O_RDONLY,
                    0,
                ))?;
                // Everything above the passed fd is closed: the child gets its socket and
                // the standard streams, nothing else of ours.
                check(libc::posix_spawn_file_actions_addclosefrom_np(
                    actions.as_mut_ptr(),
                    self.fd.map_or(3, |(_, target)| target + 1),
                ))?;
                let mut empty = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut empty);
                check(libc::posix_spawnattr_setsigmask(attr.as_mut_ptr(), &empty))?;
                // An ignored SIGCHLD would survive exec and make the child's children vanish
                // unreaped (no exit status); give the child the default.
                let mut default = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut default);
                libc::sigaddset(&mut default, libc::SIGCHLD);
                check(libc::posix_spawnattr_setsigdefault(
                    attr.as_mut_ptr(),
                    &default,
                ))?;
                check(libc::posix_spawnattr_setflags(
                    attr.as_mut_ptr(),
                    (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
                ))?;
                let mut pid: libc::pid_t = 0;
                check(libc::posix_spawn(
                    &mut pid,
                    exe.as_ptr(),
                    actions.as_ptr(),
                    attr.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                ))?;
                Ok(pid as Pid)
            })();
            libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
            libc::posix_spawnattr_destroy(attr.as_mut_ptr());
            result
        }
    }
}
