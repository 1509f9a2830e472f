//! Diagnostics (target `mproc`): through the `log` crate with the `log` feature; without
//! it, warnings on stderr, nothing else (no cost).

/// An event worth a line at debug level (a child started or ended, a server replaced).
macro_rules! debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::debug!(target: "mproc", $($arg)*);
    }};
}

/// Something the user should hear of: `log::warn!` with the feature, stderr without. With
/// the feature but no logger (a spawned child runs `init()` before `main` sets one up), it
/// still goes to stderr: a warning must not vanish because logging was turned on.
macro_rules! warning {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        {
            if log::max_level() == log::LevelFilter::Off {
                eprintln!("mproc: {}", format_args!($($arg)*));
            } else {
                log::warn!(target: "mproc", $($arg)*);
            }
        }
        #[cfg(not(feature = "log"))]
        eprintln!("mproc: {}", format_args!($($arg)*));
    }};
}

pub(crate) use {debug, warning};
