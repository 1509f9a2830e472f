//! Level 4: a duplex pipe between two processes. The parent sends questions, the child
//! answers on the same pipe, with a type each way; when the child is gone, the parent's
//! receive says so at once instead of hanging.
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

/// Runs level 4 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(4, "a duplex pipe between two processes");
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
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
