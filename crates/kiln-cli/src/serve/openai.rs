//! OpenAI-shaped routes for the language models (GGUF files) and text encoders (Hugging Face folders) that
//! `kiln serve` serves beside saved models, so that OpenAI's client libraries work against it:
//! `POST /v1/chat/completions` (the model's chat template; `stream: true` sends server-sent events of
//! `chat.completion.chunk`s, then `data: [DONE]`) and `POST /v1/embeddings`.
//!
//! Bounds: at most `--max-generations` generations at once (503 with Retry-After beyond); each has its own KV
//! cache of `--context` positions (its memory is printed at start: layers x 2 x positions x kv width x 4
//! bytes): a prompt that does not fit is refused, and `max_tokens` is lowered to what fits. A generation stops when its client goes away:
//! a stream whose connection closed, or a request whose connection closed before its answer.

// The request readers below return the error answer itself (an axum Response, 128 bytes), once per request.
#![allow(clippy::result_large_err)]

use super::{Shared, error, kiln_error};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln::llm::assistant::{EARLIER, kept_turns};
use kiln::llm::{Finish, GenerateOptions, Lm, Message, SamplerSettings};
use kiln::pretrained::Encoder;
use kiln::{Error, Result};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// A language model served: the whole GGUF model, shared by its generations (each with its own cache).
pub struct LmServed {
    pub name: String,
    pub path: PathBuf,
    pub lm: Lm,
    pub loaded: u64,
}

/// A text encoder served; `Encoder::embed` takes `&mut self` (its graph), so requests take turns.
pub struct EmbedServed {
    pub name: String,
    pub path: PathBuf,
    pub encoder: Mutex<Encoder>,
    pub dim: usize,
    pub loaded: u64,
}

/// The FAQ assistant (`kiln assistant`) served as a chat model: the last user message is the question; the
/// answer comes from the retrieved entries (or is the hand-off), with kiln's `sources` and `declined` added.
/// `Assistant::answer` takes `&mut self` (its encoder), so questions take turns.
pub struct AssistantServed {
    pub name: String,
    pub faq: PathBuf,
    pub assistant: Mutex<kiln::llm::assistant::Assistant>,
    pub loaded: u64,
}

pub fn open_assistant(spec: &str, model: &Path, embedder: &Path) -> Result<AssistantServed> {
    let (name, faq) = spec.split_once('=').filter(|(n, f)| !n.is_empty() && !f.is_empty()).ok_or_else(|| {
        Error::Invalid(format!("--assistant `{spec}`: want NAME=FAQ.csv (a name for /v1/chat/completions' model)"))
    })?;
    let entries = kiln::llm::assistant::read_faq(Path::new(faq), ["id", "question", "answer"])?;
    let assistant = kiln::llm::assistant::Assistant::new(Lm::open(model)?, Encoder::open(embedder)?, entries)?;
    Ok(AssistantServed {
        name: name.to_string(),
        faq: PathBuf::from(faq),
        assistant: Mutex::new(assistant),
        loaded: super::now(),
    })
}

pub fn assistant_card(s: &AssistantServed) -> Value {
    let a = s.assistant.lock().unwrap_or_else(|e| e.into_inner());
    json!({"id": s.name, "object": "model", "created": s.loaded, "owned_by": "kiln", "kind": "assistant",
           "faq": s.faq.display().to_string(), "entries": a.entries.len(), "k": a.k, "threshold": a.threshold})
}

/// A chat completion from the assistant: the question is the last user message, and the messages before it
/// are the conversation so far (`Assistant::answer_in` keeps its last exchanges).
async fn assistant_completion(app: Shared, name: String, body: Value) -> Response {
    let mut messages = match chat_messages(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(last) = messages.iter().rposition(|m| m.role == "user") else {
        return bad("`messages` must hold a user message (a string): the customer's question");
    };
    if let Some(i) = messages.iter().skip(last + 1).position(|m| m.role != "system") {
        return bad(format!(
            "messages[{}] is the assistant's: the conversation must end with the customer's question (a user message)",
            last + 1 + i
        ));
    }
    messages.truncate(last + 1);
    let question = messages.pop().map(|m| m.content).unwrap_or_default();
    if question.len() > 4000 {
        return bad(format!("the question is {} bytes; the assistant takes 4,000 at most", question.len()));
    }
    let earlier = messages;
    // What Assistant::answer_in reads of them.
    let kept: usize = kept_turns(&earlier).iter().map(|m| m.content.len()).sum();
    if kept > 16_000 {
        return bad(format!(
            "the last {EARLIER} messages before the question hold {kept} bytes; the assistant takes 16,000 at most"
        ));
    }
    let stream = match stream_flag(&body) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // The answer's length bound, as for a language model (the assistant's own, 96 tokens, without one).
    let max_tokens = match body.get("max_completion_tokens").or(body.get("max_tokens")) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|&n| n > 0 && n as usize <= app.context) {
            Some(n) => Some(n as usize),
            None => return bad(format!("`max_tokens` must be a whole number from 1 to {} (--context)", app.context)),
        },
    };
    let Ok(permit) = app.generations.clone().try_acquire_owned() else {
        return busy(format!("{} generations in progress, the server's bound", app.max_generations));
    };
    let served = app.assistants[&name].clone();
    complete(name, stream, permit, "answer", move |on_text| {
        let mut a = served.assistant.lock().unwrap_or_else(|e| e.into_inner());
        // The whole answer is trimmed (Reply::text), so the pieces hold back leading whitespace and any
        // whitespace not yet followed by text: streamed, they join to exactly the answer given whole.
        let (mut started, mut pending) = (false, String::new());
        let mut trimmed = |piece: &str| {
            pending.push_str(piece);
            if !started {
                let kept = pending.trim_start().len();
                pending.drain(..pending.len() - kept);
                started = !pending.is_empty();
            }
            let keep = pending.len() - pending.trim_end().len();
            let send: String = pending.drain(..pending.len() - keep).collect();
            send.is_empty() || on_text(&send)
        };
        let default = a.max_tokens;
        a.max_tokens = max_tokens.unwrap_or(default);
        let r = a.answer_in(&earlier, &question, &mut trimmed);
        a.max_tokens = default;
        let r = r?;
        let sources: Vec<Value> = r.sources.iter().map(|(id, s)| json!({"id": id, "similarity": s})).collect();
        let fields = json!({"sources": sources, "declined": r.declined});
        let finish = if r.cut { "length" } else { "stop" };
        Ok(Answer { text: r.text, finish, whole: fields.clone(), last: fields })
    })
    .await
}

/// A finished answer: its text, why it ended, and kiln's fields beside `choices`, in the whole completion
/// (`whole`: usage, sources) and on the last streamed chunk (`last`).
struct Answer {
    text: String,
    finish: &'static str,
    whole: Value,
    last: Value,
}

/// `run` (a generation, given where its pieces go) on a blocking thread, holding `permit` until it ends:
/// streamed as `chat.completion.chunk` events then `[DONE]` (it stops when the client goes and a send
/// fails), or answered whole as one `chat.completion` (it stops when the client goes and the handler's
/// future is dropped). `what` names it in the 500 of a panic.
async fn complete<F>(name: String, stream: bool, permit: OwnedSemaphorePermit, what: &str, run: F) -> Response
where
    F: FnOnce(&mut dyn FnMut(&str) -> bool) -> Result<Answer> + Send + 'static,
{
    let id = format!("chatcmpl-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let created = super::now();
    if stream {
        let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
        let chunk = move |delta: Value, finish: Option<&str>, more: Value| {
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": name,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if let (Some(c), Value::Object(more)) = (c.as_object_mut(), more) {
                c.extend(more);
            }
            event(&c)
        };
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            if tx.blocking_send(chunk(json!({"role": "assistant", "content": ""}), None, json!({}))).is_err() {
                return;
            }
            let mut on_text = |piece: &str| tx.blocking_send(chunk(json!({"content": piece}), None, json!({}))).is_ok();
            let last = match run(&mut on_text) {
                Ok(a) => chunk(json!({}), Some(a.finish), a.last),
                Err(e) => event(&json!({"error": {"message": e.to_string(), "type": "server_error"}})),
            };
            let _ = tx.blocking_send(last);
            let _ = tx.blocking_send("data: [DONE]\n\n".to_string());
        });
        return event_stream(rx);
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let task = tokio::task::spawn_blocking(move || {
        let _held = permit;
        run(&mut |_: &str| !cancelled.load(Ordering::Relaxed))
    });
    match task.await {
        Ok(Ok(a)) => {
            let mut c = json!({"id": id, "object": "chat.completion", "created": created, "model": name,
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text},
                                            "finish_reason": a.finish}]});
            if let (Some(c), Value::Object(more)) = (c.as_object_mut(), a.whole) {
                c.extend(more);
            }
            Json(c).into_response()
        }
        Ok(Err(e)) => kiln_error(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the {what} failed inside kiln (a bug)")),
    }
}

/// What a model path holds.
pub enum PathKind {
    Gguf,
    Encoder,
    Saved,
}

pub fn kind_of(path: &Path) -> PathKind {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        PathKind::Gguf
    } else if path.is_dir() && path.join("config.json").is_file() && path.join("tokenizer.json").is_file() {
        PathKind::Encoder
    } else {
        PathKind::Saved
    }
}

/// Bytes of one generation's KV cache at `context` positions.
pub fn cache_bytes(lm: &Lm, context: usize) -> usize {
    let c = &lm.model.config;
    c.layers * 2 * context.min(c.context) * c.kv_heads * c.head_dim * 4
}

pub fn lm_card(s: &LmServed) -> Value {
    let c = &s.lm.model.config;
    json!({"id": s.name, "object": "model", "created": s.loaded, "owned_by": "kiln", "kind": "language_model",
           "path": s.path.display().to_string(), "context": c.context, "vocab": c.vocab,
           "chat_template": s.lm.chat_template.is_some()})
}

pub fn embedder_card(s: &EmbedServed) -> Value {
    json!({"id": s.name, "object": "model", "created": s.loaded, "owned_by": "kiln", "kind": "embedder",
           "path": s.path.display().to_string(), "dimensions": s.dim})
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// 503 with Retry-After: `why` the request cannot start now.
fn busy(why: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, format!("busy: {why}; retry shortly"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// One server-sent event.
fn event(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// The events a generation sends into `rx`, as a `text/event-stream` answer; the generation sees its
/// sends fail (and stops) when the client goes away and the stream is dropped.
fn event_stream(rx: tokio::sync::mpsc::Receiver<String>) -> Response {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, std::convert::Infallible>(s), rx))
    });
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(events))
        .into_response()
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// The request's `model`, among the served models of one kind (`what`); a 404 names those there are.
fn model_name(body: &Value, names: Vec<&String>, what: &str) -> std::result::Result<String, Response> {
    let Some(name) = body.get("model").and_then(Value::as_str) else {
        return Err(bad("`model` (a string) is required"));
    };
    if names.iter().any(|n| *n == name) {
        return Ok(name.to_string());
    }
    let list: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let have = if list.is_empty() { "none".to_string() } else { list.join(", ") };
    Err(error(StatusCode::NOT_FOUND, format!("no {what} named `{name}` here; this server has {have}")))
}

/// A message's content: a string, or OpenAI's list of parts of which the text ones are joined.
fn content(v: &Value, i: usize) -> std::result::Result<String, Response> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(t)) => Ok(t.to_string()),
                _ => Err(bad(format!(
                    "messages[{i}]: only text parts are understood ({{\"type\": \"text\", \"text\": ...}})"
                ))),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(|p| p.join("")),
        _ => Err(bad(format!("messages[{i}].content must be a string"))),
    }
}

/// A request's `messages` (a developer message read as a system one).
fn chat_messages(body: &Value) -> std::result::Result<Vec<Message>, Response> {
    let Some(msgs) = body.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return Err(bad("`messages` must be a non-empty array of {\"role\", \"content\"}"));
    };
    let mut messages = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !["system", "user", "assistant", "developer"].contains(&role) {
            return Err(bad(format!("messages[{i}].role `{role}`: want system, developer, user or assistant")));
        }
        let role = if role == "developer" { "system" } else { role };
        messages.push(Message::new(role, &content(m.get("content").unwrap_or(&Value::Null), i)?));
    }
    Ok(messages)
}

/// The generation a request asks for: its messages and options.
fn chat_request(body: &Value, context: usize) -> std::result::Result<(Vec<Message>, GenerateOptions, bool), Response> {
    let messages = chat_messages(body)?;
    if body.get("n").is_some_and(|n| !n.is_null() && n.as_u64() != Some(1)) {
        return Err(bad("`n` other than 1 is not supported"));
    }
    for field in ["tools", "functions", "logprobs", "top_logprobs", "response_format", "tool_choice"] {
        let v = body.get(field).filter(|v| !v.is_null() && **v != Value::Bool(false));
        let plain_text = field == "response_format" && v.and_then(|v| v.get("type")) == Some(&json!("text"));
        if v.is_some() && !plain_text {
            return Err(bad(format!("`{field}` is not supported by kiln serve")));
        }
    }
    let num = |k: &str| body.get(k).filter(|v| !v.is_null());
    let mut sampler = SamplerSettings::default();
    if let Some(t) = num("temperature") {
        sampler.temperature = t.as_f64().ok_or_else(|| bad("`temperature` must be a number"))? as f32;
    }
    if let Some(p) = num("top_p") {
        sampler.top_p = p.as_f64().ok_or_else(|| bad("`top_p` must be a number"))? as f32;
    }
    if let Some(s) = num("seed") {
        sampler.seed = s.as_u64().ok_or_else(|| bad("`seed` must be a whole number"))?;
    }
    if let Some(p) = num("frequency_penalty") {
        // OpenAI's additive penalty has no exact match here; a positive one turns on the repeat penalty.
        let p = p.as_f64().ok_or_else(|| bad("`frequency_penalty` must be a number"))?;
        sampler.repeat_penalty = (1.0 + p.max(0.0) / 2.0) as f32;
    }
    // Named by the request's own fields (`check` names the command line's flags).
    if let Some(o) = sampler.out_of_range() {
        return Err(bad(format!("`{}` {}: want {}", o.field, o.value, o.want)));
    }
    let max_tokens = match num("max_completion_tokens").or(num("max_tokens")) {
        Some(v) => {
            v.as_u64().filter(|&n| n > 0).ok_or_else(|| bad("`max_tokens` must be a positive whole number"))? as usize
        }
        None => context,
    };
    let stop = match num("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) && a.len() <= 4 => {
            a.iter().filter_map(|s| s.as_str().map(String::from)).collect()
        }
        Some(_) => return Err(bad("`stop` must be a string or up to 4 strings")),
    };
    if stop.iter().any(String::is_empty) {
        return Err(bad("`stop` strings must not be empty"));
    }
    Ok((messages, GenerateOptions { max_tokens, sampler, stop }, stream_flag(body)?))
}

/// `stream`: true or false (or left out), as OpenAI takes it; `"yes"` had been taken as false in silence.
fn stream_flag(body: &Value) -> std::result::Result<bool, Response> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad("`stream` must be true or false")),
    }
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Length => "length",
        _ => "stop",
    }
}

/// Sets `cancelled` when dropped: the handler's future is dropped when its client goes away.
struct CancelOnDrop(Arc<AtomicBool>);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub async fn chat_completions(
    State(app): State<Shared>,
    body: std::result::Result<Json<Value>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(r) => return error(r.status(), r.body_text()),
    };
    let name = match model_name(&body, app.lms.keys().chain(app.assistants.keys()).collect(), "language model") {
        Ok(n) => n,
        Err(r) => return r,
    };
    if app.assistants.contains_key(&name) {
        return assistant_completion(app.clone(), name, body).await;
    }
    let (messages, mut opts, stream) = match chat_request(&body, app.context) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let served = app.lms[&name].clone();
    let room = app.context.min(served.lm.model.config.context);
    // A token holds at most a few dozen characters: a conversation far past that is refused before it is
    // tokenized (which would take seconds), and tokenizing runs off the threads that answer other requests.
    let chars: usize = messages.iter().map(|m| m.content.len()).sum();
    if chars > room * 64 {
        return bad(format!("the conversation is {chars} bytes, far more than this server's context of {room} tokens"));
    }
    let prompt =
        match tokio::task::block_in_place(|| served.lm.chat_prompt(&messages).and_then(|p| served.lm.encode(&p))) {
            Ok(ids) => ids,
            Err(e) => return kiln_error(&e),
        };
    if prompt.len() >= room {
        return bad(format!(
            "the conversation is {} tokens; this server's context holds {room} (shorten it, or restart with a larger \
             --context)",
            prompt.len()
        ));
    }
    opts.max_tokens = opts.max_tokens.min(room - prompt.len());
    let Ok(permit) = app.generations.clone().try_acquire_owned() else {
        return busy(format!("{} generations in progress, the server's bound", app.max_generations));
    };
    complete(name, stream, permit, "generation", move |on_text| {
        let g = served.lm.generate(&prompt, &opts, &mut served.lm.model.cache(room), on_text)?;
        let (prompt_tokens, completion_tokens) = (g.prompt_tokens, g.tokens.len());
        let usage = json!({"usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                     "total_tokens": prompt_tokens + completion_tokens}});
        Ok(Answer { text: g.text, finish: finish_reason(g.finish), whole: usage, last: json!({}) })
    })
    .await
}

pub async fn embeddings(State(app): State<Shared>, body: std::result::Result<Json<Value>, JsonRejection>) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(r) => return error(r.status(), r.body_text()),
    };
    let name = match model_name(&body, app.embedders.keys().collect(), "embedder") {
        Ok(n) => n,
        Err(r) => return r,
    };
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(|s| s.as_str().map(String::from)).collect()
        }
        _ => return bad("`input` must be a string or a non-empty array of strings"),
    };
    if texts.len() > app.max_instances {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} texts in one request; this server takes {} at most", texts.len(), app.max_instances),
        );
    }
    // OpenAI's Python client asks for base64 (little-endian f32 bytes) unless told otherwise.
    let base64 = match body.get("encoding_format").filter(|v| !v.is_null()) {
        None => false,
        Some(v) if v == "float" => false,
        Some(v) if v == "base64" => true,
        Some(_) => return bad("`encoding_format` must be \"float\" or \"base64\""),
    };
    if texts.iter().any(String::is_empty) {
        return bad("`input` holds an empty string");
    }
    // OpenAI's shortened embeddings: this encoder makes vectors of one size only.
    let dim = app.embedders[&name].dim;
    if let Some(d) = body.get("dimensions").filter(|v| !v.is_null())
        && d.as_u64() != Some(dim as u64)
    {
        return bad(format!(
            "`dimensions` {d}: this encoder makes vectors of {dim} values; leave it out or give {dim}"
        ));
    }
    // Embedding shares the bound on predictions in progress (503 beyond), and stops when its client goes.
    let Ok(permit) = app.slots.clone().try_acquire_owned() else {
        return busy("the server's bound on work in progress".into());
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancelled.clone());
    let served = app.embedders[&name].clone();
    let task = tokio::task::spawn_blocking(move || -> Result<(Vec<Vec<f32>>, usize)> {
        let _held = permit;
        if cancelled.load(Ordering::Relaxed) {
            return Err(Error::Invalid("the client went away".into()));
        }
        let mut enc = served.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tokens: usize = enc.tokenize(&refs)?.ids.iter().map(Vec::len).sum();
        let (vectors, _) = enc.embed(&refs, 32, &mut |_| {})?;
        Ok((vectors, tokens))
    });
    match task.await {
        Ok(Ok((vectors, tokens))) => {
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let embedding = if base64 {
                        use base64::Engine;
                        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        json!(v)
                    };
                    json!({"object": "embedding", "index": i, "embedding": embedding})
                })
                .collect();
            Json(json!({"object": "list", "data": data, "model": name,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
            .into_response()
        }
        Ok(Err(e)) => kiln_error(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the embedding failed inside kiln (a bug)"),
    }
}

/// Opens a GGUF model or an encoder folder for serving.
pub fn open_lm(name: &str, path: &Path) -> Result<LmServed> {
    Ok(LmServed { name: name.to_string(), path: path.to_path_buf(), lm: Lm::open(path)?, loaded: super::now() })
}

pub fn open_embedder(name: &str, path: &Path) -> Result<EmbedServed> {
    let encoder = Encoder::open(path)?;
    let dim = encoder.dim();
    Ok(EmbedServed {
        name: name.to_string(),
        path: path.to_path_buf(),
        encoder: Mutex::new(encoder),
        dim,
        loaded: super::now(),
    })
}
