//! The environment of a forked child: the parent's changes since a fork server's snapshot,
//! applied in the child with the `Builder`'s overrides.

use std::ffi::OsString;
use std::path::PathBuf;

/// Applies environment overrides in a freshly forked (single-threaded) child.
pub(crate) fn apply_env(env: &[(OsString, Option<OsString>)]) {
    for (k, v) in env {
        if let Err(e) = mproc_sys::set_env_var(k, v.as_deref()) {
            crate::diag::warning!("cannot set {k:?} in the child: {e}");
        }
    }
}

/// A process's environment and working directory at one moment: what a fork server has,
/// since it started from them.
pub(crate) struct Snapshot {
    env: std::collections::HashMap<OsString, OsString>,
    cwd: Option<PathBuf>,
}

impl Snapshot {
    pub(crate) fn now() -> Self {
        Snapshot {
            env: std::env::vars_os().collect(),
            cwd: std::env::current_dir().ok(),
        }
    }

    /// The variables set, changed or removed since: usually none, and then the child has
    /// nothing to do.
    pub(crate) fn env_changes(&self) -> Vec<(OsString, Option<OsString>)> {
        let mut changes = Vec::new();
        let mut seen = 0;
        for (k, v) in std::env::vars_os() {
            match self.env.get(&k) {
                Some(was) => {
                    seen += 1;
                    if *was != v {
                        changes.push((k, Some(v)));
                    }
                }
                None => changes.push((k, Some(v))),
            }
        }
        if seen < self.env.len() {
            let gone = self.env.keys().filter(|k| std::env::var_os(k).is_none());
            changes.extend(gone.map(|k| (k.clone(), None)));
        }
        changes
    }

    /// The working directory, if it is not the one of the snapshot.
    pub(crate) fn cwd_change(&self) -> Option<OsString> {
        let now = std::env::current_dir().ok()?;
        (self.cwd.as_ref() != Some(&now)).then(|| now.into_os_string())
    }
}
