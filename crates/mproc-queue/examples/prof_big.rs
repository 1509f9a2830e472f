// Not committed: a profile driver. Threads, one queue, N messages of SIZE bytes.
use serde_bytes::ByteBuf;
fn main() {
    let size: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let total: usize = 1 << 30;
    let n = total / size;
    let q = mproc_queue::Queue::<ByteBuf>::new().unwrap();
    let q2 = q.clone();
    let t0 = std::time::Instant::now();
    let c = std::thread::spawn(move || {
        for _ in 0..n {
            let m = q2.get().unwrap();
            assert_eq!(m.len(), size);
        }
    });
    let payload = ByteBuf::from(vec![0x5au8; size]);
    for _ in 0..n {
        q.put(payload.clone()).unwrap();
    }
    c.join().unwrap();
    println!(
        "{size}: {:.2} GB/s",
        total as f64 / t0.elapsed().as_nanos() as f64
    );
}
