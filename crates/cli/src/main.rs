//! `mailfleet`: one binary, several roles. Configuration comes from the environment
//! (12-factor); every setting has a default that works against the quick start's services,
//! except the secret key, which has none.

mod account;
mod config;
mod demo;
mod run;

use clap::{Parser, Subcommand};
use config::{Common, CoordinatorArgs, DemoArgs, WorkerArgs};

#[derive(Parser)]
#[command(
    name = "mailfleet",
    version,
    about = "Keeps CRM users' mailboxes in two-way sync with Postgres."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Run the scheduler and the HTTP API.
    Coordinator(CoordinatorArgs),
    /// Consume jobs from RabbitMQ and run them.
    Worker(WorkerArgs),
    /// Seed a demo mailbox in the local Dovecot, run a coordinator and two workers, sync it.
    Demo(DemoArgs),
    /// Manage mail accounts through a coordinator's HTTP API.
    Account(account::AccountArgs),
    /// Create a local Dovecot user holding generated mail (benchmarks, manual testing).
    #[command(hide = true)]
    DevSeed(config::SeedArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest and rustls need a crypto provider before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let service = match &cli.command {
        Command::Coordinator(_) => "mailfleet-coordinator",
        Command::Worker(_) => "mailfleet-worker",
        _ => "mailfleet",
    };
    // Flushes spans when dropped, at the end of main.
    let _telemetry = mailfleet_telemetry::init(service, &cli.common.log_format);
    let result = match cli.command {
        Command::Migrate => run::migrate(&cli.common).await,
        Command::Coordinator(args) => run::coordinator(&cli.common, &args).await,
        Command::Worker(args) => run::worker(&cli.common, &args).await,
        Command::Demo(args) => demo::run(&cli.common, &args).await,
        Command::DevSeed(args) => demo::seed(&args).await,
        // Prints its own errors (`error: <code>: <message>`) and picks the exit code.
        Command::Account(args) => {
            let code = account::run(args).await;
            drop(_telemetry);
            std::process::exit(code)
        }
    };
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "Exiting with an error.");
    }
    result
}
