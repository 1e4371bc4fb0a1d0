//! `kiln assistant`: answers customers from an FAQ file with a GGUF language model and a sentence encoder
//! (`kiln::llm::assistant`): one question (`--question`), a conversation on the terminal (its last exchanges
//! kept, `/reset` forgets them), or a scored run
//! over labelled questions (`--eval`: retrieval hit@1 and hit@3, answers holding the labelled key fact,
//! unanswerable questions declined).

use kiln::llm::assistant::{Assistant, read_faq};
use kiln::llm::{Lm, Message};
use kiln::pretrained::Encoder;
use kiln::{Error, Result};
use std::io::{BufRead, Write};
use std::path::Path;

pub struct AssistantArgs<'a> {
    pub faq: &'a Path,
    pub model: &'a Path,
    pub embedder: &'a Path,
    pub columns: [&'a str; 3],
    pub k: usize,
    pub threshold: f32,
    pub persona: Option<&'a str>,
}

fn open(a: &AssistantArgs) -> Result<Assistant> {
    if a.k == 0 {
        return Err(Error::Config("--k 0: want at least 1 FAQ entry per question".into()));
    }
    if !(-1.0..=1.0).contains(&a.threshold) {
        return Err(Error::Config(format!("--threshold {}: a cosine similarity, from -1 to 1", a.threshold)));
    }
    let entries = read_faq(a.faq, a.columns)?;
    if !a.model.is_file() {
        return Err(Error::Config(format!("--model {}: not a file; give a GGUF model (.gguf)", a.model.display())));
    }
    let lm = Lm::open(a.model)?;
    let encoder = Encoder::open(a.embedder)?;
    let mut asst = Assistant::new(lm, encoder, entries)?;
    asst.k = a.k;
    asst.threshold = a.threshold;
    if let Some(p) = a.persona {
        asst.persona = p.to_string();
    }
    Ok(asst)
}

fn print_piece(s: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes()).and_then(|_| out.flush()).is_ok()
}

/// Answers `q` after the conversation so far (`earlier`), and adds the exchange to it.
fn ask(asst: &mut Assistant, earlier: &mut Vec<Message>, q: &str) -> Result<()> {
    let reply = asst.answer_in(earlier, q, &mut print_piece)?;
    println!();
    earlier.extend([Message::user(q), Message::assistant(&reply.text)]);
    earlier.drain(..earlier.len().saturating_sub(kiln::llm::assistant::EARLIER));
    if !reply.declined {
        let names: Vec<String> = reply.sources.iter().map(|(id, s)| format!("{id} ({s:.2})")).collect();
        println!("(from FAQ entries: {})", names.join(", "));
    }
    Ok(())
}

pub fn run(a: &AssistantArgs, question: Option<&str>) -> Result<()> {
    let mut asst = open(a)?;
    if let Some(q) = question {
        return ask(&mut asst, &mut Vec::new(), q);
    }
    eprintln!("{} FAQ entries; ask a question (/reset starts over, /exit or Ctrl-D ends)", asst.entries.len());
    let mut earlier = Vec::new();
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| Error::io(Path::new("stdin"), &e))? == 0 {
            return Ok(());
        }
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                earlier.clear();
                eprintln!("(a new conversation)");
            }
            q => ask(&mut asst, &mut earlier, q)?,
        }
    }
}

/// Scores the assistant on labelled questions (columns `question`, `answer_id` (`none` for questions the
/// FAQ does not answer), `key_fact`) and prints the figures; with `json`, also writes them and each reply.
pub fn eval(a: &AssistantArgs, questions: &Path, json: Option<&Path>) -> Result<()> {
    let table = kiln::data::csv::read_table(
        questions,
        &kiln::data::csv::CsvOptions { missing: Vec::new(), ..Default::default() },
    )?;
    let col = |n: &str| -> Result<Vec<String>> {
        Ok(table.column(n)?.cells.iter().map(|c| c.clone().unwrap_or_default()).collect())
    };
    let (qs, ids, facts) = (col("question")?, col("answer_id")?, col("key_fact")?);
    if qs.is_empty() {
        return Err(Error::Data(format!("{}: no questions to evaluate", questions.display())));
    }
    let mut asst = open(a)?;
    let known: std::collections::HashSet<&str> = asst.entries.iter().map(|e| e.id.as_str()).collect();
    if let Some((r, id)) = ids.iter().enumerate().find(|(_, id)| *id != "none" && !known.contains(id.as_str())) {
        return Err(Error::Data(format!(
            "{} row {}: answer_id `{id}` is not an id of {}",
            questions.display(),
            r + 1,
            a.faq.display()
        )));
    }
    let (mut n, mut hit1, mut hit3, mut fact, mut wrongly_declined) = (0, 0, 0, 0, 0);
    let (mut none, mut declined) = (0, 0);
    let mut rows = Vec::new();
    let start = std::time::Instant::now();
    for ((q, id), f) in qs.iter().zip(&ids).zip(&facts) {
        let reply = asst.answer(q, &mut |_| true)?;
        let retrieved: Vec<&str> = reply.sources.iter().map(|s| s.0.as_str()).collect();
        if id == "none" {
            none += 1;
            declined += reply.declined as usize;
        } else {
            n += 1;
            hit1 += (reply.retrieved.first().map(|r| &r.0) == Some(id)) as usize;
            hit3 += reply.retrieved.iter().take(3).any(|r| &r.0 == id) as usize;
            fact += (!reply.declined && reply.text.to_lowercase().contains(&f.to_lowercase())) as usize;
            wrongly_declined += reply.declined as usize;
        }
        rows.push(serde_json::json!({"question": q, "answer_id": id, "key_fact": f, "reply": reply.text,
            "declined": reply.declined, "sources": retrieved}));
    }
    let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    println!("{n} answerable questions, {none} the FAQ does not answer ({:.0} s)", start.elapsed().as_secs_f64());
    println!("retrieval hit@1: {:.1}%  hit@3: {:.1}%", pct(hit1, n), pct(hit3, n));
    println!(
        "answers holding the key fact: {:.1}%  answerable questions declined: {:.1}%",
        pct(fact, n),
        pct(wrongly_declined, n)
    );
    println!("unanswerable questions declined: {:.1}%", pct(declined, none));
    if let Some(path) = json {
        let out = serde_json::json!({
            "answerable": n, "unanswerable": none, "hit_at_1": pct(hit1, n) / 100.0, "hit_at_3": pct(hit3, n) / 100.0,
            "key_fact": pct(fact, n) / 100.0, "answerable_declined": pct(wrongly_declined, n) / 100.0,
            "unanswerable_declined": pct(declined, none) / 100.0, "k": a.k, "threshold": a.threshold, "replies": rows,
        });
        kiln::io::write_atomic(path, serde_json::to_string_pretty(&out).expect("plain data").as_bytes())?;
    }
    Ok(())
}
