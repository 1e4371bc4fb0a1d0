//! A customer-service assistant that answers from a company's own FAQ: each FAQ entry (its question and
//! answer) is embedded once with a sentence encoder (`pretrained::Encoder`, e.g. all-MiniLM-L6-v2) into an
//! index; a customer's question is embedded the same way, the `k` closest entries are retrieved, and the
//! language model answers from them alone, the entries it was given named after the answer. When no entry
//! is close enough (cosine below `threshold`), it does not ask the model at all: it says that it does not
//! know and offers a human colleague, rather than invent an answer. In a conversation (`answer_in`), the last
//! exchanges stand before the question in the prompt, and a follow-up that retrieves nothing close enough on
//! its own ("and to Switzerland?") is retrieved again after the customer's previous question.

use super::{Finish, GenerateOptions, Lm, Message, SamplerSettings};
use crate::index::{Document, Index, IndexInfo};
use crate::pretrained::Encoder;
use crate::{Error, Result};
use std::path::Path;

/// One FAQ entry.
#[derive(Clone, Debug, PartialEq)]
pub struct FaqEntry {
    pub id: String,
    pub question: String,
    pub answer: String,
}

/// What the assistant said, and from what.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub text: String,
    /// The entries given to the model (id, cosine), closest first; empty when it declined.
    pub sources: Vec<(String, f32)>,
    /// The entries retrieved, closest first, declined or not (what retrieval is scored on).
    pub retrieved: Vec<(String, f32)>,
    /// No entry was close enough: the reply is the hand-off, not a model's answer.
    pub declined: bool,
    /// The answer was cut at its length bound (`max_tokens`) rather than ended by the model.
    pub cut: bool,
}

/// Earlier messages of a conversation kept in the prompt: the last two exchanges (each costs prompt time,
/// and a 135M model makes little of older ones).
pub const EARLIER: usize = 4;

/// The earlier messages the next answer reads: the last `EARLIER` user and assistant turns that say
/// something, oldest first (a system message is the assistant's own persona; a blank turn says nothing).
pub fn kept_turns(earlier: &[Message]) -> Vec<Message> {
    let said: Vec<&Message> = earlier
        .iter()
        .filter(|m| (m.role == "user" || m.role == "assistant") && !m.content.trim().is_empty())
        .collect();
    said[said.len().saturating_sub(EARLIER)..].iter().map(|&m| m.clone()).collect()
}

/// The hand-off when the FAQ does not cover a question.
pub const DECLINE: &str = "I'm sorry, I don't know the answer to that, and I'd rather not guess. Would you like \
                           me to pass your question to a colleague from our customer service team?";

pub struct Assistant {
    pub lm: Lm,
    pub encoder: Encoder,
    pub entries: Vec<FaqEntry>,
    index: Index,
    /// Entries given to the model per question.
    pub k: usize,
    /// The least cosine similarity of the closest entry for the model to answer at all.
    pub threshold: f32,
    /// Who the assistant is (the system prompt's first line).
    pub persona: String,
    pub max_tokens: usize,
}

/// Reads `id`, `question` and `answer` columns of a CSV (or JSON lines) FAQ; a missing column or an empty
/// answer is an error naming the file and row.
pub fn read_faq(path: &Path, columns: [&str; 3]) -> Result<Vec<FaqEntry>> {
    let table = crate::data::csv::read_table(
        path,
        &crate::data::csv::CsvOptions { missing: Vec::new(), ..Default::default() },
    )?;
    let [id, q, a] = columns.map(|c| table.column(c).map(|col| &col.cells));
    let (id, q, a) = (id?, q?, a?);
    let mut out: Vec<FaqEntry> = Vec::with_capacity(a.len());
    for r in 0..a.len() {
        let cell = |c: &Vec<Option<String>>| c[r].clone().unwrap_or_default().trim().to_string();
        let entry = FaqEntry { id: cell(id), question: cell(q), answer: cell(a) };
        if entry.answer.is_empty() || entry.id.is_empty() {
            return Err(Error::Data(format!(
                "{} row {}: an FAQ entry needs an id and an answer",
                path.display(),
                r + 1
            )));
        }
        // An answer names the entries it used by id: two entries of one id could not be told apart.
        if let Some(first) = out.iter().position(|e| e.id == entry.id) {
            return Err(Error::Data(format!(
                "{} row {}: id `{}` is already the id of row {}; each FAQ entry needs its own",
                path.display(),
                r + 1,
                entry.id,
                first + 1
            )));
        }
        out.push(entry);
    }
    if out.is_empty() {
        return Err(Error::Data(format!("{}: no FAQ entries", path.display())));
    }
    Ok(out)
}

impl Assistant {
    /// Embeds every entry ("question answer") into the index.
    pub fn new(lm: Lm, mut encoder: Encoder, entries: Vec<FaqEntry>) -> Result<Assistant> {
        let texts: Vec<String> = entries.iter().map(|e| format!("{} {}", e.question, e.answer)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (vecs, _) = encoder.embed(&refs, 32, &mut |_| {})?;
        let info = IndexInfo {
            format: String::new(),
            model: Default::default(),
            source: Default::default(),
            column: String::new(),
            documents: entries.len(),
            dim: encoder.dim(),
            approximate: None,
        };
        let docs = texts.into_iter().enumerate().map(|(i, text)| Document { row: i + 1, text }).collect();
        let index = Index::from_vectors(info, docs, vecs)?;
        Ok(Assistant {
            lm,
            encoder,
            entries,
            index,
            k: 3,
            threshold: 0.5,
            persona: "You are the customer-service assistant of an online shop.".into(),
            max_tokens: 96,
        })
    }

    /// The `k` entries closest to `question` (index into `entries`, cosine), closest first.
    pub fn retrieve(&mut self, question: &str) -> Result<Vec<(usize, f32)>> {
        let (v, _) = self.encoder.embed(&[question], 1, &mut |_| {})?;
        Ok(self.index.search(&v[0], self.k)?.iter().map(|h| (h.doc.row - 1, h.score)).collect())
    }

    /// The prompt for `question` given the retrieved entries: the conversation's `earlier` messages, then the
    /// entries in the user's turn with an instruction to answer from them (a 135M model follows that far
    /// better than facts in a system prompt).
    pub fn messages(&self, earlier: &[Message], question: &str, hits: &[(usize, f32)]) -> Vec<Message> {
        let mut facts = String::new();
        for &(i, _) in hits {
            let e = &self.entries[i];
            facts += &format!("- {} {}\n", e.question, e.answer);
        }
        let mut out = vec![Message::system(&self.persona)];
        out.extend_from_slice(earlier);
        out.push(Message::user(&format!(
            "Our FAQ says:\n{facts}\nUsing only the FAQ above, answer this customer question in one or two \
             sentences: {question}"
        )));
        out
    }

    /// Answers `question`, streaming the text to `on_text`.
    pub fn answer(&mut self, question: &str, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Reply> {
        self.answer_in(&[], question, on_text)
    }

    /// Answers `question` as the next turn of a conversation whose earlier messages are `earlier` (oldest
    /// first): its `kept_turns` go before it in the prompt, and when the question alone retrieves nothing
    /// close enough, it is retrieved again after the customer's previous kept question (a follow-up leans on
    /// it).
    pub fn answer_in(
        &mut self,
        earlier: &[Message],
        question: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Reply> {
        let question = question.trim();
        if question.is_empty() {
            return Err(Error::Invalid("the question is empty".into()));
        }
        let kept = kept_turns(earlier);
        let mut hits = self.retrieve(question)?;
        if hits.first().is_none_or(|h| h.1 < self.threshold)
            && let Some(previous) = kept.iter().rev().find(|m| m.role == "user")
        {
            let again = self.retrieve(&format!("{} {question}", previous.content.trim()))?;
            if again.first().is_some_and(|h| h.1 >= self.threshold) {
                hits = again;
            }
        }
        let retrieved: Vec<(String, f32)> = hits.iter().map(|&(i, s)| (self.entries[i].id.clone(), s)).collect();
        if hits.first().is_none_or(|h| h.1 < self.threshold) {
            on_text(DECLINE);
            return Ok(Reply { text: DECLINE.into(), sources: Vec::new(), retrieved, declined: true, cut: false });
        }
        let prompt = self.lm.chat_prompt(&self.messages(&kept, question, &hits))?;
        let ids = self.lm.encode(&prompt)?;
        // Greedy, with llama.cpp's repetition penalty: a small model otherwise loops on one sentence.
        let sampler = SamplerSettings { repeat_penalty: 1.2, ..SamplerSettings::greedy() };
        let opts = GenerateOptions { max_tokens: self.max_tokens, sampler, stop: vec!["\n\n".into()] };
        let mut cache = self.lm.model.cache(ids.len() + self.max_tokens + 1);
        let g = self.lm.generate(&ids, &opts, &mut cache, on_text)?;
        let cut = g.finish == Finish::Length;
        Ok(Reply { text: g.text.trim().to_string(), sources: retrieved.clone(), retrieved, declined: false, cut })
    }
}
