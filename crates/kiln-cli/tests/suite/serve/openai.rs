//! `kiln serve` in its OpenAI-compatible shape: language models and embedders on /v1/models,
//! /v1/chat/completions (streamed and not) and /v1/embeddings, and the FAQ assistant over HTTP, on the
//! pretrained files (skipped with a notice when they are absent), through serve.rs's client and server.

use super::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The pretrained models of tools/fetch_models.sh, or a printed notice and None.
fn pretrained() -> Option<(String, String)> {
    let lm = format!("{ROOT}/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let minilm = format!("{ROOT}/models/all-MiniLM-L6-v2");
    if Path::new(&lm).is_file() && Path::new(&minilm).is_dir() {
        return Some((lm, minilm));
    }
    let _ = writeln!(std::io::stderr(), "NOTICE: {lm} or {minilm} is absent (run tools/fetch_models.sh); skipped");
    None
}

/// `/v1/chat/completions` (whole and streamed) and `/v1/embeddings` in OpenAI's shapes: the greedy answer is
/// `kiln generate --chat`'s, the streamed pieces join to the whole answer, the vectors are `kiln::pretrained`'s.
#[test]
fn openai_routes_serve_language_models_and_embedders() {
    let Some((lm, minilm)) = pretrained() else { return };
    let srv = Server::start(&[&format!("smol={lm}"), &minilm, "--max-generations", "1", "--context", "512"]);
    let a = &srv.addr;
    let list = get(a, "/v1/models").json();
    let kinds: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("smol", "language_model"), ("all-MiniLM-L6-v2", "embedder")]);

    let question = json!({"model": "smol", "temperature": 0, "max_tokens": 30,
                          "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    let r = post(a, "/v1/chat/completions", &question);
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    let text = c["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let o = kiln(&["generate", &lm, "What is the capital of France?", "--chat", "--temperature", "0", "-q"]);
    assert_eq!(text, stdout(&o).trim(), "the same greedy answer as kiln generate");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    let u = &c["usage"];
    assert_eq!(u["total_tokens"], u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap());

    // Streamed: server-sent events whose pieces join to the same text, then a finish and [DONE].
    let mut streamed = question.clone();
    streamed["stream"] = json!(true);
    let r = post(a, "/v1/chat/completions", &streamed);
    assert!(r.headers.to_ascii_lowercase().contains("content-type: text/event-stream"), "{}", r.headers);
    let events: Vec<&str> = r.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{}", r.body);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, text);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");

    // A length limit, a stop string, and wrong requests.
    let mut short = question.clone();
    short["max_tokens"] = json!(2);
    assert_eq!(post(a, "/v1/chat/completions", &short).json()["choices"][0]["finish_reason"], "length");
    let chat = |v: Value| post(a, "/v1/chat/completions", &v);
    chat(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}))
        .error(404, "no language model named `nope` here; this server has smol");
    chat(json!({"model": "smol", "messages": []})).error(400, "`messages` must be a non-empty array");
    chat(json!({"model": "smol", "messages": [{"role": "robot", "content": "hi"}]})).error(400, "role `robot`");
    chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}))
        .error(400, "`temperature` -1");
    chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "top_p": 2})).error(400, "`top_p` 2");
    chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}))
        .error(400, "`stream` must be true or false");
    chat(json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "n": 2})).error(400, "`n`");
    let long = "word ".repeat(600);
    chat(json!({"model": "smol", "messages": [{"role": "user", "content": long}]})).error(400, "context holds 512");
    post(a, "/v1/models/smol/predict", &json!({"instances": [1]})).error(404, "is a language model");
    post(a, "/v1/models/nope/predict", &json!({"instances": [1]}))
        .error(404, "this server has no model to predict with; language models `smol`; embedders `all-MiniLM-L6-v2`");

    // Embeddings: the vectors kiln::pretrained makes, in order.
    let r =
        post(a, "/v1/embeddings", &json!({"model": "all-MiniLM-L6-v2", "input": ["How do I return a dress?", "hi"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.json();
    assert_eq!(e["object"], "list");
    let mut enc = kiln::pretrained::Encoder::open(&minilm).unwrap();
    let (want, _) = enc.embed(&["How do I return a dress?", "hi"], 32, &mut |_| {}).unwrap();
    for (i, w) in want.iter().enumerate() {
        let got = e["data"][i]["embedding"].as_array().unwrap();
        assert_eq!((e["data"][i]["index"].as_u64(), got.len()), (Some(i as u64), 384));
        let diff = got.iter().zip(w).map(|(g, &w)| (g.as_f64().unwrap() - w as f64).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-6, "text {i}: {diff}");
    }
    assert!(e["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // OpenAI's Python client asks for base64: little-endian f32 bytes.
    let r =
        post(a, "/v1/embeddings", &json!({"model": "all-MiniLM-L6-v2", "input": "hi", "encoding_format": "base64"}));
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(r.json()["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let floats: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    // Alone, "hi" is not padded as it was beside a longer text: the last bits may differ.
    assert!(floats.len() == 384 && floats.iter().zip(&want[1]).all(|(a, b)| (a - b).abs() < 1e-6));
    let emb = |v: Value| post(a, "/v1/embeddings", &v);
    emb(json!({"model": "all-MiniLM-L6-v2", "input": [1, 2]})).error(400, "`input` must be a string");
    emb(json!({"model": "smol", "input": "hi"})).error(404, "no embedder named `smol`");
    emb(json!({"model": "all-MiniLM-L6-v2", "input": "hi", "dimensions": 10})).error(400, "vectors of 384 values");
    assert_eq!(emb(json!({"model": "all-MiniLM-L6-v2", "input": "hi", "dimensions": 384})).status, 200);
}

/// The FAQ assistant as a chat model: an answer naming its entries, the hand-off for a question the FAQ
/// does not answer, the same when streamed (sources on the last chunk), and follow-ups in a conversation.
#[test]
fn the_assistant_answers_over_http() {
    let Some((lm, minilm)) = pretrained() else { return };
    let faq = format!("{ROOT}/examples/assistant/faq.csv");
    let srv = Server::start(&[
        "--assistant",
        &format!("shop={faq}"),
        "--assistant-model",
        &lm,
        "--assistant-embedder",
        &minilm,
        &minilm,
    ]);
    let a = &srv.addr;
    let card = get(a, "/v1/models/shop").json();
    assert_eq!((card["kind"].as_str(), card["entries"].as_u64()), (Some("assistant"), Some(48)), "{card}");
    let ask = |q: &str, stream: bool| {
        post(
            a,
            "/v1/chat/completions",
            &json!({"model": "shop", "stream": stream, "messages": [{"role": "user", "content": q}]}),
        )
    };
    let r = ask("How long do I have to send something back?", false);
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["declined"], false, "{c}");
    assert!(!c["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    let ids: Vec<&str> = c["sources"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(ids.len() == 3 && ids.iter().all(|i| i.starts_with('f')), "{c}");
    // Streamed, the pieces join to the same (trimmed) answer.
    let r2 = ask("How long do I have to send something back?", true);
    let joined: String = r2
        .body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: {"))
        .map(|e| serde_json::from_str::<Value>(&format!("{{{e}")).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(String::from))
        .collect();
    assert_eq!(joined, c["choices"][0]["message"]["content"].as_str().unwrap());
    // max_tokens bounds the answer; the next question gets the assistant's own bound back.
    let short = |n: Value| {
        let body = json!({"model": "shop", "max_tokens": n,
                          "messages": [{"role": "user", "content": "How long do I have to send something back?"}]});
        post(a, "/v1/chat/completions", &body)
    };
    let one = short(json!(2)).json();
    assert_eq!(one["choices"][0]["finish_reason"], "length", "cut at max_tokens: {one}");
    let one = one["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(!one.is_empty() && one.split_whitespace().count() <= 2, "{one}");
    let again = ask("How long do I have to send something back?", false).json();
    assert_eq!(again["choices"][0]["message"]["content"], c["choices"][0]["message"]["content"]);
    short(json!(0)).error(400, "max_tokens");
    short(json!("ten")).error(400, "max_tokens");
    // A conversation: a follow-up that retrieves nothing close enough on its own is retrieved after the
    // customer's previous question (the earlier exchange stands before it in the prompt).
    let follow = "How much is it?";
    assert_eq!(ask(follow, false).json()["declined"], true);
    let convo = |earlier: &str| {
        let body = json!({"model": "shop", "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": earlier},
            {"role": "assistant", "content": "Yes, we do."},
            {"role": "user", "content": follow}]});
        post(a, "/v1/chat/completions", &body).json()
    };
    let c = convo("Do you offer express delivery?");
    assert_eq!((c["declined"].as_bool(), c["sources"][0]["id"].as_str()), (Some(false), Some("f03")), "{c}");
    let c = convo("What is the weather on Mars?");
    assert_eq!(c["declined"], true, "{c}");
    let long = json!({"model": "shop", "messages": [{"role": "user", "content": "x".repeat(17_000)},
                                                    {"role": "user", "content": follow}]});
    post(a, "/v1/chat/completions", &long).error(400, "16,000 at most");
    let ends_answered = json!({"model": "shop", "messages": [{"role": "user", "content": follow},
                                                             {"role": "assistant", "content": "Yes."}]});
    post(a, "/v1/chat/completions", &ends_answered).error(400, "must end with the customer's question");
    let r = ask("What is the weather on Mars?", false).json();
    assert_eq!(r["declined"], true, "{r}");
    assert!(r["choices"][0]["message"]["content"].as_str().unwrap().contains("colleague"));
    let r = ask("What is the weather on Mars?", true);
    let last = r.body.split("\n\n").filter(|e| e.starts_with("data: {")).last().unwrap().to_string();
    let last: Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
    assert_eq!((last["declined"].as_bool(), last["choices"][0]["finish_reason"].as_str()), (Some(true), Some("stop")));
    post(a, "/v1/chat/completions", &json!({"model": "shop", "messages": [{"role": "system", "content": "x"}]}))
        .error(400, "user message");
}
