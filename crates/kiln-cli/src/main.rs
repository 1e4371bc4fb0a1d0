//! `kiln`: train a model from a TOML file, evaluate it, predict with it, print its summary, plot and
//! report a run.
//! Every failure is one line on stderr starting with "error:", and a non-zero exit.

mod assistant;
mod chart;
mod commands;
mod cv;
mod embed;
mod explain;
mod export;
mod generate;
mod index;
mod outputs;
mod plot;
mod recommend;
mod report;
mod run_dir;
mod serve;
mod table;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Train, evaluate and use neural networks", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads to compute on (default: the KILN_THREADS environment variable, else every core).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Where models compute: cpu or cuda (a kiln built with `--features cuda`, on an NVIDIA GPU). Default:
    /// a config's `[train] device` when training, else cpu.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<String>,
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Embed every text of a column once and save the vectors and texts in an index folder.
    Build {
        /// The encoder folder (config.json, model.safetensors, tokenizer.json), e.g. all-MiniLM-L6-v2.
        model: PathBuf,
        /// A CSV (any delimiter, .gz too) or JSON-lines file with the texts.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// The column holding the texts.
        #[arg(long, value_name = "NAME")]
        column: String,
        /// The index folder to write (an index already there is replaced).
        #[arg(long, value_name = "DIR")]
        output: PathBuf,
        /// Texts per batch.
        #[arg(long, default_value_t = 32, value_name = "N")]
        batch_size: usize,
        /// Also build an HNSW graph that queries walk instead of scoring every text (approximate): `auto`
        /// from 100,000 texts on, `always` or `never`.
        #[arg(long, default_value = "auto", value_name = "WHEN")]
        approximate: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The texts closest to a question, by cosine similarity of their vectors (through the index's HNSW
    /// graph when it has one, else every text scored).
    Query {
        /// The index folder `index build` wrote.
        index: PathBuf,
        question: String,
        /// How many texts to print.
        #[arg(long, default_value_t = 5, value_name = "N")]
        k: usize,
        /// The encoder folder, when it has moved since the index was built.
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Print the hits as JSON (score, row, text).
        #[arg(long)]
        json: bool,
        /// Score every text even when the index has a graph.
        #[arg(long)]
        exact: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt with a GGUF language model (LLaMA family, e.g. SmolLM2), streamed as it is made.
    Generate {
        /// The model file (.gguf): Q4_0, Q4_1, Q8_0, F16, BF16 or F32 weights.
        model: PathBuf,
        prompt: String,
        /// Answer the prompt as one user turn through the model's chat template (instruct models).
        #[arg(long)]
        chat: bool,
        #[command(flatten)]
        sample: generate::SampleArgs,
        /// No summary line (tokens, speed) on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Answer customers from an FAQ: the closest entries (by a sentence encoder) are given to a GGUF model,
    /// which answers from them and names them; when none is close, it declines and offers a human.
    Assistant {
        /// The FAQ: a CSV (or JSON lines) with id, question and answer columns.
        #[arg(long, value_name = "FILE")]
        faq: PathBuf,
        /// The language model (.gguf) with a chat template.
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// The sentence encoder folder, e.g. models/all-MiniLM-L6-v2.
        #[arg(long, value_name = "DIR")]
        embedder: PathBuf,
        /// Answer this one question and exit (otherwise: a conversation on the terminal).
        #[arg(long)]
        question: Option<String>,
        /// Score on labelled questions instead (columns question, answer_id: an FAQ id or `none`, key_fact).
        #[arg(long, value_name = "FILE")]
        eval: Option<PathBuf>,
        /// With --eval: also write the figures and every reply as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// FAQ entries given to the model per question.
        #[arg(long, default_value_t = 3)]
        k: usize,
        /// The least cosine similarity of the closest entry to answer at all (below: decline).
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        #[arg(long, default_value = "id")]
        id_column: String,
        #[arg(long, default_value = "question")]
        question_column: String,
        #[arg(long, default_value = "answer")]
        answer_column: String,
        /// Who the assistant is (the system prompt's first sentence).
        #[arg(long, value_name = "TEXT")]
        persona: Option<String>,
    },
    /// Talk with a GGUF chat model in the terminal: the conversation is kept, Ctrl-C stops a long answer.
    Chat {
        /// The model file (.gguf) with a chat template.
        model: PathBuf,
        #[command(flatten)]
        sample: generate::SampleArgs,
    },
    /// Train the model a TOML config describes in a run folder (runs/NAME-TIMESTAMP/), report test metrics,
    /// save it; or continue a run with --resume.
    Train {
        /// The config file (see examples/mnist/mnist.toml).
        config: Option<PathBuf>,
        /// Continue the run in this folder from its last checkpoint.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Override the config's number of epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Also save the final model here (default: the config's [output] model, if any).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The run folder to create (default: [output] runs_dir/NAME-YYYYMMDD-HHMMSS).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Train on a table (CSV or ARFF) with no config: every setting inferred, and printed.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// The column to predict (with --data).
        #[arg(long, value_name = "COLUMN")]
        target: Option<String>,
        /// Tables: the first N rows are the test set.
        #[arg(long, value_name = "N")]
        test_rows: Option<usize>,
        /// Change one config value, KEY=VALUE with a dotted key and a TOML value (repeatable), e.g.
        /// --set train.batch_size=64 --set train.class_weight=balanced --set model.hidden=[64].
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print the config with every default filled in, and exit.
        #[arg(long)]
        print_config: bool,
        /// No progress bar or per-epoch lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Loss and metrics of a saved model on a data set; for a recommender, ranking metrics on its run's
    /// held-out items.
    Evaluate {
        /// A model saved by `kiln train` (.safetensors), or its run folder.
        model: PathBuf,
        /// The data folder (MNIST IDX files), or for a table or text model a CSV/ARFF/JSON-lines file with
        /// its target column (every row is scored, unless --split is given). A recommender: the run folder
        /// (or its split folder) whose held-out items to rank; left out, the model's own run folder.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Which split of the data: MNIST's test (the default) or train; for a table or text model saved in
        /// its run folder, the rows of --data that the run's split.csv marks test, train or validation; for a
        /// recommender, test (the default) or validation.
        #[arg(long)]
        split: Option<String>,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Recommenders: rank each held-out item among its sampled negatives (`sampled`, NCF's protocol) or
        /// among every item the user has not interacted with (`full`).
        #[arg(long)]
        protocol: Option<String>,
        /// Recommenders: the K of HR@K, NDCG@K, recall@K and coverage@K.
        #[arg(long)]
        k: Option<usize>,
    },
    /// What a recommender trained by `kiln train` suggests: the top items for a user it knows (what they
    /// already did left out), for a new user described by features (two_tower), or the items most like one.
    Recommend {
        /// The recommender (.safetensors) or its run folder.
        model: PathBuf,
        /// A user id as the interactions file writes it.
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// An item id: the items whose vectors are closest to its.
        #[arg(long, value_name = "ID")]
        similar_items: Option<String>,
        /// A new user's side-table value, NAME=VALUE (repeatable), e.g. --feature age=24 --feature
        /// occupation=student.
        #[arg(long = "feature", value_name = "NAME=VALUE")]
        feature: Vec<String>,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Print JSON ([{"item": ..., "score": ...}]) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Class probabilities for one input: a PNG image, or sample --index of an IDX images file.
    Predict {
        model: PathBuf,
        /// A PNG image of the model's input size, an IDX images file (raw or .gz) with --index, or, for a
        /// model trained on one text column, the text itself ("Love this dress!").
        input: Option<PathBuf>,
        /// Which image of an IDX file.
        #[arg(long)]
        index: Option<usize>,
        /// Table models: a CSV or ARFF file of rows to predict (the target column may be absent).
        #[arg(long = "input", value_name = "FILE", conflicts_with = "input")]
        rows: Option<PathBuf>,
        /// Where to write the predictions as CSV (default: standard output).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Why a model predicted what it did: a heatmap over an image, a text's terms shaded, a table row's columns
    /// (integrated gradients, saliency, occlusion), or with --data each column's permutation importance.
    /// Writes PNG, Markdown, HTML and JSON files into --output-dir.
    Explain {
        model: PathBuf,
        /// A PNG image, an IDX images file with --index, or for a model of one text column the text itself.
        input: Option<PathBuf>,
        /// Which image of an IDX file.
        #[arg(long)]
        index: Option<usize>,
        /// Table and text models: a CSV or ARFF file of rows, with --row.
        #[arg(long = "input", value_name = "FILE", conflicts_with = "input")]
        rows: Option<PathBuf>,
        /// Which row of --input (1 is the first row after the header).
        #[arg(long, value_name = "N")]
        row: Option<usize>,
        /// Table models: permutation importance of every column over this file (with the target column).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// integrated_gradients (ig), saliency or occlusion (the last two for images).
        #[arg(long, default_value = "integrated_gradients")]
        method: String,
        /// The class explained (a class name, or an index): default the predicted one. For images the heatmap
        /// is drawn for the predicted class and for this one.
        #[arg(long)]
        class: Option<String>,
        /// Integrated gradients: points on the path from the baseline.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Integrated gradients: gausslegendre (Captum's default), riemann_left, riemann_right,
        /// riemann_middle or riemann_trapezoid.
        #[arg(long, default_value = "gausslegendre")]
        rule: String,
        /// Images: the baseline (integrated gradients) or occluding value (occlusion) of every pixel.
        #[arg(long, default_value_t = 0.0)]
        baseline: f32,
        /// Occlusion: the window's side in pixels.
        #[arg(long, default_value_t = 4)]
        window: usize,
        /// Occlusion: the window's step (default half the window).
        #[arg(long)]
        stride: Option<usize>,
        /// Explain the output before its softmax or sigmoid.
        #[arg(long)]
        logits: bool,
        /// --data: shuffles per column.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// --data: accuracy, roc_auc, neg_log_loss or r2 (default accuracy, or r2 for a number).
        #[arg(long)]
        scoring: Option<String>,
        /// --data: the shuffles' seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_name = "DIR", default_value = "explanation")]
        output_dir: PathBuf,
    },
    /// Serve saved models over HTTP: POST /v1/models/NAME/predict, GET /v1/models, /healthz, /readyz,
    /// /metrics, /openapi.json. Stops on SIGTERM or Ctrl-C after the requests in progress.
    Serve(serve::ServeArgs),
    /// Training curves of a run (from its log.jsonl) as curves.svg and curves.png in the run folder.
    Plot {
        /// A run folder made by `kiln train`.
        run_dir: PathBuf,
    },
    /// A Markdown report of a run (report.md in the run folder): curves, metrics, confusion matrix, config.
    Report {
        /// A run folder made by `kiln train`.
        run_dir: PathBuf,
    },
    /// Cross-validate a config: k stratified folds (of a table's rows, or of the training images), mean ±
    /// std of every metric.
    Cv {
        /// A config (images, tables or text), or use --data and --target for a table.
        config: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        #[arg(long, value_name = "COLUMN")]
        target: Option<String>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Change one config value, KEY=VALUE (repeatable), as for train.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Also write each fold's scores here as it finishes (JSON lines), and the summary last.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Continue an interrupted run: read the folds --output holds, and run only the others.
        #[arg(long)]
        resume: bool,
    },
    /// Grid or random search over config values, each cross-validated; writes the best config.
    Search {
        /// A config to start from (images, tables or text).
        config: PathBuf,
        /// A setting to vary: KEY=V1,V2,... in TOML syntax (e.g. model.hidden=[64],[128,64]); repeat it.
        #[arg(long = "set", value_name = "KEY=VALUES", required = true)]
        set: Vec<String>,
        /// Try this many combinations drawn at random instead of all of them.
        #[arg(long, value_name = "N")]
        random: Option<usize>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Where to write the best config (default: best.toml beside the config; every finished config's
        /// scores go beside it, in best.trials.jsonl).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Continue an interrupted search: read the finished configs from its trials file, run the others.
        #[arg(long)]
        resume: bool,
    },
    /// A trained model in another format: an ONNX graph (onnxruntime, tract, ...), or a text model's word
    /// vectors as GloVe text (to start another model's embeddings from: `glove = "FILE"` under
    /// [data.prepare.text]).
    Export {
        /// The model file or run folder.
        model: PathBuf,
        /// onnx, keras or glove.
        #[arg(long)]
        format: String,
        /// Where to write it (default: beside the model, as model.onnx or model.vectors.txt).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The older name of `export --format glove`.
    #[command(hide = true)]
    ExportVectors {
        model: PathBuf,
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
    /// One vector per text from a pretrained text encoder (a Hugging Face BERT-family folder such as
    /// sentence-transformers' all-MiniLM-L6-v2), written as CSV or NumPy .npy.
    Embed {
        /// The model folder (config.json, model.safetensors, tokenizer.json).
        model: PathBuf,
        /// A CSV (any delimiter, .gz too) or JSON-lines file with the texts.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// The column holding the texts.
        #[arg(long, value_name = "NAME")]
        column: String,
        /// Where to write the vectors: FILE.csv or FILE.npy.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Texts per batch (sentence-transformers' default).
        #[arg(long, default_value_t = 32, value_name = "N")]
        batch_size: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Semantic search over a column of texts with a pretrained encoder: `index build`, then `index query`.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Look at data before training on it.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// A Keras model (legacy .h5, as `model.save('mnist_model.h5')` writes it, or Keras 3's .keras) as a kiln
    /// model file, to predict, serve or fine-tune like one trained here. Needs kiln built with `--features
    /// keras` (libhdf5).
    Import {
        file: PathBuf,
        /// Where to write the kiln model (default: beside the file, as NAME.safetensors; an existing file there
        /// is not replaced unless named here).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The layer table of a saved model or of a config file.
    Summary {
        /// A .safetensors model or a .toml config.
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Per column: type, missing rate, distinct values, constant columns, outliers; duplicates, the
    /// target's balance, and columns that almost determine the target.
    Audit {
        /// A CSV (any delimiter, .gz too) or ARFF file.
        file: PathBuf,
        #[arg(long, value_name = "COLUMN")]
        target: Option<String>,
        /// Also write the report as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Also write the report as an HTML page here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
}

/// `--device`: where this command's models compute. The language-model commands have their own CPU
/// kernels (quantized products), so they refuse `cuda` rather than ignore it; `train` without `--device`
/// reads its config's `[train] device` (train.rs).
fn configure_device(device: Option<&str>, command: &Command) -> kiln::Result<()> {
    let Some(device) = device else { return Ok(()) };
    kiln::device::check(device)?;
    if device != "cpu" {
        let name = match command {
            Command::Generate { .. } => Some("generate"),
            Command::Assistant { .. } => Some("assistant"),
            _ => None,
        };
        if let Some(name) = name {
            return Err(kiln::Error::Config(format!(
                "kiln {name} runs GGUF language models on the CPU only: drop --device {device}"
            )));
        }
    }
    match command {
        Command::Train { .. } => Ok(()), // train.rs, once the config (and its device key) is read
        _ => kiln::device::configure(device),
    }
}

/// A CUDA failure during a kernel call (GPU memory exhausted, a driver error) is a panic in kiln-core's
/// backend, whose methods return nothing; on the command line it becomes one `error:` line and exit status
/// 1, as other errors are, instead of a panic report.
fn install_device_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        match msg {
            Some(m) if m.starts_with("CUDA") || m.starts_with("cuBLAS") => {
                eprintln!("error: device error: {m}");
                std::process::exit(1);
            }
            _ => default(info),
        }
    }));
}

fn main() {
    // Output cut short by a closed pipe (`kiln predict ... | head -1`) ends the process quietly, as other
    // command-line tools do, instead of a panic on the next print (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
    if let Err(e) = kiln::threads::configure(cli.threads) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    install_device_panic_hook();
    if let Err(e) = configure_device(cli.device.as_deref(), &cli.command) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    // `mpirun -np N kiln train ...`: this process is one rank of a data-parallel run (kiln::dist).
    let ranks = match (&cli.command, kiln::dist::launched()) {
        (_, None) | (Command::Train { print_config: true, .. }, _) => None,
        (Command::Train { .. }, Some(_)) => kiln::dist::from_env().unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1);
        }),
        (_, Some(l)) => {
            eprintln!(
                "error: started as rank {} of {} by an MPI launcher, but only `kiln train` runs over MPI: run this \
                 command without mpirun",
                l.rank, l.size
            );
            std::process::exit(1);
        }
    };
    let result = match check_outputs(&cli.command) {
        Err(e) => Err(e),
        Ok(()) => run(cli.command, &cli.device, &ranks),
    };
    finish(result, ranks);
}

/// A command line clap rejects, as one `error:` line with the usage folded in (clap prints a paragraph); exit 2
/// as clap's. Help, version, and a command group given without its command (`kiln data`) print as clap prints.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    eprintln!("{}", one_line(&e.render().to_string()));
    std::process::exit(2)
}

/// clap's error paragraph folded into one line: the message, its tips after `;`, then `(usage: ...; see `kiln
/// COMMAND --help`)`, the command being the first argument that names one.
fn one_line(text: &str) -> String {
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("For more information"));
    let (mut message, mut usage) = (Vec::new(), Vec::new());
    for line in lines {
        match line.strip_prefix("Usage: ") {
            Some(u) => usage.push(u),
            None if !usage.is_empty() => usage.push(line),
            None if line.starts_with("tip:") => message.push(format!("; {line}")),
            None => message.push(format!(" {line}")),
        }
    }
    let commands = <Cli as clap::CommandFactory>::command();
    let command = std::env::args().skip(1).find(|a| commands.get_subcommands().any(|c| c.get_name() == a));
    let help = command.map_or("kiln --help".to_string(), |c| format!("kiln {c} --help"));
    let message = message.concat();
    match usage.is_empty() {
        true => format!("{} (see `{help}`)", message.trim()),
        false => format!("{} (usage: {}; see `{help}`)", message.trim(), usage.join(" ")),
    }
}

/// Every output file a command names on its command line, checked against what it reads before any work
/// (`outputs::check_output`); outputs found in a config are checked where the config is read.
fn check_outputs(command: &Command) -> kiln::Result<()> {
    use outputs::check_output;
    let p = |o: &Option<PathBuf>| o.clone().unwrap_or_default();
    match command {
        Command::Predict { model, input, rows, output: Some(o), .. } => {
            check_output("--output", o, &[model.as_path(), &p(input), &p(rows)])
        }
        Command::Embed { input, output, .. } => check_output("--output", output, &[input.as_path()]),
        Command::Cv { config, data, output: Some(o), .. } => check_output("--output", o, &[&p(config), &p(data)]),
        Command::ExportVectors { model, output } => check_output("--output", output, &[model.as_path()]),
        Command::Data { command: DataCommand::Audit { file, json, html, .. } } => {
            for (flag, o) in [("--json", json), ("--html", html)] {
                if let Some(o) = o {
                    check_output(flag, o, &[file.as_path()])?;
                }
            }
            Ok(())
        }
        Command::Assistant { faq, eval, json: Some(o), .. } => check_output("--json", o, &[faq.as_path(), &p(eval)]),
        _ => Ok(()),
    }
}

/// Runs the command.
fn run(command: Command, device: &Option<String>, ranks: &Option<kiln::dist::Shared>) -> kiln::Result<()> {
    match command {
        Command::Train { config, resume, run_dir, data, target, test_rows, set, print_config, .. }
            if resume.is_some()
                && (config.is_some()
                    || run_dir.is_some()
                    || data.is_some()
                    || target.is_some()
                    || test_rows.is_some()
                    || !set.is_empty()
                    || print_config) =>
        {
            Err(kiln::Error::Invalid(
                "--resume continues a run as its folder's config.toml describes it: it takes --epochs, --output \
                 and --quiet, not a config, --run-dir, --data, --target, --test-rows, --set or --print-config"
                    .into(),
            ))
        }
        Command::Train {
            config,
            resume,
            epochs,
            output,
            run_dir,
            data,
            target,
            test_rows,
            set,
            print_config,
            quiet,
        } => train::train(train::TrainArgs {
            config,
            resume,
            data,
            target,
            test_rows,
            epochs,
            output,
            run_dir,
            set,
            print_config,
            quiet,
            ranks: ranks.clone(),
            device: device.clone(),
        }),
        Command::Cv { config, data, target, folds, set, output, resume } => {
            cv::cv(config.as_deref(), data.as_deref(), target.as_deref(), folds, &set, output.as_deref(), resume)
        }
        Command::Search { config, set, random, folds, output, resume } => {
            cv::search(&config, &set, random, folds, output, resume)
        }
        Command::ExportVectors { model, output } => table::export_vectors(&model, &output),
        Command::Export { model, format, output } => export::export(&model, &format, output.as_deref()),
        Command::Embed { model, input, column, output, batch_size, quiet } => {
            embed::embed(&model, &input, &column, &output, batch_size, quiet)
        }
        Command::Index {
            command: IndexCommand::Build { model, input, column, output, batch_size, approximate, quiet },
        } => index::build(&model, &input, &column, &output, batch_size, &approximate, quiet),
        Command::Index { command: IndexCommand::Query { index, question, k, model, json, exact } } => {
            index::query(&index, &question, k, model.as_deref(), json, exact)
        }
        Command::Data { command: DataCommand::Audit { file, target, json, html } } => {
            table::audit_cmd(&file, target.as_deref(), json.as_deref(), html.as_deref())
        }
        Command::Evaluate { model, data, split, batch_size, protocol, k } => {
            commands::evaluate(&model, data.as_deref(), split.as_deref(), batch_size, protocol.as_deref(), k)
        }
        Command::Recommend { model, user, similar_items, feature, k, json } => recommend::recommend(
            &model,
            recommend::Ask { user: user.as_deref(), similar: similar_items.as_deref(), features: &feature, k, json },
        ),
        Command::Predict { model, input, index, rows, output } => {
            table::predict(&model, input.as_deref(), index, rows.as_deref(), output.as_deref())
        }
        Command::Explain {
            model,
            input,
            index,
            rows,
            row,
            data,
            method,
            class,
            steps,
            rule,
            baseline,
            window,
            stride,
            logits,
            repeats,
            scoring,
            seed,
            output_dir,
        } => explain::explain(&explain::Args {
            model: &model,
            input: input.as_deref(),
            index,
            rows: rows.as_deref(),
            row,
            data: data.as_deref(),
            method: &method,
            class: class.as_deref(),
            steps,
            rule: &rule,
            baseline,
            window,
            stride,
            logits,
            repeats,
            scoring: scoring.as_deref(),
            seed,
            output_dir: &output_dir,
        }),
        Command::Summary { path } => commands::summary(&path),
        Command::Import { file, output } => export::import(&file, output.as_deref()),
        Command::Serve(args) => serve::serve(args),
        Command::Generate { model, prompt, chat, sample, quiet } => {
            generate::generate(&model, &prompt, chat, &sample, quiet)
        }
        Command::Chat { model, sample } => generate::chat(&model, &sample),
        Command::Assistant {
            faq,
            model,
            embedder,
            question,
            eval,
            json,
            k,
            threshold,
            id_column,
            question_column,
            answer_column,
            persona,
        } => {
            let a = assistant::AssistantArgs {
                faq: &faq,
                model: &model,
                embedder: &embedder,
                columns: [&id_column, &question_column, &answer_column],
                k,
                threshold,
                persona: persona.as_deref(),
            };
            match (eval, question.is_some(), json) {
                (Some(_), true, _) => Err(kiln::Error::Config(
                    "--eval answers a file of questions; give it or --question, not both".into(),
                )),
                (None, _, Some(_)) => {
                    Err(kiln::Error::Config("--json writes the results of --eval: give --eval FILE".into()))
                }
                (Some(q), false, json) => assistant::eval(&a, &q, json.as_deref()),
                (None, _, None) => assistant::run(&a, question.as_deref()),
            }
        }
        Command::Plot { run_dir } => plot::plot(&run_dir).map(|(svg, png)| {
            println!("wrote {} and {}", svg.display(), png.display());
        }),
        Command::Report { run_dir } => report::report(&run_dir).map(|r| println!("wrote {}", r.display())),
    }
}

/// Exits as the result says: with the error's line and status, every MPI rank together.
fn finish(result: kiln::Result<()>, ranks: Option<kiln::dist::Shared>) {
    if let Err(e) = result {
        // Stopped by a signal: 128 + its number, as shells report an interrupted command.
        let sig = run_dir::SIGNAL.load(std::sync::atomic::Ordering::SeqCst);
        let code = if matches!(e, kiln::Error::Stopped(_)) && sig > 0 { 128 + sig } else { 1 };
        match &ranks {
            None => eprintln!("error: {e}"),
            // Every rank stops after the same step, and rank 0 says where its checkpoint is.
            Some(r) if r.rank() == 0 || !matches!(e, kiln::Error::Stopped(_)) => {
                eprintln!("error: rank {} of {}: {e}", r.rank(), r.size())
            }
            Some(_) => {}
        }
        if let Some(r) = ranks {
            if !matches!(e, kiln::Error::Stopped(_)) {
                // No rank is left waiting in a sum for this one.
                r.abort(code);
            }
            // Every rank stopped after the same step (the stop flags and the loss are summed): none exits
            // before rank 0 has written its checkpoint and said so, since mpirun ends the job when one rank
            // exits with an error.
            let _ = r.barrier();
            drop(r);
        }
        std::process::exit(code);
    }
    // Ends MPI (MPI_Finalize) on every rank.
    drop(ranks);
}
