//! What every role of the kill matrix shares: the seed and the rounds, kill points, a
//! context for assertion messages, and the leak check.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Every wait on another party is bounded by this (a test never hangs; a library hang is
/// reported with its seed and round instead of by the watchdog).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The environment variable giving the seed (decimal or `0x` hex) to replay.
pub const SEED_ENV: &str = "MPROC_KILL_SEED";
/// The environment variable giving the rounds per role (the soak run sets hundreds).
pub const ROUNDS_ENV: &str = "MPROC_KILL_ROUNDS";

/// A small, seedable generator (splitmix64): the same seed gives the same kill points.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A duration in `0..max`, to the microsecond.
    pub fn delay(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros().max(1) as u64))
    }

    /// `true` one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// One role's run: its name, seed and rounds, and the leak baseline taken at its start.
/// Holding it serialises the roles of this test binary, so that the fd count is ours.
pub struct Role {
    pub name: &'static str,
    pub seed: u64,
    pub rounds: u64,
    started: Instant,
    baseline: Resources,
    _serial: MutexGuard<'static, ()>,
}

static SERIAL: Mutex<()> = Mutex::new(());

impl Role {
    /// Starts role `name` with `default_rounds` rounds unless `MPROC_KILL_ROUNDS` says
    /// otherwise, and prints the seed (drawn unless `MPROC_KILL_SEED` gives it).
    pub fn start(name: &'static str, default_rounds: u64) -> Role {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        warm_up();
        let (seed, how) = match std::env::var(SEED_ENV) {
            Ok(s) => (parse_seed(&s), "from MPROC_KILL_SEED"),
            Err(_) => (drawn_seed(), "drawn"),
        };
        let rounds = std::env::var(ROUNDS_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(default_rounds);
        eprintln!(
            "kill matrix {name}: seed {seed:#x} ({how}), {rounds} rounds under {}; \
             replay with {SEED_ENV}={seed:#x}",
            mproc::get_start_method()
        );
        Role {
            name,
            seed,
            rounds,
            started: Instant::now(),
            baseline: Resources::now(),
            _serial: serial,
        }
    }

    /// The generator of round `round`: each round's kill points follow from the seed alone.
    pub fn rng(&self, round: u64) -> Rng {
        let mut mix = Rng::new(self.seed ^ fnv(self.name));
        for _ in 0..=round % 7 {
            mix.next_u64();
        }
        Rng::new(mix.next_u64() ^ round.wrapping_mul(0xa076_1d64_78bd_642f))
    }

    /// What an assertion message names: the role, the seed to replay and the round.
    pub fn at(&self, round: u64) -> String {
        format!(
            "[kill matrix {} under {}, {SEED_ENV}={:#x}, round {round}]",
            self.name,
            mproc::get_start_method(),
            self.seed
        )
    }

    /// Checks that fds, zombies and `/dev/shm` names are back where they were when the
    /// role started (waiting up to [`PATIENCE`] for what closes in the background), and
    /// prints what the role cost.
    pub fn finish(self) {
        let at = format!("{} after {} rounds", self.at(self.rounds), self.rounds);
        let t0 = Instant::now();
        let mut now = Resources::now();
        while !now.within(&self.baseline) && t0.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(20));
            now = Resources::now();
        }
        assert!(
            now.fds <= self.baseline.fds,
            "{at}: {} fds open, {} when the role started: {:?}",
            now.fds,
            self.baseline.fds,
            fd_targets()
        );
        assert_eq!(now.zombies, 0, "{at}: zombie children left");
        assert!(
            now.shm_names.is_empty(),
            "{at}: names left in /dev/shm: {:?}",
            now.shm_names
        );
        eprintln!(
            "kill matrix {}: {} rounds in {:.1} s",
            self.name,
            self.rounds,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Starts what a process keeps for its lifetime once it has used mproc (the fork server
/// and its sockets, the shared-memory arena's chunks), so that the leak baseline has it.
fn warm_up() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        fn nothing(_: ()) {}
        let q = mproc::Queue::<u8>::new().expect("queue");
        let lock = mproc::Lock::new().expect("lock");
        let mut child = mproc_tests::builder()
            .spawn(nothing, ())
            .expect("warm-up child");
        child.join().expect("warm-up child");
        drop((q, lock));
    });
}

fn parse_seed(s: &str) -> u64 {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a number"))
}

fn drawn_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The prefix of every `/dev/shm` name the matrix makes (its children create them), so
/// that the leak check counts ours only.
pub fn shm_prefix() -> String {
    format!("mproc-km-{}-", std::process::id())
}

/// A fresh `/dev/shm` name under [`shm_prefix`].
pub fn shm_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{tag}-{}",
        shm_prefix(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Our names in `/dev/shm`.
pub fn shm_names() -> Vec<String> {
    let prefix = shm_prefix();
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// What a role must give back: open fds, zombie children, `/dev/shm` names.
struct Resources {
    fds: usize,
    zombies: usize,
    shm_names: Vec<String>,
}

impl Resources {
    fn now() -> Resources {
        // Children whose `Child` was dropped unjoined (a pool's workers under the fork
        // server) keep their pidfd and status socket until the process next spawns or
        // asks for its active children, which reaps them (documented): ask.
        let _ = mproc::active_children();
        Resources {
            fds: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0),
            zombies: mproc_tests::zombies_of(std::process::id()),
            shm_names: shm_names(),
        }
    }

    fn within(&self, baseline: &Resources) -> bool {
        self.fds <= baseline.fds && self.zombies == 0 && self.shm_names.is_empty()
    }
}

/// What our fds point at (for a leak's message).
fn fd_targets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{}->{}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Waits `d`: by spinning below 2 ms (a sleep that short overshoots by tens of µs, which
/// would squash the kill points together), by sleeping above.
pub fn pause(d: Duration) {
    if d >= Duration::from_millis(2) {
        std::thread::sleep(d);
    } else {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            std::hint::spin_loop();
        }
    }
}

/// Waits until `ready()` holds, for at most [`PATIENCE`]; panics with `at` otherwise.
pub fn wait_until(at: &str, what: &str, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(
            t0.elapsed() < PATIENCE,
            "{at}: {what} not within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// SIGKILLs a victim and reaps it, checking that it died of the signal (not of a panic of
/// its own, which would be a bug of the test or the library).
pub fn kill_and_reap<R: serde::de::DeserializeOwned>(at: &str, victim: &mut mproc::Child<R>) {
    victim.kill().unwrap_or_else(|e| panic!("{at}: kill: {e}"));
    let status = victim
        .wait_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("{at}: the victim did not end after SIGKILL: {e}"));
    assert!(
        matches!(
            status,
            mproc::ExitStatus::Signal(mproc_sys::SIGKILL) | mproc::ExitStatus::Code(0)
        ),
        "{at}: the victim ended with {status:?} before it was killed"
    );
}

/// The whole test's deadline for `rounds` rounds: generous, a guard against hangs only
/// (each wait inside has its own bound of [`PATIENCE`]).
pub fn limit(rounds: u64) -> Duration {
    Duration::from_secs(120) + Duration::from_secs(2) * rounds as u32
}
