//! `kiln serve` through real HTTP on loopback: every route, every error status, answers equal to `kiln
//! predict`'s, garbage and oversized bodies followed each by a good request, reload, and a graceful stop.
//! The client is a few lines over a TcpStream (one request per connection), so a test can send anything.

use crate::common::*;
use base64::Engine;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod openai;

pub(crate) const KEY: &str = "s3cret-key-for-tests";

/// A running `kiln serve`, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(args: &[&str]) -> Server {
        let mut child = Command::new(KILN)
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next());
        let Some(addr) = addr else {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("no address in `{line}`; stderr: {err}");
        };
        Server { addr: addr.to_string(), child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// An error answer in the agreed shape, its message containing `want`.
    pub(crate) fn error(&self, status: u16, want: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let e = self.json();
        assert_eq!(e["error"]["code"], status, "{e}");
        let m = e["error"]["message"].as_str().unwrap();
        assert!(m.contains(want), "`{want}` not in: {m}");
    }
}

/// One request on its own connection; `body` raw bytes, sent as JSON unless `ctype` says otherwise.
fn send(addr: &str, method: &str, path: &str, key: Option<&str>, ctype: Option<&str>, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        head += &format!("Authorization: Bearer {k}\r\n");
    }
    if let Some(c) = ctype {
        head += &format!("Content-Type: {c}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body; the answer is still there to read.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Bodies come whole or chunked; a chunked JSON body is one chunk here: its size line, data, 0.
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out += &after[..n];
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Reply { status, headers: headers.to_string(), body }
}

pub(crate) fn get(addr: &str, path: &str) -> Reply {
    send(addr, "GET", path, Some(KEY), None, b"")
}

pub(crate) fn post(addr: &str, path: &str, body: &Value) -> Reply {
    send(addr, "POST", path, Some(KEY), Some("application/json"), body.to_string().as_bytes())
}

/// A table (churn from age and color; income noise) and a model trained on it; returns the run folder.
fn table_model(t: &Tmp) -> std::path::PathBuf {
    let mut csv = String::from("age,color,income,churn\n");
    let mut seed = 7u32;
    let colors = ["red", "green", "blue"];
    for i in 0..300 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let age = 18 + (seed >> 16) % 60;
        let color = colors[i % 3];
        let churn = if (age > 50) ^ (color == "red") { "yes" } else { "no" };
        csv += &format!("{age},{color},{}.5,{churn}\n", (seed >> 8) % 100);
    }
    std::fs::write(t.path("t.csv"), csv).unwrap();
    let run = t.path("churn");
    let o = kiln(&[
        "train",
        "--data",
        &t.s("t.csv"),
        "--target",
        "churn",
        "--epochs",
        "3",
        "--run-dir",
        &t.s("churn"),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run
}

/// The bars model of the CLI tests (digit k: a bright row 2k+4).
fn image_model(t: &Tmp) -> std::path::PathBuf {
    write_mnist(&t.path("data"), 300, 100);
    std::fs::write(t.path("run.toml"), config(LAYERS_OK, "")).unwrap();
    let o = kiln(&["train", &t.s("run.toml"), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.path("model.safetensors")
}

/// Digit `d`'s bar as a 28x28 gray PNG, and as rows of values in [0, 1].
fn digit(d: usize) -> (Vec<u8>, Vec<Vec<f32>>) {
    let mut px = vec![0u8; 784];
    px[(2 * d + 4) * 28..(2 * d + 5) * 28].fill(250);
    let mut png_bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut png_bytes, 28, 28);
    enc.set_color(png::ColorType::Grayscale);
    enc.write_header().unwrap().write_image_data(&px).unwrap();
    let rows = px.chunks(28).map(|r| r.iter().map(|&v| v as f32 / 255.0).collect()).collect();
    (png_bytes, rows)
}

fn close(a: &Value, b: f64, what: &str) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{what}: {a} is not a number"));
    assert!((a - b).abs() < 1e-5, "{what}: served {a}, kiln predict {b}");
}

#[test]
fn every_route_answers_as_kiln_predict_does() {
    let t = Tmp::new("serve");
    let run = table_model(&t);
    let image = image_model(&t);
    std::fs::write(t.path("keys.txt"), format!("other-key\n{KEY}\n")).unwrap();
    let digits = format!("digits={}", image.display());
    let srv = Server::start(&[&digits, &run.display().to_string(), "--api-key-file", &t.s("keys.txt")]);
    let a = &srv.addr;

    // Health and readiness need no key; everything else does.
    assert_eq!(send(a, "GET", "/healthz", None, None, b"").status, 200);
    let ready = send(a, "GET", "/readyz", None, None, b"");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["models"], json!(["churn", "digits"]));
    let r = send(a, "GET", "/v1/models", None, None, b"");
    r.error(401, "API key");
    assert!(r.headers.to_ascii_lowercase().contains("www-authenticate: bearer"), "{}", r.headers);
    send(a, "GET", "/v1/models", Some("s3cret-key-for-test"), None, b"").error(401, "API key");
    send(a, "POST", "/v1/models/churn/predict", Some("nope"), Some("application/json"), b"{}").error(401, "API key");

    // The list in OpenAI's shape, and each model's card.
    let list = get(a, "/v1/models").json();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["churn", "digits"], "a run folder is named after itself");
    assert!(list["data"].as_array().unwrap().iter().all(|m| m["object"] == "model" && m["owned_by"] == "kiln"));
    let card = get(a, "/v1/models/churn").json();
    assert_eq!(card["kind"], "table");
    let inputs: Vec<&str> = card["inputs"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["age", "color", "income"]);
    assert_eq!(card["outputs"][0]["classes"], json!(["no", "yes"]));
    assert!(card["preparation"].is_object());
    let card = get(a, "/v1/models/digits").json();
    assert_eq!((card["kind"].as_str(), card["input"]["shape"].clone()), (Some("image"), json!([28, 28, 1])));

    // Table rows by column name: the same probabilities as `kiln predict --input rows.csv`.
    std::fs::write(t.path("rows.csv"), "age,color,income\n60,red,3.5\n22,blue,\n45,green,80\n").unwrap();
    let o = kiln(&["predict", &run.join("model.safetensors").display().to_string(), "--input", &t.s("rows.csv")]);
    assert!(o.status.success());
    let cli: Vec<(String, f64)> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[1].to_string(), c[2].parse().unwrap())
        })
        .collect();
    let rows = json!({"instances": [
        {"age": 60, "color": "red", "income": 3.5},
        {"age": "22", "color": "blue", "income": null, "churn": "no"},
        {"age": 45, "color": "green", "income": 80}
    ]});
    let r = post(a, "/v1/models/churn/predict", &rows);
    assert_eq!(r.status, 200, "{}", r.body);
    let p = r.json();
    let table_answer = p.clone();
    assert_eq!(p["model"], "churn");
    for (i, (class, yes)) in cli.iter().enumerate() {
        let got = &p["predictions"][i];
        assert_eq!(got["class"], json!(class), "row {i}: {got}");
        close(&got["probabilities"]["yes"], *yes, "p(yes)");
        close(&got["probabilities"]["no"], 1.0 - yes, "p(no)");
    }

    // Images as base64 PNG and as nested arrays, against `kiln predict image.png`.
    let (png_bytes, rows3) = digit(3);
    std::fs::write(t.path("three.png"), &png_bytes).unwrap();
    let o = kiln(&["predict", &image.display().to_string(), &t.s("three.png")]);
    let line = stdout(&o).lines().find(|l| l.starts_with("probabilities:")).unwrap().to_string();
    let cli: Vec<f64> = line["probabilities: ".len()..].split(", ").map(|c| c[3..].parse().unwrap()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png_bytes);
    let r = post(a, "/v1/models/digits/predict", &json!({"instances": [{"b64": b64}, rows3]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let p = r.json();
    for got in p["predictions"].as_array().unwrap() {
        assert_eq!(got["class"], 3, "{got}");
        for (j, &c) in cli.iter().enumerate() {
            // kiln predict prints four decimals.
            assert!((got["probabilities"][j].as_f64().unwrap() - c).abs() < 1e-4, "class {j}: {got} vs {line}");
        }
    }

    // Every error status, each one JSON naming the problem.
    post(a, "/v1/models/nope/predict", &rows)
        .error(404, "no model named `nope` here; this server has models `churn`, `digits`");
    get(a, "/v1/models/nope").error(404, "no model named `nope`");
    get(a, "/v2/elsewhere").error(404, "no route GET /v2/elsewhere");
    send(a, "DELETE", "/v1/models", Some(KEY), None, b"").error(405, "DELETE is not a method of /v1/models");
    let bad = |body: &[u8]| send(a, "POST", "/v1/models/churn/predict", Some(KEY), Some("application/json"), body);
    bad(b"{\"instances\": [").error(400, "JSON");
    bad(b"[1, 2]").error(400, "{\"instances\": [...]}");
    bad(b"{\"instances\": []}").error(400, "`instances` is empty");
    send(a, "POST", "/v1/models/churn/predict", Some(KEY), None, br#"{"instances": [{}]}"#).error(415, "Content-Type");
    let one = |inst: Value| post(a, "/v1/models/churn/predict", &json!({ "instances": [inst] }));
    one(json!({"age": 30, "color": "red"})).error(400, "instance 1: no `income` (write null for a missing value");
    one(json!({"age": 30, "colour": "red", "income": 1}))
        .error(400, "no `color`; `colour` is not a column the model reads: did you mean `color`?");
    one(json!({"age": "old", "color": "red", "income": 1})).error(400, "`age` row 1 has `old`, not a number");
    one(json!({"age": [1], "color": "red", "income": 1})).error(400, "`age` is an array");
    one(json!("a text")).error(400, "a string where the model takes an object of the columns age, color, income");
    let img = |inst: Value| post(a, "/v1/models/digits/predict", &json!({ "instances": [inst] }));
    img(json!(vec![vec![0.5; 28]; 27])).error(400, "has 27 values, want 28");
    img(json!({"b64": "!!!"})).error(400, "not base64");
    img(json!({"b64": base64::engine::general_purpose::STANDARD.encode(b"not a png")}))
        .error(400, "not a readable PNG");
    img(json!({"pixels": 1})).error(400, "where the model takes an image");
    let big = vec![b' '; 9 << 20];
    bad(&big).error(413, "");

    // Metrics count what happened; the document lists every route.
    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m.body.contains("kiln_requests_total{route=\"/v1/models/{name}/predict\",status=\"200\"} 2"), "{}", m.body);
    assert!(m.body.contains("status=\"401\"} "), "{}", m.body);
    for w in [
        "kiln_request_seconds_bucket",
        "kiln_predict_instances_bucket{le=\"1\"}",
        "kiln_queue_depth 0",
        "kiln_errors_total",
    ] {
        assert!(m.body.contains(w), "{w}: {}", m.body);
    }
    let doc = get(a, "/openapi.json").json();
    for route in ["/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/{name}", "/v1/models/{name}/predict"] {
        assert!(doc["paths"][route].is_object(), "{route}");
    }

    // Reload: a broken file is refused and the old model keeps answering; a good one is swapped in.
    let file = run.join("model.safetensors");
    let saved = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"not a model").unwrap();
    post(a, "/v1/models/churn/reload", &json!({})).error(422, "keeps serving");
    assert_eq!(post(a, "/v1/models/churn/predict", &rows).json(), table_answer);
    std::fs::write(&file, &saved).unwrap();
    let r = post(a, "/v1/models/churn/reload", &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["id"], "churn");
}

/// Garbage of many kinds, each followed by a good request that must still be answered.
#[test]
fn garbage_never_stops_the_server() {
    let t = Tmp::new("serve-fuzz");
    let run = table_model(&t);
    let srv = Server::start(&[&run.display().to_string(), "--max-body-bytes", "65536"]);
    let a = &srv.addr;
    let good = json!({"instances": [{"age": 60, "color": "red", "income": 3.5}]});
    let mut seed = 99u64;
    let mut garbage: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"{\"instances\": null}".to_vec(),
        b"{\"instances\": [null, 1, \"x\", []]}".to_vec(),
        b"{\"instances\": [{\"age\": 1e999, \"color\": \"red\", \"income\": 1}]}".to_vec(),
        b"{\"instances\": [{\"age\": -1e308, \"color\": \"\xff\xfe\", \"income\": 1}]}".to_vec(),
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        vec![b'a'; 70_000],
        format!("{{\"instances\": [{}]}}", vec!["{\"age\": 1}"; 5000].join(",")).into_bytes(),
    ];
    for _ in 0..20 {
        let n = (seed % 300) as usize;
        garbage.push(
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect(),
        );
    }
    for (i, g) in garbage.iter().enumerate() {
        let r = send(a, "POST", "/v1/models/churn/predict", None, Some("application/json"), g);
        assert!((400..500).contains(&r.status), "garbage {i}: {} {}", r.status, r.body);
        assert!(r.json()["error"]["message"].is_string(), "garbage {i}: {}", r.body);
        let ok =
            send(a, "POST", "/v1/models/churn/predict", None, Some("application/json"), good.to_string().as_bytes());
        assert_eq!(ok.status, 200, "after garbage {i}: {}", ok.body);
    }
    // Not HTTP at all, then a good request.
    let mut s = TcpStream::connect(a).unwrap();
    let _ = s.write_all(b"\x00\x01\x02 hello\r\n\r\n");
    drop(s);
    let ok = send(a, "POST", "/v1/models/churn/predict", None, Some("application/json"), good.to_string().as_bytes());
    assert_eq!(ok.status, 200);
}

/// Rows enough to keep a prediction busy for a while (tens of milliseconds or more).
fn many_rows(n: usize) -> Vec<u8> {
    let row = json!({"age": 33, "color": "green", "income": 10});
    json!({ "instances": vec![row; n] }).to_string().into_bytes()
}

/// 504 past the time limit, 503 with Retry-After past the bound on predictions in progress, and SIGTERM:
/// the prediction in progress finishes, then the process exits 0.
#[test]
fn limits_and_a_graceful_stop() {
    let t = Tmp::new("serve-limits");
    let run = table_model(&t);
    let path = run.display().to_string();
    let slow = many_rows(200_000);
    {
        let srv =
            Server::start(&[&path, "--timeout-ms", "1", "--max-body-bytes", "100000000", "--max-instances", "1000000"]);
        let r = send(&srv.addr, "POST", "/v1/models/churn/predict", None, Some("application/json"), &slow);
        r.error(504, "longer than the server's limit of 1 ms");
    }
    let mut srv = Server::start(&[
        &path,
        "--max-in-progress",
        "1",
        "--max-body-bytes",
        "100000000",
        "--max-instances",
        "1000000",
    ]);
    let addr = srv.addr.clone();
    let (a2, body) = (addr.clone(), slow.clone());
    let busy = std::thread::spawn(move || {
        send(&a2, "POST", "/v1/models/churn/predict", None, Some("application/json"), &body)
    });
    let small = many_rows(1);
    let start = Instant::now();
    let mut refused = None;
    while !busy.is_finished() && start.elapsed() < Duration::from_secs(60) {
        let r = send(&addr, "POST", "/v1/models/churn/predict", None, Some("application/json"), &small);
        if r.status == 503 {
            refused = Some(r);
            break;
        }
    }
    // Whichever came second is refused: a small request while the large one runs, or (when a small one
    // took the only place first) the large one.
    let big = busy.join().unwrap();
    let r = refused.unwrap_or(big);
    r.error(503, "busy");
    assert!(r.headers.to_ascii_lowercase().contains("retry-after: 1"), "{}", r.headers);

    // SIGTERM while a prediction runs: it is answered, then the server exits cleanly.
    let (a2, body) = (addr.clone(), slow);
    let running = std::thread::spawn(move || {
        send(&a2, "POST", "/v1/models/churn/predict", None, Some("application/json"), &body)
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(running.join().unwrap().status, 200, "the request in progress finishes");
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    let mut err = String::new();
    srv.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("stopping: finishing the requests in progress") && err.contains("stopped"), "{err}");
}

/// What is wrong before the server starts: one line, exit 1, nothing served.
#[test]
fn bad_arguments_are_one_line() {
    let t = Tmp::new("serve-args");
    let run = table_model(&t);
    let p = run.display().to_string();
    let model = run.join("model.safetensors").display().to_string();
    assert_fails(&kiln(&["serve", &p, &model, "--port", "0"]), &["two models are named `churn`", "NAME=PATH"]);
    assert_fails(&kiln(&["serve", &t.s("missing.safetensors"), "--port", "0"]), &["missing.safetensors"]);
    assert_fails(&kiln(&["serve", &format!("a b={p}"), "--port", "0"]), &["may hold only letters"]);
    // A '/' before '=' makes it a path, not a name: the missing path is what is wrong.
    let slash = format!("{}/b=m", t.s("a"));
    assert_fails(&kiln(&["serve", &slash, "--port", "0"]), &["/a/b=m: no such file", "name holds no '/'"]);
    std::fs::write(t.path("empty.txt"), "\n\n").unwrap();
    assert_fails(&kiln(&["serve", &p, "--api-key-file", &t.s("empty.txt"), "--port", "0"]), &["holds no API key"]);
    assert_fails(&kiln(&["serve", &p, "--max-in-progress", "0", "--port", "0"]), &["must be positive"]);
    assert_fails(&kiln(&["serve", &t.s("t.csv"), "--port", "0"]), &["t.csv", "not a kiln model"]);
}

/// Concurrent requests run as one batch (a long wait makes sure they meet), and each gets its own answer:
/// the same as alone, and a wrong request its own 400 without failing the others.
#[test]
fn concurrent_requests_share_a_batch_and_keep_their_answers() {
    let t = Tmp::new("serve-batch");
    let run = table_model(&t);
    let path = run.display().to_string();
    let rows: Vec<Value> = (0..8)
        .map(|i| {
            let color = ["red", "green", "blue"][i % 3];
            json!({"instances": [{"age": 20 + 7 * i, "color": color, "income": i}]})
        })
        .collect();
    let alone: Vec<Value> = {
        let srv = Server::start(&[&path, "--max-batch", "1"]);
        rows.iter().map(|r| post(&srv.addr, "/v1/models/churn/predict", r).json()).collect()
    };
    let srv = Server::start(&[&path, "--batch-wait-us", "300000"]);
    let mut threads = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (a, body) = (srv.addr.clone(), r.clone());
        threads.push(std::thread::spawn(move || (i, post(&a, "/v1/models/churn/predict", &body))));
    }
    let a = srv.addr.clone();
    let wrong = std::thread::spawn(move || {
        post(&a, "/v1/models/churn/predict", &json!({"instances": [{"age": 30, "color": "red"}]}))
    });
    for h in threads {
        let (i, r) = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), alone[i], "request {i}: batched and alone differ");
    }
    wrong.join().unwrap().error(400, "no `income`");
    let m = get(&srv.addr, "/metrics").body;
    let line = m.lines().find(|l| l.starts_with("kiln_batch_instances_bucket{le=\"4\"}")).unwrap();
    let small: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let count: u64 = m
        .lines()
        .find(|l| l.starts_with("kiln_batch_instances_count"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count < 9 && small < count, "nine requests in fewer, larger batches: {m}");
}

/// CRC-32 of PNG chunks (ISO 3309), for a hand-made header.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// What a review found: a PNG that claims a huge image, too many instances, a key file with a byte-order
/// mark, a lowercase scheme, a signal right after start, names from paths, and a reload of another model.
#[test]
fn hostile_and_surprising_inputs() {
    let t = Tmp::new("serve-hostile");
    let image = image_model(&t);
    let run = table_model(&t);
    std::fs::write(t.path("keys.txt"), format!("\u{feff}{KEY}\r\n")).unwrap();
    let digits = format!("digits={}", image.display());
    let srv = Server::start(&[
        &digits,
        &run.display().to_string(),
        "--api-key-file",
        &t.s("keys.txt"),
        "--max-instances",
        "10",
    ]);
    let a = &srv.addr;
    // A signal as soon as the server is up: SIGHUP reloads, it does not kill.
    assert!(Command::new("kill").args(["-HUP", &srv.child.id().to_string()]).status().unwrap().success());
    let r = send(a, "GET", "/v1/models", Some(KEY), None, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut head =
        format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: bearer {KEY}\r\n\r\n");
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    head.clear();
    s.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "the scheme's case does not matter: {head}");

    // 1,000,000 x 1,000,000 pixels claimed by a file of 60 bytes: refused from its header.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |png: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(1_000_000u32.to_be_bytes());
    ihdr.extend(1_000_000u32.to_be_bytes());
    ihdr.extend([16, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let r = post(a, "/v1/models/digits/predict", &json!({"instances": [{"b64": b64}]}));
    r.error(400, "is 1000000x1000000 pixels but the model takes 28x28");
    assert_eq!(get(a, "/healthz").status, 200);

    let rows = vec![json!({"age": 30, "color": "red", "income": 1}); 11];
    post(a, "/v1/models/churn/predict", &json!({ "instances": rows })).error(413, "11 instances in one request");

    // A reload that would change what clients send is refused; the old model keeps answering.
    let file = run.join("model.safetensors");
    let saved = std::fs::read(&file).unwrap();
    std::fs::copy(&image, &file).unwrap();
    post(a, "/v1/models/churn/reload", &json!({})).error(422, "other inputs or outputs");
    std::fs::write(&file, saved).unwrap();
    assert_eq!(post(a, "/v1/models/churn/predict", &json!({"instances": [rows[0]]})).status, 200);
    drop(srv);

    // Names: a path with '=' that exists is a path; '.' alone is no name.
    let odd = t.path("a=b.safetensors");
    std::fs::copy(&image, &odd).unwrap();
    let o = kiln(&["serve", &odd.display().to_string(), "--port", "0"]);
    assert_fails(&o, &["the model name `a=b` may hold only", "NAME=PATH"]);
    assert_fails(&kiln(&["serve", &format!(".={}", image.display()), "--port", "0"]), &["not only dots"]);
    assert_fails(&kiln(&["serve", "x=", "--port", "0"]), &["no model path after the name"]);
}

/// A text model takes the text itself or an object of its one column, and answers as `kiln predict MODEL
/// "text"` does.
#[test]
fn text_models_take_raw_text() {
    let t = Tmp::new("serve-text");
    let (good, bad, nouns) =
        (["love", "great", "lovely"], ["awful", "torn", "ugly"], ["dress", "zip", "fabric", "seam"]);
    let mut csv = String::from("review,label\n");
    for i in 0..300 {
        let (w, label) = if i % 2 == 0 { (good[i % 3], "pos") } else { (bad[i % 3], "neg") };
        csv += &format!("\"the {} is {w}, number {i}\",{label}\n", nouns[i % 4]);
    }
    std::fs::write(t.path("reviews.csv"), csv).unwrap();
    let o = kiln(&[
        "train",
        "--data",
        &t.s("reviews.csv"),
        "--target",
        "label",
        "--epochs",
        "5",
        "--run-dir",
        &t.s("reviews"),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = t.path("reviews/model.safetensors").display().to_string();
    let srv = Server::start(&[&model]);
    let card = get(&srv.addr, "/v1/models/reviews").json();
    assert_eq!(card["kind"], "text", "{card}");
    let text = "the seam is torn";
    let o = kiln(&["predict", &model, text]);
    let line = stdout(&o).lines().nth(1).unwrap().to_string();
    let cells: Vec<&str> = line.split(',').collect();
    let r = post(&srv.addr, "/v1/models/reviews/predict", &json!({"instances": [text, {"review": text}]}));
    assert_eq!(r.status, 200, "{}", r.body);
    for got in r.json()["predictions"].as_array().unwrap() {
        assert_eq!(got["class"], cells[1], "{got} vs {line}");
        close(&got["probabilities"]["pos"], cells[2].parse().unwrap(), "p(pos)");
    }
    post(&srv.addr, "/v1/models/reviews/predict", &json!({"instances": [3]}))
        .error(400, "instance 1: a number where the model takes a text, or an object {\"review\": text}");
}

/// A client that sends part of a request and then nothing is cut off after --idle-timeout-ms, and does not
/// keep a SIGTERM waiting.
#[test]
fn a_stalled_client_is_cut_off() {
    let t = Tmp::new("serve-idle");
    let run = table_model(&t);
    let mut srv = Server::start(&[&run.display().to_string(), "--idle-timeout-ms", "400"]);
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(5), "closed after the idle time, not the read timeout: {waited:?}");
    // A request that keeps moving is answered; then a stalled one does not hold up the stop.
    assert_eq!(send(&srv.addr, "GET", "/healthz", None, None, b"").status, 200);
    let mut stalled = TcpStream::connect(&srv.addr).unwrap();
    stalled.write_all(b"POST /v1/models/churn/predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(Command::new("kill").args(["-TERM", &srv.child.id().to_string()]).status().unwrap().success());
    let start = Instant::now();
    let status = srv.child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "the stop waited {:?}", start.elapsed());
    assert!(status.success(), "{status:?}");
}
