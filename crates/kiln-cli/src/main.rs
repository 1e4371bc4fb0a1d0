//! `kiln`: train a model from a TOML file, evaluate it, predict with it, print its summary, plot and
//! report a run.
//! Every failure is one line on stderr starting with "error:", and a non-zero exit.

mod commands;
mod font;
mod plot;
mod report;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Train, evaluate and use neural networks", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Print the config with every default filled in, and exit.
        #[arg(long)]
        print_config: bool,
        /// No progress bar or per-epoch lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Loss and metrics of a saved model on a data set.
    Evaluate {
        /// A model saved by `kiln train` (.safetensors).
        model: PathBuf,
        /// The data folder (MNIST IDX files).
        #[arg(long)]
        data: PathBuf,
        /// Which split of the data: test or train.
        #[arg(long, default_value = "test")]
        split: String,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
    /// Class probabilities for one input: a PNG image, or sample --index of an IDX images file.
    Predict {
        model: PathBuf,
        /// A PNG image of the model's input size, or an IDX images file (raw or .gz) with --index.
        input: PathBuf,
        /// Which image of an IDX file.
        #[arg(long)]
        index: Option<usize>,
    },
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
    /// The layer table of a saved model or of a config file.
    Summary {
        /// A .safetensors model or a .toml config.
        path: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train { config, resume, epochs, output, run_dir, print_config, quiet } => {
            train::train(train::TrainArgs { config, resume, epochs, output, run_dir, print_config, quiet })
        }
        Command::Evaluate { model, data, split, batch_size } => commands::evaluate(&model, &data, &split, batch_size),
        Command::Predict { model, input, index } => commands::predict(&model, &input, index),
        Command::Summary { path } => commands::summary(&path),
        Command::Plot { run_dir } => plot::plot(&run_dir).map(|(svg, png)| {
            println!("wrote {} and {}", svg.display(), png.display());
        }),
        Command::Report { run_dir } => report::report(&run_dir).map(|r| println!("wrote {}", r.display())),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
