//! Recommenders through the binary: `kiln train` on interactions writes the split, the metrics and the
//! model; `kiln evaluate --protocol` gives metrics.json's figures again; `kiln recommend` answers for a
//! user, an item and a new user; `kiln serve` answers the same over HTTP; wrong inputs are one line.

use crate::common::*;
use crate::serve::{KEY, Server, get, post};
use serde_json::{Value, json};

/// 40 users in two groups of taste over 20 items, with a users side table (the group) and timestamps.
fn write_data(t: &Tmp) {
    let (mut inter, mut users) = (String::from("user,item,t\n"), String::from("user,group\n"));
    for u in 0..40 {
        let g = u % 2;
        users.push_str(&format!("u{u},{}\n", ["a", "b"][g]));
        for k in 0..8 {
            inter.push_str(&format!("u{u},m{},{}\n", (u * 3 + k * 7) % 10 + 10 * g, k));
        }
    }
    std::fs::write(t.path("inter.csv"), inter).unwrap();
    std::fs::write(t.path("users.csv"), users).unwrap();
    std::fs::write(
        t.path("tt.toml"),
        "[data]\nformat = \"interactions\"\npath = \"inter.csv\"\nuser = \"user\"\nitem = \"item\"\n\
         timestamp = \"t\"\nusers = \"users.csv\"\neval_negatives = 5\n\n[model]\nkind = \"two_tower\"\ndim = 8\n\
         hidden = [16]\n\n[train]\nepochs = 3\nbatch_size = 16\n",
    )
    .unwrap();
}

#[test]
fn train_evaluate_recommend_and_serve() {
    let t = Tmp::new("recommend");
    write_data(&t);
    let run = t.s("run");
    let o = kiln(&["train", &t.s("tt.toml"), "--run-dir", &run, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["model.safetensors", "metrics.json", "config.toml", "log.jsonl", "split/train.tsv", "split/test.tsv"] {
        assert!(t.path("run").join(f).exists(), "{f}");
    }
    // The test file: 40 users, each with its item and 5 negatives.
    let test = std::fs::read_to_string(t.path("run/split/test.tsv")).unwrap();
    assert_eq!(test.lines().count(), 41);
    assert!(test.lines().skip(1).all(|l| l.split('\t').count() == 7), "{test}");
    // evaluate gives metrics.json's figures.
    let m: Value = serde_json::from_str(&std::fs::read_to_string(t.path("run/metrics.json")).unwrap()).unwrap();
    for p in ["sampled", "full"] {
        let o = kiln(&["evaluate", &run, "--protocol", p]);
        let out = stdout(&o);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let hr = format!("HR@10 {:.4}", m["test"][p]["hr"].as_f64().unwrap());
        assert!(out.contains(&hr) && out.contains("40 users"), "{p}: {out} vs {hr}");
    }
    // recommend: JSON, the user's rated items left out.
    let o = kiln(&["recommend", &run, "--user", "u3", "--k", "4", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let items: Vec<&str> = list.as_array().unwrap().iter().map(|v| v["item"].as_str().unwrap()).collect();
    assert_eq!(items.len(), 4);
    let rated: Vec<String> = std::fs::read_to_string(t.path("inter.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("u3,"))
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert!(items.iter().all(|i| !rated.iter().any(|r| r == i)), "{items:?} vs rated {rated:?}");
    assert!(kiln(&["recommend", &run, "--feature", "group=b"]).status.success());
    assert!(kiln(&["recommend", &run, "--similar-items", "m1", "--k", "3"]).status.success());

    // Wrong inputs: one line each.
    assert_fails(&kiln(&["recommend", &run, "--user", "nobody"]), &["user `nobody` is not one of the model's 40"]);
    assert_fails(&kiln(&["recommend", &run, "--feature", "group"]), &["expected NAME=VALUE"]);
    assert_fails(&kiln(&["recommend", &run, "--feature", "group=c"]), &["not one of the values the model knows: a, b"]);
    assert_fails(&kiln(&["recommend", &run]), &["give one of --user ID"]);
    assert_fails(&kiln(&["evaluate", &run, "--protocol", "all"]), &["--protocol must be `sampled`"]);
    assert_fails(&kiln(&["evaluate", &run, "--data", &t.s("inter.csv")]), &["neither a run folder"]);
    assert_fails(&kiln(&["predict", &t.s("run/model.safetensors"), "x"]), &["is a recommender"]);
    assert_fails(&kiln(&["train", &t.s("tt.toml"), "--set", "model.units=3"]), &["model.units does not apply"]);
    std::fs::write(t.path("bad.csv"), "user,item,t\nu1,m1,1\nu2,m2,1\n").unwrap();
    let bad = std::fs::read_to_string(t.path("tt.toml")).unwrap().replace("inter.csv", "bad.csv");
    std::fs::write(t.path("bad.toml"), bad).unwrap();
    assert_fails(&kiln(&["train", &t.s("bad.toml"), "--run-dir", &t.s("badrun")]), &["no user has two interactions"]);
    assert!(!t.path("badrun").exists(), "a failed run leaves no folder");

    // Over HTTP, the same answers.
    let keys = t.path("keys.txt");
    std::fs::write(&keys, KEY).unwrap();
    let server = Server::start(&[&format!("movies={run}"), "--api-key-file", keys.to_str().unwrap()]);
    let card = get(&server.addr, "/v1/models/movies").json();
    assert_eq!((card["kind"].as_str(), card["recommender"].as_str()), (Some("recommender"), Some("two_tower")));
    let r = post(&server.addr, "/v1/models/movies/recommend", &json!({"user": "u3", "k": 4}));
    assert_eq!(r.status, 200, "{}", r.body);
    let served: Vec<String> =
        r.json()["items"].as_array().unwrap().iter().map(|v| v["item"].as_str().unwrap().to_string()).collect();
    assert_eq!(served, items);
    let r = post(&server.addr, "/v1/models/movies/recommend", &json!({"features": {"group": "a"}, "k": 2}));
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2, "{}", r.body);
    post(&server.addr, "/v1/models/movies/recommend", &json!({"user": "zz"})).error(400, "user `zz`");
    post(&server.addr, "/v1/models/movies/recommend", &json!({"user": "u1", "k": 0})).error(400, "`k` must be");
    post(&server.addr, "/v1/models/movies/recommend", &json!({"usr": "u1"})).error(400, "unknown field `usr`");
    post(&server.addr, "/v1/models/movies/predict", &json!({"instances": [1]})).error(404, "is a recommender");
}
