//! Recommenders served (`kiln serve NAME=RUN_DIR` with a model `kiln train` made from interactions):
//! `POST /v1/models/{name}/recommend` with `{"user": ID}` (what they already did left out), `{"features":
//! {"age": 24, ...}}` (a new user, two_tower), or `{"similar_items": ID}`, and `"k"` (default 10); the answer
//! is `{"model": name, "items": [{"item": ID, "score": s}, ...]}`, best first, as `kiln recommend --json`.

use super::{App, error, kiln_error, now};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln::Result;
use kiln::recommend::Recommender;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The most items one request may ask for.
const MAX_K: usize = 1000;

pub struct RecServed {
    pub name: String,
    pub path: PathBuf,
    rec: RwLock<Arc<Recommender>>,
    loaded: RwLock<u64>,
}

impl RecServed {
    pub fn open(name: &str, file: &Path) -> Result<RecServed> {
        let rec = Recommender::load(file)?;
        Ok(RecServed {
            name: name.to_string(),
            path: file.to_path_buf(),
            rec: RwLock::new(Arc::new(rec)),
            loaded: RwLock::new(now()),
        })
    }

    fn current(&self) -> Arc<Recommender> {
        self.rec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the file again and swaps it in; another kind of recommender is refused.
    pub fn reload(&self) -> Result<()> {
        let rec = Recommender::load(&self.path)?;
        if rec.config.kind != self.current().config.kind {
            return Err(kiln::Error::Invalid(format!(
                "{} now holds a recommender of another kind; restart the server to serve it",
                self.path.display()
            )));
        }
        *self.rec.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rec);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = now();
        Ok(())
    }
}

/// The model card: kind, users, items and the features a new user may be described by.
pub fn card(s: &RecServed) -> Value {
    let r = s.current();
    let features: Vec<&str> = r
        .user_features
        .as_ref()
        .filter(|_| r.config.kind == kiln::recommend::RecommenderKind::TwoTower)
        .map(|(e, _)| e.columns.iter().map(|c| c.name()).collect())
        .unwrap_or_default();
    json!({
        "id": s.name,
        "object": "model",
        "created": *s.loaded.read().unwrap_or_else(|e| e.into_inner()),
        "owned_by": "kiln",
        "path": s.path.display().to_string(),
        "kind": "recommender",
        "recommender": r.config.kind.name(),
        "users": r.users.len(),
        "items": r.items.len(),
        "user_features": features,
    })
}

/// A JSON value as an id or feature value: strings as they are, numbers as written.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub async fn recommend(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    body: std::result::Result<Json<Value>, JsonRejection>,
) -> Response {
    let Some(served) = app.recommenders.get(&name).cloned() else {
        if app.models.contains_key(&name) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`{name}` is not a recommender: POST /v1/models/{name}/predict"),
            );
        }
        return super::unknown(&app, &name);
    };
    let body = match body {
        Ok(Json(Value::Object(b))) => b,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    if let Some(k) = body.keys().find(|k| !["user", "features", "similar_items", "k"].contains(&k.as_str())) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown field `{k}`: give `user`, `features` or `similar_items`, and optionally `k`"),
        );
    }
    let k = match body.get("k") {
        None => 10,
        Some(v) => match v.as_u64() {
            Some(k) if (1..=MAX_K as u64).contains(&k) => k as usize,
            _ => return error(StatusCode::BAD_REQUEST, format!("`k` must be a whole number from 1 to {MAX_K}")),
        },
    };
    enum Ask {
        User(String),
        Similar(String),
        New(Vec<(String, String)>),
    }
    let ask = match (body.get("user"), body.get("similar_items"), body.get("features")) {
        (Some(u), None, None) => match text(u) {
            Some(u) => Ask::User(u),
            None => return error(StatusCode::BAD_REQUEST, "`user` must be an id (a string or a number)"),
        },
        (None, Some(i), None) => match text(i) {
            Some(i) => Ask::Similar(i),
            None => return error(StatusCode::BAD_REQUEST, "`similar_items` must be an item id (a string or a number)"),
        },
        (None, None, Some(Value::Object(f))) => {
            let mut pairs = Vec::new();
            for (key, v) in f {
                match text(v) {
                    Some(v) => pairs.push((key.clone(), v)),
                    None => {
                        return error(StatusCode::BAD_REQUEST, format!("feature `{key}` must be a string or a number"));
                    }
                }
            }
            Ask::New(pairs)
        }
        (None, None, Some(_)) => {
            return error(StatusCode::BAD_REQUEST, "`features` must be an object of name: value");
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give one of `user` (an id), `features` (a new user's {name: value}) or `similar_items` (an item id)",
            );
        }
    };
    let rec = served.current();
    let answer = tokio::task::spawn_blocking(move || match ask {
        Ask::User(u) => rec.recommend(&u, k),
        Ask::Similar(i) => rec.similar_items(&i, k),
        Ask::New(f) => rec.recommend_new_user(&f, k),
    });
    match tokio::time::timeout(app.timeout, answer).await {
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "the recommendation took longer than the server's limit"),
        Ok(Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "the recommendation failed inside kiln (a bug)"),
        Ok(Ok(Err(e))) => kiln_error(&e),
        Ok(Ok(Ok(list))) => {
            let items: Vec<Value> = list.iter().map(|(i, s)| json!({"item": i, "score": s})).collect();
            Json(json!({"model": name, "items": items})).into_response()
        }
    }
}
