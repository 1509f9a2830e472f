//! Level 2: four processes in parallel. Each sleeps one second and returns a square; the
//! whole takes about one second, not four.
//!
//! `cargo run --release --example level2_parallel`

use std::time::{Duration, Instant};

/// Runs in each child: a second of "work", then the square.
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(1));
    println!("  child {}: {x}² = {}", std::process::id(), x * x);
    x * x
}

/// Runs level 2 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(2, "four processes in parallel");
    let start = Instant::now();
    let mut children = (1..=4)
        .map(|x| mproc::spawn(slow_square, x))
        .collect::<Result<Vec<_>, _>>()?;
    let mut squares = Vec::new();
    for child in &mut children {
        squares.push(child.join()?);
    }
    let took = start.elapsed();
    assert_eq!(squares, [1, 4, 9, 16]);
    println!(
        "  squares {squares:?} in {:.2} s (four 1 s sleeps, run side by side)",
        took.as_secs_f64()
    );
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
