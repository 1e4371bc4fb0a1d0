//! `kiln serve [NAME=]MODEL...`: saved models over HTTP from one process (axum on tokio; no other service).
//!
//! Routes: `POST /v1/models/{name}/predict` (instances.rs says what it reads), `POST
//! /v1/models/{name}/recommend` for recommenders (recommend.rs), `GET /v1/models` (OpenAI's
//! list shape with kiln's fields), `GET /v1/models/{name}`, `POST /v1/models/{name}/reload`, `/healthz`,
//! `/readyz`, `/metrics` (Prometheus), `/openapi.json`. Every answer that is not a success is JSON in
//! OpenAI's error shape, `{"error": {"message", "type", "code"}}`, with its status.
//!
//! Bounds: `--api-key-file` (one key per line; `Authorization: Bearer KEY`, compared in constant time; 401
//! without; health and readiness stay open), a body limit (413), a time limit per prediction (504), a bound
//! on predictions in progress (503 with Retry-After beyond it, rather than a queue that grows without end).
//! Predictions go through each model's batcher (batch.rs: concurrent requests run as one batch) on tokio's
//! blocking threads, one model shared by all (`Sequential::predict(&self)`); a panic in one is a 500, never a
//! dropped connection. SIGTERM or Ctrl-C: readiness turns 503, the listener
//! closes, requests in progress finish. `POST .../reload` or SIGHUP reads a model file again and swaps it in
//! whole (a request sees the old model or the new, never a mix); a file that does not load leaves the old
//! one serving.

mod batch;
mod idle;
mod instances;
mod metrics;
mod openai;
mod recommend;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln::model::Sequential;
use kiln::{Error, Result};
use metrics::Metrics;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `kiln serve`'s options (clap's, flattened into the command).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Models as [NAME=]PATH: a model file or a run folder (named after the folder unless NAME= is given);
    /// none when --assistant is served alone.
    #[arg(required_unless_present = "assistant", value_name = "[NAME=]MODEL")]
    pub models: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A file of API keys, one per line: requests must send `Authorization: Bearer KEY`.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Largest request body accepted (413 beyond).
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Time limit of one prediction request (504 beyond).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Predictions in progress at most; more are refused with 503 and Retry-After.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_in_progress: usize,
    /// Instances in one request at most (413 beyond).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_instances: usize,
    /// Dynamic batching: concurrent requests for a model run as one batch of up to N instances (1: off).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_batch: usize,
    /// How long a request waits for others to join its batch.
    #[arg(long, default_value_t = 0, value_name = "MICROSECONDS")]
    pub batch_wait_us: u64,
    /// Language models (.gguf): generations at once; more are refused with 503 and Retry-After.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_generations: usize,
    /// Language models: positions of each generation's cache (prompt and answer together).
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub context: usize,
    /// Close a connection after this long with no traffic either way (a client that never finishes its
    /// request); keep it above the longest answer that sends nothing until it ends.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    pub idle_timeout_ms: u64,
    /// Serve the FAQ assistant (as `kiln assistant`: columns id, question, answer) as a chat model of
    /// this name: POST /v1/chat/completions with "model": NAME.
    #[arg(long, value_name = "NAME=FAQ.csv", requires_all = ["assistant_model", "assistant_embedder"])]
    pub assistant: Option<String>,
    /// The assistant's language model (.gguf).
    #[arg(long, value_name = "MODEL.gguf", requires = "assistant")]
    pub assistant_model: Option<PathBuf>,
    /// The assistant's encoder folder (e.g. all-MiniLM-L6-v2).
    #[arg(long, value_name = "DIR", requires = "assistant")]
    pub assistant_embedder: Option<PathBuf>,
}

/// One served model: its file, and the model now answering (swapped whole on reload).
struct Served {
    name: String,
    path: PathBuf,
    model: RwLock<Arc<Sequential>>,
    /// When the model now serving was loaded (seconds since 1970), OpenAI's `created`.
    loaded: RwLock<u64>,
}

impl Served {
    fn current(&self) -> Arc<Sequential> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct App {
    models: BTreeMap<String, Arc<Served>>,
    lms: BTreeMap<String, Arc<openai::LmServed>>,
    embedders: BTreeMap<String, Arc<openai::EmbedServed>>,
    assistants: BTreeMap<String, Arc<openai::AssistantServed>>,
    recommenders: BTreeMap<String, Arc<recommend::RecServed>>,
    /// Permits for generations in progress, and positions per generation.
    generations: Arc<tokio::sync::Semaphore>,
    max_generations: usize,
    context: usize,
    /// Each model's batcher (batch.rs), by name.
    batchers: BTreeMap<String, tokio::sync::mpsc::UnboundedSender<batch::Job>>,
    keys: Vec<Vec<u8>>,
    metrics: Arc<Metrics>,
    /// Permits for predictions in progress.
    slots: Arc<tokio::sync::Semaphore>,
    max_in_progress: usize,
    max_instances: usize,
    timeout: Duration,
    stopping: AtomicBool,
}

type Shared = Arc<App>;

impl App {
    /// Every served name: saved models, language models, embedders, assistants.
    fn names(&self) -> Vec<&str> {
        let all = self.models.keys().chain(self.lms.keys()).chain(self.embedders.keys()).chain(self.assistants.keys());
        let all = all.chain(self.recommenders.keys());
        all.map(String::as_str).collect()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `[NAME=]PATH` as a name and a model file: a run folder is its model.safetensors, named after the folder;
/// a file is named after its folder when it is a run's model.safetensors, else after itself.
fn parse_model_arg(arg: &str) -> Result<(String, PathBuf, PathBuf)> {
    let (name, path) = match arg.split_once('=') {
        // A path that exists is a path, even with '=' in it.
        _ if Path::new(arg).exists() => (None, PathBuf::from(arg)),
        Some((n, p)) if !n.is_empty() && !n.contains(['/', '\\']) => (Some(n.to_string()), PathBuf::from(p)),
        _ => (None, PathBuf::from(arg)),
    };
    if path.as_os_str().is_empty() {
        return Err(Error::Invalid(format!("`{arg}`: no model path after the name (NAME=PATH)")));
    }
    let file = if path.is_dir() { path.join("model.safetensors") } else { path.clone() };
    let named = name.is_some();
    let name = match name {
        Some(n) => n,
        None => {
            let base = |p: &Path| p.file_name().map(|s| s.to_string_lossy().into_owned());
            let derived = if path.is_dir() {
                base(&std::fs::canonicalize(&path).unwrap_or(path.clone()))
            } else if file.file_name().is_some_and(|f| f == "model.safetensors") {
                // A run's model file: named after its folder (`./model.safetensors` too).
                std::fs::canonicalize(&path).ok().and_then(|f| f.parent().and_then(base))
            } else {
                path.file_stem().map(|s| s.to_string_lossy().into_owned())
            };
            derived.unwrap_or_else(|| "model".into())
        }
    };
    // A name taken from a path that does not exist (`a/b=m`): the missing path is the error, not the name.
    if !path.exists() && !named {
        let message = match arg.split_once('=').is_some_and(|(n, _)| n.contains(['/', '\\'])) {
            true => "no such file or directory (in NAME=PATH the name holds no '/')",
            false => "no such file or directory",
        };
        return Err(Error::Io { path: arg.to_string(), message: message.into() });
    }
    let allowed = name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if name.is_empty() || name.len() > 100 || !allowed || name.chars().all(|c| c == '.') {
        return Err(Error::Invalid(format!(
            "`{arg}`: the model name `{name}` may hold only letters, digits, '-', '_' and '.' (100 at most, not \
             only dots); name it with NAME=PATH"
        )));
    }
    Ok((name, path, file))
}

/// The models of the command line: saved kiln models, GGUF language models and encoder folders.
type Loaded = (
    BTreeMap<String, Arc<Served>>,
    BTreeMap<String, Arc<openai::LmServed>>,
    BTreeMap<String, Arc<openai::EmbedServed>>,
    BTreeMap<String, Arc<recommend::RecServed>>,
);

fn load_models(args: &[String]) -> Result<Loaded> {
    let (mut saved, mut lms, mut embedders, mut recs) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut paths: BTreeMap<String, PathBuf> = BTreeMap::new();
    for arg in args {
        let (name, given, file) = parse_model_arg(arg)?;
        let kind = openai::kind_of(&given);
        let shown = if matches!(kind, openai::PathKind::Saved) { &file } else { &given };
        if let Some(other) = paths.get(&name) {
            return Err(Error::Invalid(format!(
                "two models are named `{name}` ({} and {}): name them apart with NAME=PATH",
                other.display(),
                shown.display()
            )));
        }
        paths.insert(name.clone(), shown.clone());
        match kind {
            openai::PathKind::Gguf => {
                lms.insert(name.clone(), Arc::new(openai::open_lm(&name, &given)?));
            }
            openai::PathKind::Encoder => {
                embedders.insert(name.clone(), Arc::new(openai::open_embedder(&name, &given)?));
            }
            openai::PathKind::Saved if kiln::recommend::is_recommender(&file)? => {
                recs.insert(name.clone(), Arc::new(recommend::RecServed::open(&name, &file)?));
            }
            openai::PathKind::Saved => {
                let model = Sequential::load(&file)?;
                let served = Served {
                    name: name.clone(),
                    path: file,
                    model: RwLock::new(Arc::new(model)),
                    loaded: RwLock::new(now()),
                };
                saved.insert(name, Arc::new(served));
            }
        }
    }
    Ok((saved, lms, embedders, recs))
}

fn read_keys(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
    let keys: Vec<Vec<u8>> = text
        .trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if keys.is_empty() {
        return Err(Error::format(path, "holds no API key (one key per line)"));
    }
    Ok(keys)
}

/// Equal bytes, in a time that does not depend on where they first differ.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// An error answer: `{"error": {"message", "type", "code"}}` with its status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        404 => "not_found_error",
        429 | 503 => "overloaded_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    (status, Json(json!({"error": {"message": message.into(), "type": kind, "code": status.as_u16()}}))).into_response()
}

/// kiln's errors from a request's instances: the caller's (400), except files that could not be read (500).
fn kiln_error(e: &Error) -> Response {
    match e {
        Error::Io { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        _ => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// The 404 for a model name this server lacks, naming those it has.
fn unknown(app: &App, name: &str) -> Response {
    if app.lms.contains_key(name) {
        return error(StatusCode::NOT_FOUND, format!("`{name}` is a language model: POST /v1/chat/completions"));
    }
    if app.embedders.contains_key(name) {
        return error(StatusCode::NOT_FOUND, format!("`{name}` is an embedder: POST /v1/embeddings"));
    }
    if app.recommenders.contains_key(name) {
        return error(
            StatusCode::NOT_FOUND,
            format!("`{name}` is a recommender: POST /v1/models/{name}/recommend with {{\"user\": ID}}"),
        );
    }
    let list = |names: Vec<&String>| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let mut has = vec![match app.models.is_empty() {
        true => "no model to predict with".to_string(),
        false => format!("models {}", list(app.models.keys().collect())),
    }];
    let others = [
        ("language models", app.lms.keys().collect::<Vec<_>>()),
        ("embedders", app.embedders.keys().collect()),
        ("recommenders", app.recommenders.keys().collect()),
        ("assistants", app.assistants.keys().collect()),
    ];
    has.extend(others.into_iter().filter(|(_, n)| !n.is_empty()).map(|(what, n)| format!("{what} {}", list(n))));
    error(StatusCode::NOT_FOUND, format!("no model named `{name}` here; this server has {}", has.join("; ")))
}

/// Every request: the API key (health and readiness excepted), then the route, then its count and time.
async fn guard(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("other", |m| m.as_str()).to_string();
    let open = matches!(req.uri().path(), "/healthz" | "/readyz");
    let response = if !open && !app.keys.is_empty() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, k)| k.trim().as_bytes());
        // Every key is compared, so the time does not say which one (if any) came close.
        let ok = given.is_some_and(|g| app.keys.iter().fold(false, |acc, k| same_key(g, k) | acc));
        if ok {
            next.run(req).await
        } else {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong API key: send `Authorization: Bearer KEY`");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    } else {
        next.run(req).await
    };
    app.metrics.request(&route, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<Shared>) -> Response {
    if app.stopping.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    Json(json!({"status": "ready", "models": app.names()})).into_response()
}

async fn metrics_route(State(app): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

fn model_card(s: &Served, full: bool) -> Value {
    let model = s.current();
    let mut card = json!({
        "id": s.name,
        "object": "model",
        "created": *s.loaded.read().unwrap_or_else(|e| e.into_inner()),
        "owned_by": "kiln",
        "path": s.path.display().to_string(),
    });
    let about = instances::describe(&model);
    if let (Some(card), Value::Object(about)) = (card.as_object_mut(), about) {
        for (k, v) in about {
            if full || k == "kind" {
                card.insert(k, v);
            }
        }
    }
    card
}

async fn list(State(app): State<Shared>) -> Response {
    let mut data: Vec<Value> = app.models.values().map(|s| model_card(s, false)).collect();
    data.extend(app.lms.values().map(|s| openai::lm_card(s)));
    data.extend(app.embedders.values().map(|s| openai::embedder_card(s)));
    data.extend(app.assistants.values().map(|s| openai::assistant_card(s)));
    data.extend(app.recommenders.values().map(|s| recommend::card(s)));
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn show(State(app): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    if let Some(s) = app.lms.get(&name) {
        return Json(openai::lm_card(s)).into_response();
    }
    if let Some(s) = app.embedders.get(&name) {
        return Json(openai::embedder_card(s)).into_response();
    }
    if let Some(s) = app.assistants.get(&name) {
        return Json(openai::assistant_card(s)).into_response();
    }
    if let Some(s) = app.recommenders.get(&name) {
        return Json(recommend::card(s)).into_response();
    }
    match app.models.get(&name) {
        Some(s) => Json(model_card(s, true)).into_response(),
        None => unknown(&app, &name),
    }
}

/// Counts a prediction in progress for as long as it lives (the queue-depth gauge).
struct InProgress(Shared);
impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.metrics.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn predict(
    State(app): State<Shared>,
    UrlPath(name): UrlPath<String>,
    body: std::result::Result<Json<Value>, JsonRejection>,
) -> Response {
    let Some(served) = app.models.get(&name).cloned() else {
        return unknown(&app, &name);
    };
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let instances = match body.get("instances") {
        Some(Value::Array(a)) if a.len() > app.max_instances => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{} instances in one request; this server takes {} at most", a.len(), app.max_instances),
            );
        }
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(Value::Array(_)) => return error(StatusCode::BAD_REQUEST, "`instances` is empty: give one or more"),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object {\"instances\": [...]}, one instance per prediction",
            );
        }
    };
    let Ok(permit) = app.slots.clone().try_acquire_owned() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {} predictions in progress, the server's bound; retry shortly", app.max_in_progress),
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    app.metrics.in_progress.fetch_add(1, Ordering::Relaxed);
    let counted = InProgress(app.clone());
    app.metrics.batch(instances.len());
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = batch::Job { instances, reply, slot: (permit, counted) };
    if app.batchers[&served.name].send(job).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match tokio::time::timeout(app.timeout, answer).await {
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the prediction took longer than the server's limit of {} ms (it still holds its place among the \
                 predictions in progress until it ends)",
                app.timeout.as_millis()
            ),
        ),
        Ok(Err(_panicked)) => error(StatusCode::INTERNAL_SERVER_ERROR, "the prediction failed inside kiln (a bug)"),
        Ok(Ok(Err(e))) => kiln_error(&e),
        Ok(Ok(Ok(predictions))) => Json(json!({"model": name, "predictions": predictions})).into_response(),
    }
}

/// Reads a served model's file again and swaps it in; on failure the old model keeps serving.
fn reload_one(s: &Served) -> Result<()> {
    let model = Sequential::load(&s.path)?;
    let old = s.current();
    // What a client sends and gets back must stay the same; the weights and the preparation's numbers may
    // change (a retrained model).
    let contract = |m: &Sequential| {
        let mut d = instances::describe(m);
        if let Some(o) = d.as_object_mut() {
            o.remove("preparation");
        }
        d
    };
    let (new_c, old_c) = (contract(&model), contract(&old));
    if new_c != old_c {
        return Err(Error::Invalid(format!(
            "{} now holds a model with other inputs or outputs ({new_c}) than the one served ({old_c}); restart \
             the server to serve it",
            s.path.display()
        )));
    }
    *s.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
    *s.loaded.write().unwrap_or_else(|e| e.into_inner()) = now();
    Ok(())
}

async fn reload(State(app): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    if let Some(r) = app.recommenders.get(&name).cloned() {
        let s = r.clone();
        return match tokio::task::spawn_blocking(move || s.reload()).await {
            Ok(Ok(())) => Json(recommend::card(&r)).into_response(),
            Ok(Err(e)) => {
                error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}; the model loaded before keeps serving"))
            }
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the reload failed inside kiln (a bug)"),
        };
    }
    let Some(served) = app.models.get(&name).cloned() else {
        return unknown(&app, &name);
    };
    let s = served.clone();
    match tokio::task::spawn_blocking(move || reload_one(&s)).await {
        Ok(Ok(())) => Json(model_card(&served, false)).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}; the model loaded before keeps serving")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the reload failed inside kiln (a bug)"),
    }
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route {} {} (GET /openapi.json lists them)", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not a method of {}", req.method(), req.uri().path()))
}

async fn openapi() -> Response {
    Json(openapi_doc()).into_response()
}

fn openapi_doc() -> Value {
    let err = json!({"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let name = json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "kiln serve", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}}}}}}
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "The process answers", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Models loaded and not shutting down", "security": [],
                "responses": {"200": {"description": "ready"}, "503": err}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format 0.0.4"}, "401": err}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}, "401": err}}},
            "/v1/models": {"get": {"summary": "The models served, in OpenAI's list shape", "responses": {"200": {"description": "{\"object\": \"list\", \"data\": [...]}"}, "401": err}}},
            "/v1/models/{name}": {"get": {"summary": "A model's inputs, outputs, classes and preparation", "parameters": name,
                "responses": {"200": {"description": "the model"}, "401": err, "404": err}}},
            "/v1/models/{name}/predict": {"post": {
                "summary": "Predictions for instances: table rows by column name, texts, or images ({\"b64\": PNG} or nested arrays)",
                "parameters": name,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "required": ["instances"], "properties": {"instances": {"type": "array", "items": {}}}}}}},
                "responses": {"200": {"description": "{\"model\": name, \"predictions\": [...]}"}, "400": err, "401": err,
                    "404": err, "413": err, "415": err, "503": err, "504": err}}},
            "/v1/chat/completions": {"post": {"summary": "OpenAI's chat completion for a served GGUF model (stream: true for server-sent events)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "required": ["model", "messages"]}}}},
                "responses": {"200": {"description": "chat.completion, or text/event-stream of chat.completion.chunk"},
                    "400": err, "401": err, "404": err, "503": err}}},
            "/v1/embeddings": {"post": {"summary": "OpenAI's embeddings for a served encoder folder",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "required": ["model", "input"]}}}},
                "responses": {"200": {"description": "a list of embedding objects"}, "400": err, "401": err, "404": err, "413": err}}},
            "/v1/models/{name}/recommend": {"post": {
                "summary": "A recommender's top items: for a user it knows ({\"user\": ID}), a new user ({\"features\": {...}}, two_tower), or the items like one ({\"similar_items\": ID}); \"k\" items (default 10)",
                "parameters": name,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"user": {}, "features": {"type": "object"}, "similar_items": {}, "k": {"type": "integer"}}}}}},
                "responses": {"200": {"description": "{\"model\": name, \"items\": [{\"item\": ID, \"score\": s}, ...]}"},
                    "400": err, "401": err, "404": err, "504": err}}},
            "/v1/models/{name}/reload": {"post": {"summary": "Read the model's file again and swap it in", "parameters": name,
                "responses": {"200": {"description": "the model"}, "401": err, "404": err, "422": err}}}
        }
    })
}

fn router(app: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route))
        .route("/openapi.json", get(openapi))
        .route("/v1/models", get(list))
        .route("/v1/models/{name}", get(show))
        .route("/v1/models/{name}/predict", post(predict))
        .route("/v1/models/{name}/reload", post(reload))
        .route("/v1/models/{name}/recommend", post(recommend::recommend))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// SIGTERM or Ctrl-C: readiness off, the listener closed, the requests in progress answered. A second
/// signal, or requests still open past the time limit (a client that never finishes sending), ends the
/// process at once. SIGHUP reloads every model. All are listened for before the address is printed, so a
/// signal sent as soon as the server says it is up is never the default one (which kills).
#[cfg(unix)]
fn signals(app: Shared) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |k: SignalKind| signal(k).map_err(|e| Error::Invalid(format!("cannot listen for signals: {e}")));
    let (mut term, mut int, hup) =
        (listen(SignalKind::terminate())?, listen(SignalKind::interrupt())?, listen(SignalKind::hangup())?);
    tokio::spawn(reload_on_hangup(app.clone(), hup));
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        app.stopping.store(true, Ordering::Relaxed);
        eprintln!("stopping: finishing the requests in progress");
        let grace = app.timeout + Duration::from_secs(2);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
                _ = tokio::time::sleep(grace) => {},
            }
            eprintln!("stopped without waiting for the requests still open");
            std::process::exit(1);
        });
    })
}

#[cfg(not(unix))]
fn signals(app: Shared) -> Result<impl std::future::Future<Output = ()>> {
    Ok(async move {
        let _ = tokio::signal::ctrl_c().await;
        app.stopping.store(true, Ordering::Relaxed);
        eprintln!("stopping: finishing the requests in progress");
    })
}

/// SIGHUP reloads every model (each as `POST .../reload` does).
#[cfg(unix)]
async fn reload_on_hangup(app: Shared, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        for s in app.models.values() {
            let s2 = s.clone();
            reload_and_say(&s.name, &s.path, move || reload_one(&s2)).await;
        }
        for r in app.recommenders.values() {
            let r2 = r.clone();
            reload_and_say(&r.name, &r.path, move || r2.reload()).await;
        }
    }
}

/// Runs one model's reload on a blocking thread and says on stderr how it went.
#[cfg(unix)]
async fn reload_and_say(name: &str, path: &Path, reload: impl FnOnce() -> Result<()> + Send + 'static) {
    match tokio::task::spawn_blocking(reload).await {
        Ok(Ok(())) => eprintln!("reloaded `{name}` from {}", path.display()),
        Ok(Err(e)) => eprintln!("warning: `{name}` not reloaded: {e}; the model loaded before keeps serving"),
        Err(_) => eprintln!("warning: `{name}` not reloaded (a bug)"),
    }
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let sizes = [
        args.max_in_progress,
        args.timeout_ms as usize,
        args.max_body_bytes,
        args.max_batch,
        args.max_instances,
        args.idle_timeout_ms as usize,
    ];
    if sizes.contains(&0) {
        return Err(Error::Invalid(
            "--max-in-progress, --timeout-ms, --max-body-bytes, --max-batch, --max-instances and --idle-timeout-ms \
             must be positive"
                .into(),
        ));
    }
    if args.max_generations == 0 || args.context < 2 {
        return Err(Error::Invalid("--max-generations must be positive and --context at least 2".into()));
    }
    if args.models.is_empty() && args.assistant.is_none() {
        return Err(Error::Invalid("give at least one model to serve: kiln serve [NAME=]MODEL...".into()));
    }
    let (models, lms, embedders, recommenders) = load_models(&args.models)?;
    let mut assistants = BTreeMap::new();
    if let (Some(spec), Some(model), Some(embedder)) =
        (&args.assistant, &args.assistant_model, &args.assistant_embedder)
    {
        let a = openai::open_assistant(spec, model, embedder)?;
        if models.contains_key(&a.name)
            || lms.contains_key(&a.name)
            || embedders.contains_key(&a.name)
            || recommenders.contains_key(&a.name)
        {
            return Err(Error::Invalid(format!("--assistant: `{}` is already a model's name; name it apart", a.name)));
        }
        assistants.insert(a.name.clone(), Arc::new(a));
    }
    let keys = match &args.api_key_file {
        Some(p) => read_keys(p)?,
        None => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the server's runtime: {e}")))?;
    let batching = batch::Batching { max: args.max_batch, wait: Duration::from_micros(args.batch_wait_us) };
    let _inside = runtime.enter();
    let metrics = Arc::new(Metrics::new());
    let batchers =
        models.iter().map(|(n, s)| (n.clone(), batch::spawn(s.clone(), batching, metrics.clone()))).collect();
    let app = Arc::new(App {
        models,
        lms,
        embedders,
        assistants,
        recommenders,
        generations: Arc::new(tokio::sync::Semaphore::new(args.max_generations)),
        max_generations: args.max_generations,
        context: args.context,
        batchers,
        keys,
        metrics,
        slots: Arc::new(tokio::sync::Semaphore::new(args.max_in_progress)),
        max_in_progress: args.max_in_progress,
        max_instances: args.max_instances,
        timeout: Duration::from_millis(args.timeout_ms),
        stopping: AtomicBool::new(false),
    });
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse { " (another --port?)" } else { "" };
            Error::Invalid(format!("cannot listen on {addr}: {e}{hint}"))
        })?;
        let stop = signals(app.clone())?;
        let local = listener.local_addr().map_err(|e| Error::Invalid(format!("{addr}: {e}")))?;
        let names = app.names();
        for s in app.lms.values() {
            let mib = openai::cache_bytes(&s.lm, app.context) as f64 / (1 << 20) as f64;
            eprintln!(
                "`{}`: {} generations at once, each with a cache of {} positions ({mib:.0} MiB)",
                s.name, app.max_generations, app.context
            );
        }
        println!(
            "serving {} at http://{local} ({}){}",
            if names.len() == 1 { "1 model".to_string() } else { format!("{} models", names.len()) },
            names.join(", "),
            if app.keys.is_empty() { "" } else { " with API keys" }
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let listener = idle::IdleLimited { inner: listener, idle: Duration::from_millis(args.idle_timeout_ms) };
        axum::serve(listener, router(app.clone(), args.max_body_bytes))
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| Error::Invalid(format!("the server stopped: {e}")))?;
        eprintln!("stopped");
        Ok(())
    })
}
