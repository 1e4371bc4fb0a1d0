//! `kiln index build` and `kiln index query`: semantic search over a column of texts with a pretrained
//! encoder (`kiln::index`). Build embeds every text once and saves the index folder (with an HNSW graph for
//! large collections); query embeds the question with the same encoder and prints the closest texts by
//! cosine similarity.

use crate::embed::{column_texts, progress_bar};
use kiln::index::{APPROXIMATE_FROM, HnswSettings, Index};
use kiln::pretrained::Encoder;
use kiln::{Error, Result};
use std::path::Path;

pub fn build(
    model: &Path,
    input: &Path,
    column: &str,
    output: &Path,
    batch: usize,
    approximate: &str,
    quiet: bool,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::Config("--batch-size 0: want at least 1".into()));
    }
    let graph_from = match approximate {
        "auto" => APPROXIMATE_FROM,
        "always" => 0,
        "never" => usize::MAX,
        other => {
            return Err(Error::Config(format!("--approximate `{other}`: want auto, always or never")));
        }
    };
    // Checked before the work: an existing file or folder that is not an index is never replaced.
    if output.exists() && !kiln::index::is_index(output) {
        return Err(Error::Config(format!(
            "--output {}: exists and is not a kiln index; choose a new folder",
            output.display()
        )));
    }
    let parent = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Config(format!(
            "--output {}: folder {} does not exist",
            output.display(),
            parent.display()
        )));
    }
    let mut encoder = Encoder::open(model)?;
    let owned = column_texts(input, column)?;
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let bar = progress_bar(texts.len(), quiet);
    let (index, truncated) =
        Index::build(&mut encoder, model, input, column, &texts, batch, &mut |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    if truncated > 0 {
        eprintln!(
            "note: {truncated} of {} texts are longer than the model's {} tokens; their vectors read the first {}",
            texts.len(),
            encoder.max_tokens,
            encoder.max_tokens
        );
    }
    let index = if texts.len() >= graph_from {
        if !quiet {
            eprintln!("building the HNSW graph of {} vectors", texts.len());
        }
        index.with_graph(HnswSettings::default())?
    } else {
        index
    };
    index.save(output)?;
    let how = if index.is_approximate() { ", with an HNSW graph" } else { "" };
    println!("indexed {} texts ({} values each{how}) in {}", texts.len(), index.info.dim, output.display());
    Ok(())
}

pub fn query(index: &Path, question: &str, k: usize, model: Option<&Path>, json: bool, exact: bool) -> Result<()> {
    if k == 0 {
        return Err(Error::Config("--k 0: want at least 1".into()));
    }
    if question.trim().is_empty() {
        return Err(Error::Config("the question is empty: give the text to search for".into()));
    }
    let index = Index::load(index)?;
    let model_dir = model.unwrap_or(&index.info.model);
    if !model_dir.is_dir() {
        return Err(Error::Config(format!(
            "the index was built with the encoder in {}, which is not there now; give its folder with --model",
            model_dir.display()
        )));
    }
    let mut encoder = Encoder::open(model_dir)?;
    if encoder.dim() != index.info.dim {
        return Err(Error::Config(format!(
            "--model {}: makes vectors of {} values; the index holds {} (built with {})",
            model_dir.display(),
            encoder.dim(),
            index.info.dim,
            index.info.model.display()
        )));
    }
    let (vecs, _) = encoder.embed(&[question], 1, &mut |_| {})?;
    let hits = if exact { index.search_exact(&vecs[0], k)? } else { index.search(&vecs[0], k)? };
    if json {
        let rows: Vec<_> =
            hits.iter().map(|h| serde_json::json!({"score": h.score, "row": h.doc.row, "text": h.doc.text})).collect();
        println!("{}", serde_json::to_string_pretty(&rows).expect("plain data"));
        return Ok(());
    }
    println!("rank  score   row  text");
    for (i, h) in hits.iter().enumerate() {
        let text: String = h.doc.text.chars().take(100).collect();
        let more = if h.doc.text.chars().count() > 100 { "…" } else { "" };
        println!("{:>4}  {:.4}  {:>4}  {}{more}", i + 1, h.score, h.doc.row, text.replace('\n', " "));
    }
    Ok(())
}
