//! Level 5: a queue with a producer process and a consumer process. The producer puts
//! jobs and then closes the queue; the consumer works until the queue is closed and
//! drained, and sends its results back on a second queue. A bounded queue makes a fast
//! producer wait for the consumer (backpressure) instead of piling up memory. Last, a
//! producer is killed: the `get` waiting for it says nobody is left, where Python's waits
//! for ever. Then the two other kinds: a `SimpleQueue`, and a `JoinableQueue` whose
//! `join` waits until a worker has marked every job done.
//!
//! `cargo run --release --example level5_queue`

use mproc::{GetError, JoinableQueue, Queue, SimpleQueue};
use serde::{Deserialize, Serialize};

/// A job for the consumer.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u32,
    text: String,
}

/// Runs in the producer: puts `n` jobs, then closes the queue (no more will come).
fn produce((jobs, n): (Queue<Job>, u32)) -> u32 {
    for id in 0..n {
        jobs.put(Job {
            id,
            text: format!("job number {id}"),
        })
        .expect("put");
    }
    jobs.close();
    n
}

/// Runs in the consumer: takes jobs until the queue is closed and drained, answering
/// each with its text's length.
fn consume((jobs, results): (Queue<Job>, Queue<(u32, usize)>)) -> u32 {
    let mut done = 0;
    loop {
        match jobs.get() {
            Ok(job) => {
                results.put((job.id, job.text.len())).expect("put a result");
                done += 1;
            }
            Err(GetError::Closed) => return done,
            Err(e) => panic!("get: {e}"),
        }
    }
}

/// Runs in a producer that is killed: puts one job, then holds the queue.
fn put_one_then_hang(jobs: Queue<Job>) {
    jobs.put(Job {
        id: 0,
        text: "the last job".into(),
    })
    .expect("put");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Runs in a child: puts three words on a simple queue.
fn put_words(words: SimpleQueue<String>) {
    for word in ["one", "two", "three"] {
        words.put(word.to_string()).expect("put");
    }
}

/// Runs in a worker: takes jobs and marks each done, until the queue is closed; returns
/// their sum.
fn work_through(jobs: JoinableQueue<u32>) -> u32 {
    let mut sum = 0;
    while let Ok(n) = jobs.get() {
        sum += n;
        jobs.task_done().expect("task_done");
    }
    sum
}

/// Runs level 5 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(5, "queues: Queue, SimpleQueue, JoinableQueue");
    let jobs = Queue::<Job>::bounded(8)?;
    let results = Queue::<(u32, usize)>::new()?;
    let n = 1000;
    let mut consumer = mproc::spawn(consume, (jobs.clone(), results.clone()))?;
    let mut producer = mproc::spawn(produce, (jobs.clone(), n))?;
    println!(
        "  producer {} puts {n} jobs into a queue bounded to {} messages; consumer {} takes them",
        producer.pid(),
        jobs.max_messages(),
        consumer.pid()
    );
    let put = producer.join()?;
    let done = consumer.join()?;
    let mut total = 0;
    for _ in 0..done {
        total += results.get()?.1;
    }
    println!(
        "  producer put {put} jobs and closed the queue; consumer did {done} and saw it closed"
    );
    println!("  results: {done} answers, total text length {total}");
    println!(
        "  the queue now: {} waiting, closed = {}",
        jobs.len(),
        jobs.is_closed()
    );
    assert_eq!((put, done), (n, n));

    let jobs = Queue::<Job>::new()?;
    let mut doomed = mproc::spawn(put_one_then_hang, jobs.clone())?;
    let last = jobs.get()?;
    doomed.kill()?;
    let t0 = std::time::Instant::now();
    let after = jobs.get();
    let said = match &after {
        Ok(job) => format!("job {}", job.id),
        Err(e) => e.to_string(),
    };
    println!(
        "  a producer that got \"{}\" out was killed: the next get says \"{said}\" after {} ms",
        last.text,
        t0.elapsed().as_millis()
    );
    assert!(matches!(after, Err(GetError::Disconnected)));
    let _ = doomed.join();
    assert_eq!(
        total,
        (0..n)
            .map(|i| format!("job number {i}").len())
            .sum::<usize>()
    );

    let words = SimpleQueue::<String>::new()?;
    mproc::spawn(put_words, words.clone())?.join()?;
    let got = (0..3).map(|_| words.get()).collect::<Result<Vec<_>, _>>()?;
    println!(
        "  SimpleQueue: a child put {got:?}; empty now = {}",
        words.is_empty()
    );
    assert_eq!(got, ["one", "two", "three"]);

    let jobs = JoinableQueue::<u32>::new()?;
    let mut worker = mproc::spawn(work_through, jobs.clone())?;
    for n in 1..=10 {
        jobs.put(n)?;
    }
    jobs.join()?; // returns once the worker has called task_done() for each job
    let unfinished = jobs.unfinished();
    jobs.close();
    let sum = worker.join()?;
    println!(
        "  JoinableQueue: join() returned once a worker marked all 10 jobs done ({unfinished} unfinished, sum {sum})"
    );
    assert_eq!((unfinished, sum), (0, 55));
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
