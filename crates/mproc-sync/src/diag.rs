//! Diagnostics through the `log` crate with the `log` feature (target `mproc`); without it,
//! nothing (no cost): what happened is in the values returned anyway.

/// Something worth a warning: a lock taken from a holder that died holding it.
macro_rules! warning {
    ($($arg:tt)*) => {{
        #[cfg(feature = "log")]
        log::warn!(target: "mproc", $($arg)*);
    }};
}

pub(crate) use warning;
