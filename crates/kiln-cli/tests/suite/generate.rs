//! `kiln generate` and `kiln chat` through the binary with SmolLM2-135M-Instruct (GGUF, Q4_1), and their bad
//! inputs. The model comes from tools/fetch_models.sh (CI runs it); without it the tests that need it skip
//! with a printed notice.

use crate::common::*;
use std::io::Write;
use std::process::{Command, Stdio};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn smollm() -> Option<String> {
    let p = format!("{ROOT}/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if std::path::Path::new(&p).is_file() {
        return Some(p);
    }
    let _ = writeln!(std::io::stderr(), "NOTICE: {p} is absent (run tools/fetch_models.sh); skipped");
    None
}

#[test]
fn generate_answers_and_continues_and_is_seeded() {
    let Some(m) = smollm() else { return };
    let o = kiln(&["generate", &m, "What is the capital of France?", "--chat", "--temperature", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o).trim(), "The capital of France is Paris.");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("prompt tokens") && err.contains("tokens/s") && err.contains("end of turn"), "{err}");
    // Sampling: a seed gives the same text; a stop string ends it before itself.
    let run = |seed: &str| {
        stdout(&kiln(&["generate", &m, "Once upon a time", "--seed", seed, "--max-tokens", "20", "--quiet"]))
    };
    assert_eq!(run("7"), run("7"));
    let o = kiln(&["generate", &m, "One, two, three, four,", "--temperature", "0", "--stop", " six", "-q"]);
    let text = stdout(&o);
    assert!(text.contains("five") && !text.contains("six"), "{text}");
}

#[test]
fn chat_keeps_the_conversation_and_resets() {
    let Some(m) = smollm() else { return };
    let mut child = Command::new(KILN)
        .args(["chat", &m, "--temperature", "0", "--max-tokens", "24", "--system", "Answer in one short sentence."])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\n/reset\nAnd of Italy?\n/exit\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("Paris"), "{out}");
    assert_eq!(out.lines().filter(|l| !l.trim().is_empty()).count(), 2, "two answers: {out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("(a new conversation)"));
}

/// A message too long for the context on its own is refused with one line, and the chat goes on: the turns
/// before and after it are answered (it had ended the session with an error, the conversation lost).
#[test]
fn chat_refuses_one_message_past_the_context_and_goes_on() {
    let Some(m) = smollm() else { return };
    let mut child = Command::new(KILN)
        .args(["chat", &m, "--temperature", "0", "--max-tokens", "5", "--context", "64"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let long = "tell me about the weather today please ".repeat(12);
    child.stdin.take().unwrap().write_all(format!("Hi\n{long}\nHello\n/exit\n").as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("error:")).count(), 1, "{err}");
    assert!(err.contains("the context holds 64") && err.contains("shorter"), "{err}");
    let out = stdout(&o);
    assert_eq!(out.lines().filter(|l| !l.trim().is_empty()).count(), 2, "two answers: {out}");
}

#[test]
fn bad_models_and_settings_are_one_clear_error() {
    let t = Tmp::new("badgen");
    std::fs::write(t.path("rows.csv"), "a,b\n1,2\n").unwrap();
    assert_fails(&kiln(&["generate", &t.s("nowhere.gguf"), "hi"]), &["nowhere.gguf", "not a file"]);
    assert_fails(&kiln(&["generate", &t.s("rows.csv"), "hi"]), &["rows.csv", "not a GGUF file"]);
    let mut cut = b"GGUF".to_vec();
    cut.extend(3u32.to_le_bytes());
    cut.extend(5u64.to_le_bytes());
    std::fs::write(t.path("cut.gguf"), &cut).unwrap();
    assert_fails(&kiln(&["generate", &t.s("cut.gguf"), "hi"]), &["cut.gguf", "not a readable GGUF file"]);
    let Some(m) = smollm() else { return };
    // The real model cut at 8 MB (after its metadata): its tensors lie past the end.
    let head = std::fs::read(&m).unwrap()[..8 << 20].to_vec();
    std::fs::write(t.path("half.gguf"), head).unwrap();
    assert_fails(&kiln(&["generate", &t.s("half.gguf"), "hi"]), &["half.gguf", "outside the file"]);
    for (args, want) in [
        (vec!["--temperature=-1"], "--temperature -1"),
        (vec!["--top-p", "0"], "--top-p 0"),
        (vec!["--max-tokens", "0"], "--max-tokens 0"),
        (vec!["--system", "Be brief."], "--system goes with --chat"),
        (vec!["--context", "8"], "the context holds 8"),
        (vec!["--stop", ""], "--stop \"\""),
    ] {
        let mut a = vec!["generate", m.as_str(), "Tell me a long story about a dragon and a knight."];
        a.extend(args);
        assert_fails(&kiln(&a), &[want]);
    }
    // An empty prompt is refused with the chat template too (which had made it a prompt and answered it).
    assert_fails(&kiln(&["generate", &m, "  ", "--chat"]), &["the prompt is empty"]);
}

/// `kiln assistant` on the shop FAQ of examples/assistant: a question the FAQ answers gets an answer naming the
/// entries it came from (the right one among them); one it does not answer is declined with a hand-off; a
/// follow-up on the terminal leans on the question before it; bad settings and an FAQ without the named
/// column are one line.
#[test]
fn the_assistant_answers_from_the_faq_and_declines_the_rest() {
    let Some(m) = smollm() else { return };
    let minilm = format!("{ROOT}/models/all-MiniLM-L6-v2");
    if !std::path::Path::new(&minilm).is_dir() {
        let _ = writeln!(std::io::stderr(), "NOTICE: {minilm} is absent (run tools/fetch_models.sh); skipped");
        return;
    }
    let faq = format!("{ROOT}/examples/assistant/faq.csv");
    let ask = |q: &str, extra: &[&str]| {
        let mut a = vec!["assistant", "--faq", &faq, "--model", &m, "--embedder", &minilm, "--question", q];
        a.extend(extra);
        kiln(&a)
    };
    let o = ask("do you take paypal", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("(from FAQ entries: f22 ("), "{out}");
    let o = ask("Are you hiring software engineers?", &[]);
    assert!(stdout(&o).contains("I don't know") && stdout(&o).contains("colleague"), "{}", stdout(&o));
    // On the terminal, a conversation: the follow-up is retrieved after the question before it, and after
    // /reset the same follow-up alone is declined.
    let mut child = Command::new(KILN)
        .args(["assistant", "--faq", &faq, "--model", &m, "--embedder", &minilm])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = b"Do you offer express delivery?\nHow much is it?\n/reset\nHow much is it?\n/exit\n";
    child.stdin.take().unwrap().write_all(lines).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert_eq!(out.matches("(from FAQ entries: f03 (").count(), 2, "{out}");
    assert_eq!(out.matches("colleague").count(), 1, "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("(a new conversation)"));
    assert_fails(&ask("hi", &["--k", "0"]), &["--k 0"]);
    assert_fails(&ask("hi", &["--threshold", "2"]), &["--threshold 2"]);
    assert_fails(&ask("hi", &["--answer-column", "reply"]), &["faq.csv", "reply"]);
    // An FAQ with one id twice, --json without --eval, --eval with --question, an --eval file without rows.
    let t = Tmp::new("asst-bad");
    std::fs::write(t.path("dup.csv"), "id,question,answer\nf1,a?,yes\nf2,b?,no\nf1,c?,maybe\n").unwrap();
    std::fs::write(t.path("q.csv"), "question,answer_id,key_fact\n").unwrap();
    let run = |args: &[&str]| {
        let mut a = vec!["assistant", "--model", &m, "--embedder", &minilm];
        a.extend(args);
        kiln(&a)
    };
    assert_fails(&run(&["--faq", &t.s("dup.csv"), "--question", "hi"]), &["dup.csv row 3", "`f1`", "row 1"]);
    assert_fails(&ask("hi", &["--json", &t.s("r.json")]), &["--json", "--eval"]);
    assert_fails(&ask("hi", &["--eval", &t.s("q.csv")]), &["--eval", "--question"]);
    assert_fails(&run(&["--faq", &faq, "--eval", &t.s("q.csv")]), &["q.csv", "no questions"]);
}

/// --tokenizer (a tokenizer.json in place of the file's metadata), --exact (the reference arithmetic) and
/// --fast8 (llama.cpp's 8-bit activations) each answer; a tokenizer file that is not one is one line.
#[test]
fn tokenizer_file_exact_and_fast8() {
    let Some(m) = smollm() else { return };
    let t = Tmp::new("gen-flags");
    let lm = kiln::llm::Lm::open(std::path::Path::new(&m)).unwrap();
    lm.tokenizer.save(t.path("tokenizer.json"), false).unwrap();
    let q = "What is the capital of France?";
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", &m, q, "--chat", "--temperature", "0", "-q"];
        args.extend(extra);
        let o = kiln(&args);
        assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        stdout(&o).trim().to_string()
    };
    let plain = run(&[]);
    assert_eq!(run(&["--tokenizer", &t.s("tokenizer.json")]), plain, "the same tokenizer from a file");
    assert_eq!(run(&["--exact"]), plain);
    assert!(!run(&["--fast8", "--max-tokens", "8"]).is_empty());
    std::fs::write(t.path("bad.json"), "{").unwrap();
    let o = kiln(&["generate", &m, q, "--tokenizer", &t.s("bad.json")]);
    assert_fails(&o, &["bad.json", "not a readable tokenizer.json"]);
    // Another model's tokenizer (MiniLM's WordPiece: fewer tokens than SmolLM2's, so it fits) is refused.
    let bert = format!("{ROOT}/models/all-MiniLM-L6-v2/tokenizer.json");
    if std::path::Path::new(&bert).is_file() {
        let o = kiln(&["generate", &m, q, "--tokenizer", &bert]);
        assert_fails(&o, &["tokenizer.json", "another model's tokenizer"]);
    }
    let o = kiln(&["generate", &m, q, "--exact", "--fast8"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}

/// Ctrl-C (SIGINT) during an answer stops that answer and keeps the chat: the next question is answered
/// and /exit ends it with success.
#[test]
fn ctrl_c_stops_an_answer_and_keeps_the_chat() {
    let Some(m) = smollm() else { return };
    let mut child = Command::new(KILN)
        .args(["chat", &m, "--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "2000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Count from 1 to 1000, one number per line.\n").unwrap();
    // Both outputs read as they come, by a thread each.
    let collect = |mut from: Box<dyn std::io::Read + Send>| {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (seen, reader)
    };
    let (seen, reader) = collect(Box::new(child.stdout.take().unwrap()));
    let (errs, err_reader) = collect(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    while seen.lock().unwrap().len() < 20 {
        assert!(start.elapsed().as_secs() < 60, "no answer began");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    // The answer ends at "(stopped)"; what comes after on stdout is the next answer.
    while !String::from_utf8_lossy(&errs.lock().unwrap()).contains("(stopped)") {
        assert!(start.elapsed().as_secs() < 60, "no (stopped) after Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let at_stop = seen.lock().unwrap().len();
    stdin.write_all(b"What is 2 plus 2?\n/exit\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    err_reader.join().unwrap();
    let err = String::from_utf8_lossy(&errs.lock().unwrap()).into_owned();
    assert!(status.success(), "the chat goes on after Ctrl-C: {status:?} {err}");
    assert!(err.contains("(stopped)"), "{err}");
    let out = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(!out.contains("\n1000"), "the count was cut short: {out}");
    assert!(out[at_stop..].contains('4'), "the next question is answered: {}", &out[at_stop..]);
    assert!(err.matches("> ").count() >= 3, "the chat read on after the stop: {err}");
}
