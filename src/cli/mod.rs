//! Command-line types (clap) and one file per subcommand. Each subcommand resolves its settings
//! (CLI > `CQR_*` env > `cqr.toml` > defaults), calls into the library and reports through `ui`;
//! no ML logic lives here.

pub mod classify;
pub mod customers;
pub mod drift;
pub mod evaluate;
pub mod models;
pub mod respond;
pub mod runs;
pub mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::io::read::ReadSpec;
use crate::io::{Format, Target};
use crate::settings::FileConfig;
use crate::tracking::TrackingSettings;

/// What a command concluded, apart from errors.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A negative verdict the caller asked for (a gate not met): exit status 1.
    Verdict(String),
}

#[derive(Debug, Parser)]
#[command(
    name = "cqr",
    version,
    about = "Customer-query understanding: train, evaluate and run intent models",
    long_about = "Customer-query understanding: train, evaluate and run intent models.\n\n\
        Exit status: 0 success, 1 a negative verdict you asked for (drift found, a --min-* gate not met), 2 an error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Nothing on stderr but errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Settings file (default: ./cqr.toml when present).
    #[arg(long, global = true, env = "CQR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, global = true, env = "CQR_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Encoder arithmetic: f32, or int8 (8-bit weights and activations, faster, ~0.1–0.3 points
    /// less accurate). For train it is stored in the bundle; elsewhere it overrides the bundle's
    /// [default: the bundle's, f32 for a new one].
    #[arg(
        long,
        global = true,
        env = "CQR_PRECISION",
        value_enum,
        value_name = "P"
    )]
    pub precision: Option<crate::models::fastbert::Precision>,
    /// MLflow tracking server (http[s]://…); unset, runs stay in the local store only.
    #[arg(long, global = true, env = "MLFLOW_TRACKING_URI", value_name = "URI")]
    pub tracking_uri: Option<String>,
    /// MLflow experiment for the runs [default: cqr].
    #[arg(
        long,
        global = true,
        env = "MLFLOW_EXPERIMENT_NAME",
        value_name = "NAME"
    )]
    pub experiment: Option<String>,
    /// The local run store (MLflow's file layout).
    #[arg(
        long,
        global = true,
        env = "CQR_RUNS_DIR",
        default_value = "runs",
        value_name = "DIR"
    )]
    pub runs_dir: PathBuf,
}

impl GlobalArgs {
    pub fn tracking(&self) -> TrackingSettings {
        TrackingSettings {
            uri: self.tracking_uri.clone().filter(|u| !u.is_empty()),
            experiment: self
                .experiment
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "cqr".into()),
            runs_dir: self.runs_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model bundle from labelled data.
    Train(train::TrainArgs),
    /// Measure a model on labelled data: accuracy, macro-F1, calibration, abstention, latency.
    Evaluate(evaluate::EvaluateArgs),
    /// Classify queries: one JSON line (or CSV/Parquet row) out per record in.
    Classify(classify::ClassifyArgs),
    /// Check a batch for drift against the model's reference: tests, estimated accuracy, what
    /// changed. Exit 1 when drift is found.
    DriftCheck(drift::DriftArgs),
    /// Draft replies: classify each query, then fill the playbook from the ticket and the
    /// customer's history, ground it in similar resolved tickets and hand off what needs a person.
    Respond(respond::RespondArgs),
    /// Summarise a customer history: contacts, intent mix, sentiment trend, escalations, open
    /// issues, repeat contacts.
    Customers(customers::CustomersArgs),
    /// The local run store: list runs, push unsent ones to the tracking server.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// The model registry on the tracking server: list models and versions, move aliases.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout: `cqr man > cqr.1; man ./cqr.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` to stdout.
fn completions(args: &CompletionsArgs) -> anyhow::Result<Outcome> {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cqr", &mut buf);
    crate::ui::print(&String::from_utf8_lossy(&buf))?;
    Ok(Outcome::Success)
}

/// Writes the man page to stdout.
fn man_page() -> anyhow::Result<Outcome> {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    crate::ui::print(&String::from_utf8_lossy(&buf))?;
    Ok(Outcome::Success)
}

/// How a command that prints a report (evaluate, drift-check) prints it on stdout.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// How to print the report on stdout [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<crate::eval::report::ReportFormat>,
    /// Print the report as JSON (short for --output-format json).
    #[arg(long, conflicts_with = "output_format")]
    pub json: bool,
}

impl ReportArgs {
    /// The format asked for, if any.
    pub fn asked(&self) -> Option<crate::eval::report::ReportFormat> {
        if self.json {
            Some(crate::eval::report::ReportFormat::Json)
        } else {
            self.output_format
        }
    }
}

/// How input data is read: shared by every command that takes DATA.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Column (or JSON field) holding the query text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_col: String,
    /// Column holding the intent label (default: `label`, else `intent`, else `category`).
    #[arg(long, value_name = "NAME")]
    pub label_col: Option<String>,
    /// Column holding the record id (default: `id` when present, else the row number).
    #[arg(long, value_name = "NAME")]
    pub id_col: Option<String>,
    /// Keep PII in what cqr writes: by default e-mails, phone and card numbers, IBANs, ... are
    /// replaced by [EMAIL], [PHONE], [CARD], ... before the text reaches a model, an output,
    /// a log or the run store. With `train` the model is trained on unmasked text (recorded in
    /// its manifest); classify and evaluate always score text masked as the model was trained.
    #[arg(long)]
    pub no_mask: bool,
}

impl InputArgs {
    /// The masking scheme training text gets (and the manifest records).
    pub fn masking(&self) -> crate::text::pii::Masking {
        if self.no_mask {
            crate::text::pii::Masking::Off
        } else {
            crate::text::pii::Masking::Full
        }
    }

    pub fn spec(&self, data: &str, format: Option<Format>, need_label: bool) -> ReadSpec {
        ReadSpec {
            target: Target::parse(data),
            format,
            text_col: self.text_col.clone(),
            label_col: self.label_col.clone(),
            need_label,
            id_col: self.id_col.clone(),
            keep: Vec::new(),
            optional: Vec::new(),
            skip_bad_text: false,
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    if let Some(n) = cli.global.threads {
        if n == 0 {
            anyhow::bail!(crate::Error::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("setting up {n} threads: {e}"))?;
    }
    if let Some(p) = cli.global.precision {
        crate::models::fastbert::set_precision(p);
    }
    let config = FileConfig::load(cli.global.config.as_deref())?;
    let tracking = cli.global.tracking();
    match cli.command {
        Command::Train(a) => train::run(a, &config, &tracking),
        Command::Evaluate(a) => evaluate::run(a, &config, &tracking),
        Command::Classify(a) => classify::run(a, &config, &tracking),
        Command::DriftCheck(a) => drift::run(a, &config, &tracking),
        Command::Respond(a) => respond::run(a, &config, &tracking),
        Command::Customers(a) => customers::run(a, &config),
        Command::Runs(c) => runs::run(c, &tracking),
        Command::Models(c) => models::run(c, &tracking),
        Command::Completions(a) => completions(&a),
        Command::Man => man_page(),
    }
}
