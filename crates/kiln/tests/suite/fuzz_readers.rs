//! A seeded fuzz of every reader of user files: valid inputs (a config, a CSV, a JSON-lines file, an ARFF
//! file, MNIST IDX files, a saved model) cut, spliced, with bytes flipped, lines dropped, duplicated or
//! swapped, and values replaced by tokens that break types. Each reader must return Ok or an error, never
//! panic, and an error must be one line. The same seed gives the same inputs, so a failure is reproducible
//! from the printed case number.

use kiln::Result;
use kiln::config::Config;
use kiln::data::csv::{CsvOptions, read_table};
use kiln::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// A small deterministic generator (no dependency; the cases must not change between runs).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that break a value's type or range, or the syntax around it.
const TOKENS: [&str; 16] = [
    "-1",
    "0",
    "1e999",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "nan",
    "true",
    "[1, \"a\"]",
    "=",
    "[",
    "\"",
    "\\",
    "\u{0}",
    "99999999999999999999",
];

/// One mutation of `input`.
fn mutate(input: &[u8], rng: &mut Lcg) -> Vec<u8> {
    let mut b = input.to_vec();
    let lines = |b: &[u8]| b.split(|&c| c == b'\n').map(|l| l.to_vec()).collect::<Vec<_>>();
    for _ in 0..1 + rng.below(3) {
        match rng.below(7) {
            0 if !b.is_empty() => b.truncate(rng.below(b.len())),
            1 if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] = rng.next() as u8;
            }
            2 => {
                let mut l = lines(&b);
                if !l.is_empty() {
                    let i = rng.below(l.len());
                    l.remove(i);
                }
                b = l.join(&b'\n');
            }
            3 => {
                let mut l = lines(&b);
                if !l.is_empty() {
                    let i = rng.below(l.len());
                    let line = l[i].clone();
                    l.insert(rng.below(l.len()), line);
                }
                b = l.join(&b'\n');
            }
            4 => {
                let mut l = lines(&b);
                if l.len() > 1 {
                    let (i, j) = (rng.below(l.len()), rng.below(l.len()));
                    l.swap(i, j);
                }
                b = l.join(&b'\n');
            }
            5 => {
                // A value replaced: the text after an `=` or a `,`.
                let mut l = lines(&b);
                if !l.is_empty() {
                    let i = rng.below(l.len());
                    let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                    let cut = l[i].iter().rposition(|&c| c == b'=' || c == b',').map_or(0, |p| p + 1);
                    l[i].truncate(cut);
                    l[i].extend_from_slice(tok);
                }
                b = l.join(&b'\n');
            }
            _ => {
                let at = rng.below(b.len() + 1);
                let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, tok.iter().copied());
            }
        }
    }
    b
}

/// Feeds `cases` mutations of `valid` to `read` (written to `path` first); returns how many it tried.
fn fuzz(name: &str, valid: &[u8], path: &Path, seed: u64, cases: usize, read: &dyn Fn(&Path) -> Result<()>) -> usize {
    let mut rng = Lcg(seed);
    let mut refused = 0;
    for k in 0..cases {
        let input = mutate(valid, &mut rng);
        std::fs::write(path, &input).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| read(path)));
        match r {
            Err(_) => panic!("{name} case {k} panicked on {:?}", String::from_utf8_lossy(&input)),
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{name} case {k}: a multi-line error: {msg}");
                assert!(!msg.trim().is_empty(), "{name} case {k}: an empty error");
                refused += 1;
            }
            Ok(Ok(())) => {}
        }
    }
    // The mutations must bite: a fuzz whose inputs all read fine tests nothing.
    assert!(refused * 5 >= cases, "{name}: only {refused} of {cases} mutated inputs were refused");
    println!("{name}: {refused} of {cases} refused, the rest read");
    cases
}

fn table_csv() -> String {
    let mut s = String::from("a,b,c,text,y\n");
    for i in 0..40 {
        s += &format!("{},{}.5,{},\"w{} x, y\",{}\n", i % 7, i % 5, ["r", "g"][i % 2], i % 3, ["p", "q"][i % 2]);
    }
    s
}

#[test]
fn readers_of_user_files_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut total = 0;

    // Configs: a table config with layers and callbacks, read and checked (no data needed).
    let config = "[data]\npath = \"t.csv\"\ntarget = [\"y\", \"a\"]\nignore = [\"c\"]\n[data.prepare]\nscale = \"robust\"\n\
                  [data.prepare.text]\nngrams = 2\n[model]\noutputs = [\"o1\", \"o2\"]\n[[model.nodes]]\ntype = \"dense\"\n\
                  name = \"h\"\nunits = 8\ninputs = [\"input\"]\n[[model.nodes]]\ntype = \"dense\"\nname = \"o1\"\nunits = 1\n\
                  activation = \"sigmoid\"\ninputs = [\"h\"]\n[[model.nodes]]\ntype = \"dense\"\nname = \"o2\"\nunits = 1\n\
                  inputs = [\"h\"]\n[train]\nepochs = 3\nbatch_size = 16\noptimizer = { type = \"adam\", learning_rate = 0.01 }\n\
                  loss_weights = [1.0, 0.5]\nschedule = { type = \"exponential\", decay_steps = 10, decay_rate = 0.9 }\n\
                  [[callbacks]]\ntype = \"early_stopping\"\npatience = 2\n";
    assert!(Config::parse(config).is_ok(), "the seed config is valid: {:?}", Config::parse(config).err());
    let path = dir.join("c.toml");
    total += fuzz("config", config.as_bytes(), &path, 1, 1500, &|p| {
        Config::from_file(p).map(|_| ())?;
        Ok(())
    });

    // Tables: CSV, JSON lines, ARFF, each read and, when they read, their types inferred.
    let read = |p: &Path| -> Result<()> {
        let t = read_table(p, &CsvOptions::default())?;
        for c in &t.columns {
            c.infer(&t.source)?;
        }
        Ok(())
    };
    total += fuzz("csv", table_csv().as_bytes(), &dir.join("t.csv"), 2, 1500, &read);
    let jsonl: String = (0..30).map(|i| format!("{{\"a\": {i}, \"b\": \"x{}\", \"y\": {}}}\n", i % 4, i % 2)).collect();
    total += fuzz("jsonl", jsonl.as_bytes(), &dir.join("t.jsonl"), 3, 800, &read);
    let arff =
        "@relation r\n@attribute a numeric\n@attribute b {x,y}\n@attribute c string\n@data\n1,x,'hi there'\n2,y,?\n";
    total += fuzz("arff", arff.as_bytes(), &dir.join("t.arff"), 4, 800, &read);

    // MNIST IDX files.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend((0..4 * 784).map(|i| (i % 251) as u8));
    total += fuzz("idx images", &images, &dir.join("i-idx3-ubyte"), 5, 800, &|p| {
        kiln::data::mnist::load_images(p).map(|_| ())
    });
    let labels = [0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 9];
    total += fuzz("idx labels", &labels, &dir.join("l-idx1-ubyte"), 6, 500, &|p| {
        kiln::data::mnist::load_labels(p).map(|_| ())
    });

    // Saved models: a graph with a table preparation and a compile config in its metadata.
    let mut m = Model::with_inputs(&[("input", &[3])]);
    m.apply(Dense::new(4).activation(Activation::Relu), &["input"]).unwrap();
    m.apply(Dense::new(2).activation(Activation::Softmax), &[]).unwrap();
    m.compile(Adam::default(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    m.save(dir.join("m.safetensors")).unwrap();
    let model = std::fs::read(dir.join("m.safetensors")).unwrap();
    total += fuzz("model", &model, &dir.join("fuzzed.safetensors"), 7, 1500, &|p| Model::load(p).map(|_| ()));

    println!("{total} fuzzed inputs through the readers");
}
