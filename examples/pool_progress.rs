//! A progress bar over a long pool job: `imap_unordered` hands each result back as soon as
//! it is done, so the bar moves with the work (and a failed item is reported, not fatal).
//!
//! `cargo run --release --example pool_progress`

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One unit of a long job: simulates uneven work, and fails for one item.
fn crunch(i: u64) -> u64 {
    assert!(i != 77, "item 77 is malformed");
    std::thread::sleep(Duration::from_millis(2 + i % 7));
    i * i
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let n = 400u64;
    let pool = mproc::Pool::new(mproc::cpu_count().max(2) * 2)?;
    let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} items, {per_sec}, eta {eta}")
            .expect("a valid template"),
    );
    let t0 = Instant::now();
    let (mut sum, mut failed) = (0u64, Vec::new());
    for result in pool.imap_unordered(crunch, 0..n) {
        match result {
            Ok(v) => sum += v,
            Err(e) => failed.push(e),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{} items in {:.2} s: sum of squares {sum}, {} failed",
        n,
        t0.elapsed().as_secs_f64(),
        failed.len()
    );
    for e in &failed {
        println!("failed: {e}");
    }
    Ok(())
}
