//! `kiln generate` and `kiln chat`: text from a GGUF language model (`kiln::llm`), streamed to the terminal
//! as it is made. `generate` continues a prompt (or, with --chat, answers it as one user turn through the
//! model's chat template); `chat` keeps a conversation, the earlier turns' keys and values kept in the cache
//! so each turn computes only its new tokens. Ctrl-C during an answer stops it and keeps what was said; at
//! the prompt it ends the chat.

use clap::Args;
use kiln::llm::{Finish, GenerateOptions, Lm, Message, SamplerSettings};
use kiln::{Error, Result};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How tokens are chosen and how much is made (shared by generate and chat).
#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// At most this many new tokens.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_tokens: usize,
    /// 0 for greedy (always the most likely token).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Draw among the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40, value_name = "K")]
    pub top_k: usize,
    /// Draw among the most likely tokens whose probabilities reach P.
    #[arg(long, default_value_t = 0.9, value_name = "P")]
    pub top_p: f32,
    /// Lower the odds of the last 64 tokens (1: off).
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    /// The same seed and settings give the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop before this text (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Positions the model keeps in view (prompt and answer together; at most the model's own).
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub context: usize,
    /// A system prompt (with --chat, or in `kiln chat`).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// A Hugging Face tokenizer.json to use instead of the one the GGUF file's metadata describes.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<std::path::PathBuf>,
    /// The reference arithmetic: weights dequantized to f32 block by block (slower; transformers' numbers).
    #[arg(long, conflicts_with = "fast8")]
    pub exact: bool,
    /// Activations rounded to 8 bits per block, as llama.cpp does (faster products, logits a few % away).
    #[arg(long)]
    pub fast8: bool,
}

impl SampleArgs {
    fn options(&self) -> Result<GenerateOptions> {
        if self.max_tokens == 0 {
            return Err(Error::Config("--max-tokens 0: want at least 1".into()));
        }
        if self.context < 2 {
            return Err(Error::Config(format!("--context {}: want at least 2 positions", self.context)));
        }
        let sampler = SamplerSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplerSettings::default()
        };
        sampler.check()?;
        if self.stop.iter().any(String::is_empty) {
            return Err(Error::Config("--stop \"\": an empty stop text would end every answer at once".into()));
        }
        Ok(GenerateOptions { max_tokens: self.max_tokens, sampler, stop: self.stop.clone() })
    }
}

fn open(model: &Path, a: &SampleArgs) -> Result<Lm> {
    if !model.is_file() {
        return Err(Error::Config(format!("{}: not a file; give a GGUF model (.gguf)", model.display())));
    }
    let mut lm = Lm::open(model)?;
    if let Some(t) = &a.tokenizer {
        lm.use_tokenizer_file(t)?;
    }
    lm.model.exact = a.exact;
    lm.model.fast8 = a.fast8;
    Ok(lm)
}

/// Prints each piece as it comes; true to go on.
fn print_piece(s: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes()).and_then(|_| out.flush()).is_ok()
}

fn report(g: &kiln::llm::Generated, secs: f64) {
    let why = match g.finish {
        Finish::Stop => "end of turn",
        Finish::StopString => "stop text",
        Finish::Length => "--max-tokens",
        Finish::Cancelled => "stopped",
    };
    eprintln!(
        "[{} prompt tokens, {} new in {:.2} s: {:.1} tokens/s; {why}]",
        g.prompt_tokens,
        g.tokens.len(),
        secs,
        g.tokens.len() as f64 / secs.max(1e-9)
    );
}

pub fn generate(model: &Path, prompt: &str, chat: bool, a: &SampleArgs, quiet: bool) -> Result<()> {
    let opts = a.options()?;
    if a.system.is_some() && !chat {
        return Err(Error::Config("--system goes with --chat (a plain prompt has no system turn)".into()));
    }
    if prompt.trim().is_empty() {
        return Err(Error::Config("the prompt is empty: give the text to continue or answer".into()));
    }
    let lm = open(model, a)?;
    let text = if chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::system(s));
        }
        msgs.push(Message::user(prompt));
        lm.chat_prompt(&msgs)?
    } else {
        prompt.to_string()
    };
    let ids = lm.encode(&text)?;
    let mut cache = lm.model.cache(a.context);
    let start = Instant::now();
    let g = lm.generate(&ids, &opts, &mut cache, &mut print_piece)?;
    println!();
    if !quiet {
        report(&g, start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Set while an answer is being made: Ctrl-C then stops the answer instead of the program.
static ANSWERING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

fn on_ctrl_c() {
    #[cfg(unix)]
    // SAFETY: the handler only touches atomics and calls _exit, both async-signal-safe.
    let _ = unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGINT, || {
            if ANSWERING.load(Ordering::SeqCst) {
                STOP.store(true, Ordering::SeqCst);
            } else {
                signal_hook::low_level::exit(130);
            }
        })
    };
}

pub fn chat(model: &Path, a: &SampleArgs) -> Result<()> {
    let opts = a.options()?;
    let lm = open(model, a)?;
    if lm.chat_template.is_none() {
        return Err(Error::Data(format!(
            "{}: the model has no chat template (tokenizer.chat_template); use kiln generate with a plain prompt",
            model.display()
        )));
    }
    on_ctrl_c();
    let start_messages: Vec<Message> = a.system.iter().map(|s| Message::system(s)).collect();
    let mut messages = start_messages.clone();
    let mut cache = lm.model.cache(a.context);
    let stdin = std::io::stdin();
    eprintln!("chatting with {} (/reset starts over, /exit or Ctrl-D ends; Ctrl-C stops an answer)", model.display());
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| Error::io(Path::new("stdin"), &e))? == 0 {
            eprintln!();
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages = start_messages.clone();
                cache.clear();
                eprintln!("(a new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(line));
        let mut ids = lm.encode(&lm.chat_prompt(&messages)?)?;
        // A conversation past the context forgets its oldest turns (the system prompt stays), leaving room
        // for an answer.
        let first = start_messages.len();
        while ids.len() + opts.max_tokens.min(64) >= cache.capacity() && messages.len() > first + 1 {
            messages.drain(first..(first + 2).min(messages.len() - 1));
            eprintln!("(the conversation outgrew the context; its oldest turn is forgotten)");
            ids = lm.encode(&lm.chat_prompt(&messages)?)?;
        }
        if ids.len() >= cache.capacity() {
            // One message too long for the context on its own: refused, and the conversation goes on.
            messages.pop();
            eprintln!(
                "error: this message makes a prompt of {} tokens; the context holds {} (write a shorter one, or \
                 start kiln chat with a larger --context)",
                ids.len(),
                cache.capacity()
            );
            continue;
        }
        STOP.store(false, Ordering::SeqCst);
        ANSWERING.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let g = lm.generate(&ids, &opts, &mut cache, &mut |s| print_piece(s) && !STOP.load(Ordering::SeqCst));
        ANSWERING.store(false, Ordering::SeqCst);
        let g = g?;
        println!();
        if g.finish == Finish::Cancelled {
            eprintln!("(stopped)");
        }
        if g.finish == Finish::Length {
            report(&g, start.elapsed().as_secs_f64());
        }
        messages.push(Message::assistant(&g.text));
    }
}
