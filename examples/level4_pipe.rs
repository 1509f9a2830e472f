//! Level 4: a duplex pipe between two processes. The parent sends questions, the child
//! answers on the same pipe, with a type each way; when the child is gone, the parent's
//! receive says so at once instead of hanging. Then a child that shares no pipe with the
//! parent connects to its `Listener` by name and authenticates with a key, and
//! `mproc::wait` sleeps on several pipes and a child's sentinel at once.
//!
//! `cargo run --release --example level4_pipe`

use serde::{Deserialize, Serialize};

/// What the parent asks.
#[derive(Debug, Serialize, Deserialize)]
enum Question {
    Square(u64),
    Shout(String),
    Goodbye,
}

/// What the child answers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Answer {
    Number(u64),
    Text(String),
}

/// Runs in the child: answers questions until "goodbye", then returns how many it answered.
fn answer_questions(mut conn: mproc::Connection<Answer, Question>) -> usize {
    let mut answered = 0;
    loop {
        let reply = match conn.recv().expect("a question") {
            Question::Square(x) => Answer::Number(x * x),
            Question::Shout(s) => Answer::Text(s.to_uppercase() + "!"),
            Question::Goodbye => return answered,
        };
        println!("  child {}: answering with {reply:?}", std::process::id());
        conn.send(&reply).expect("send the answer");
        answered += 1;
    }
}

/// The key the parent's listener and its clients prove they know (it never crosses the
/// socket).
const KEY: &[u8] = b"a key the parent and its children share";

/// Runs in a child: connects to the parent's listener by name with the key, sends its pid
/// and returns the parent's reply.
fn call_parent(address: String) -> String {
    let address = address.parse().expect("an address");
    let mut conn = mproc::Client::connect::<u32, String>(&address, KEY).expect("connect");
    conn.send(&std::process::id()).expect("send the pid");
    conn.recv().expect("the parent's reply")
}

/// Runs in a child: says hello, then waits for the parent's goodbye and ends.
fn hello_then_wait(mut conn: mproc::Connection<String, String>) {
    conn.send(&"hello".to_string()).expect("send hello");
    let _ = conn.recv();
}

/// Connects with a wrong key; returns whether it was refused.
fn guess_the_key(address: String) -> bool {
    let address: mproc::Address = address.parse().expect("an address");
    mproc::Client::connect::<u8, u8>(&address, b"guess").is_err()
}

/// Runs level 4 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(4, "pipes: a duplex pipe, a listener, and wait");
    let (mut parent_end, child_end) = mproc::duplex::<Question, Answer>()?;
    let mut child = mproc::spawn(answer_questions, child_end)?;
    for q in [Question::Square(12), Question::Shout("hello pipe".into())] {
        println!("  parent: asking {q:?}");
        parent_end.send(&q)?;
        println!("  parent: got {:?}", parent_end.recv()?);
    }
    parent_end.send(&Question::Goodbye)?;
    let answered = child.join()?;
    println!("  parent: the child answered {answered} questions and ended");
    let gone = parent_end.recv().expect_err("nobody is left to answer");
    println!("  parent: receiving now says {:?}: {gone}", gone.kind());
    assert_eq!(answered, 2);
    assert_eq!(gone.kind(), mproc::pipe::ErrorKind::Disconnected);

    // Listener and Client: a connection by name, authenticated both ways with the key.
    let name = format!("mproc-tour-{}", std::process::id());
    let mut listener = mproc::Listener::bind(name.parse()?, KEY)?;
    // The guess comes from a child, not a thread: a thread just joined may still count
    // for a moment, and the fork start method refuses a process with threads.
    let mut guess = mproc::spawn(guess_the_key, listener.address().to_string())?;
    let refused = listener.accept::<u8, u8>().expect_err("a wrong key");
    assert_eq!(refused.kind(), mproc::pipe::ErrorKind::Authentication);
    assert!(guess.join()?, "the guessing child was refused too");
    let mut caller = mproc::spawn(call_parent, listener.address().to_string())?;
    let mut conn = listener.accept::<String, u32>()?;
    let pid = conn.recv()?;
    conn.send(&format!("welcome, {pid}"))?;
    let reply = caller.join()?;
    println!(
        "  Listener/Client: a wrong key is refused ({:?}); a child with the key connects by name and gets {reply:?}",
        refused.kind()
    );
    assert_eq!((pid, reply), (caller.pid(), format!("welcome, {pid}")));

    // mproc::wait: sleep until any of several pipes or child sentinels is ready.
    let (mut conn, child_end) = mproc::duplex::<String, String>()?;
    let (_idle_sender, idle) = mproc::channel::<u8>()?;
    let mut child = mproc::spawn(hello_then_wait, child_end)?;
    let first = mproc::wait(&[&conn, &idle, &child.sentinel()], None)?;
    let hello = conn.recv()?;
    println!(
        "  mproc::wait([pipe, idle pipe, child's sentinel]) = {first:?}: the child said {hello:?}"
    );
    conn.send(&"goodbye".to_string())?;
    let then = mproc::wait(&[&idle, &child.sentinel()], None)?;
    child.join()?;
    println!("  mproc::wait([idle pipe, child's sentinel]) = {then:?}: the child ended");
    assert_eq!((first, then), (vec![0], vec![1]));
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
