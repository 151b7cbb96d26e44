use std::process::ExitCode;

use clap::Parser;
use phone_manager::{
    cli::{self, Cli, Command},
    config::Settings,
    db, openapi,
    startup::{Application, shutdown_signal},
    telemetry::{self, LogSink},
};

/// jemalloc: with 10,000 keep-alive connections glibc's malloc held 40 % more memory (see
/// docs/load-test-results.md); jemalloc also hands freed memory back to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        print!("{}", openapi::spec_json());
        return ExitCode::SUCCESS;
    }

    // A .env file is a development convenience; real deployments set the environment.
    let _ = dotenvy::dotenv();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let sink = if matches!(command, Command::Serve) { LogSink::Stdout } else { LogSink::Stderr };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let telemetry = telemetry::init(&settings, sink);
        let outcome = run(command, settings).await;
        // Flush the spans still queued; blocking, so off the async workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => Application::build(settings).await?.run_until_stopped(shutdown_signal()).await,
        Command::Migrate => {
            let pool = db::connect(&settings.database).await?;
            db::migrate(&pool).await?;
            eprintln!("migrations applied ({} known)", db::MIGRATOR.iter().count());
            Ok(())
        }
        Command::Keys(keys) => {
            let pool = db::connect(&settings.database).await?;
            if settings.database.migrate_on_start {
                db::migrate(&pool).await?;
            }
            cli::keys::run(&pool, keys).await
        }
        Command::Openapi => unreachable!("handled before configuration is loaded"),
    }
}
