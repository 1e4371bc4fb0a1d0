//! MovieLens-100K from Rust: read the interactions and side tables, split leave-last-out, train a
//! recommender and rank the test items on both protocols. `bash tools/fetch_models.sh` fetches the data.
//!   cargo run --release -p kiln --example movielens -- [bpr|ncf|two_tower] [epochs]

use kiln::recommend::{
    InteractionOptions, Interactions, Protocol, Recommender, RecommenderConfig, RecommenderFit, RecommenderKind, Split,
};

fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let kind = match args.get(1).map(String::as_str).unwrap_or("bpr") {
        "ncf" => RecommenderKind::Ncf,
        "two_tower" => RecommenderKind::TwoTower,
        _ => RecommenderKind::Bpr,
    };
    let epochs = args.get(2).and_then(|e| e.parse().ok()).unwrap_or(20);
    let dir = std::path::Path::new("data/ml-100k");
    let mut o = InteractionOptions::new(dir.join("ml-100k.inter"));
    o.timestamp = Some("timestamp".into());
    o.users = Some(dir.join("ml-100k.user"));
    o.items = Some(dir.join("ml-100k.item"));
    o.ignore = vec!["zip_code".into(), "movie_title".into()];
    let data = Interactions::read(&o)?;
    let split = Split::leave_last_out(&data, std::env::var("VALID").map_or(true, |v| v != "0"), 99, 0);
    let mut config = RecommenderConfig::new(kind);
    if let Some(l2) = std::env::var("L2").ok().and_then(|v| v.parse().ok()) {
        config.l2 = l2;
    }
    if let Some(d) = std::env::var("DIM").ok().and_then(|v| v.parse().ok()) {
        config.dim = d;
    }
    if let Some(h) = std::env::var("HIST").ok().and_then(|v| v.parse().ok()) {
        config.history = h;
    }
    if let Some(n) = std::env::var("NEG").ok().and_then(|v| v.parse().ok()) {
        config.negatives = n;
    }
    let mut rec = Recommender::new(config, &data, &split, 0)?;
    let mut fit = RecommenderFit { epochs, ..Default::default() };
    if let Some(lr) = std::env::var("LR").ok().and_then(|v| v.parse().ok()) {
        fit.optimizer.set_learning_rate(lr);
    }
    if let Some(b) = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()) {
        fit.batch_size = b;
    }
    rec.fit(&split, &fit, |log| {
        let v =
            log.valid.as_ref().map(|v| format!("valid HR@10 {:.4} NDCG@10 {:.4}", v.hr, v.ndcg)).unwrap_or_default();
        println!("epoch {:>3}  loss {:.4}  {v}  ({:.2} s)", log.epoch, log.loss, log.seconds);
    })?;
    for p in [Protocol::Sampled, Protocol::Full] {
        println!("test: {}", rec.evaluate(&split.test, p, 10)?);
    }
    Ok(())
}
