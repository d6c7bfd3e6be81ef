//! `lock-daemon`: parses the command line, builds the service, maps errors to
//! exit codes. The logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lock_daemon::config::Settings;
use lock_daemon::notify::Notifier;
use lock_daemon::service::{PipelineRecognizer, RunOptions, Service, Signals};

#[derive(Debug, Parser)]
#[command(
    name = "lock-daemon",
    version,
    about = "facelock: opens the door for enrolled faces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (systemd starts this).
    Run {
        #[arg(long, default_value = "/etc/facelock/lock-daemon.toml")]
        config: PathBuf,
        /// Stop once a replay directory has been played and the door is locked (demo, tests).
        #[arg(long)]
        exit_when_replay_ends: bool,
    },
    /// Check everything `run` checks before it touches hardware (settings, models,
    /// classifier trust, camera source, writable directories) and exit; non-zero on any problem.
    CheckConfig {
        #[arg(long, default_value = "/etc/facelock/lock-daemon.toml")]
        config: PathBuf,
    },
    /// Allow the classifier now installed, although older than the one in service, into
    /// service once (audited). The running daemon takes it at its next reload.
    AllowDowngrade {
        #[arg(long, default_value = "/etc/facelock/lock-daemon.toml")]
        config: PathBuf,
    },
    /// Write Locked to the relay and exit (systemd's ExecStopPost: covers crashes and SIGKILL).
    Secure {
        #[arg(long, default_value = "/etc/facelock/lock-daemon.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("lock-daemon: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CheckConfig { config } => {
            use lock_daemon::preflight;
            let report = preflight::check(&config, preflight::Models::Load);
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            for problem in &report.problems {
                eprintln!("problem: {problem}");
            }
            match report.problems.len() {
                0 => {
                    println!("{}: OK", config.display());
                    Ok(())
                }
                n => Err(anyhow::anyhow!(
                    "{}: {n} problem(s) that would stop `lock-daemon run`",
                    config.display()
                )),
            }
        }
        Command::AllowDowngrade { config } => {
            let settings = Settings::load(&config)?;
            println!("{}", lock_daemon::rollback::allow_downgrade(&settings)?);
            Ok(())
        }
        Command::Secure { config } => {
            let settings = Settings::load(&config)?;
            lock_daemon::relay::secure(&settings.relay).context("cannot lock the door")?;
            println!("door locked");
            Ok(())
        }
        Command::Run {
            config,
            exit_when_replay_ends,
        } => {
            let started = std::time::Instant::now();
            let signals = Signals::install()?;
            let notifier = Notifier::from_env().context("cannot reach systemd's notify socket")?;
            // Lock first, before anything slow or fallible: the door is locked at start.
            let settings = Settings::load(&config)?;
            if let Err(e) = lock_daemon::relay::secure(&settings.relay) {
                return Err(e).context("cannot lock the door at start");
            }
            recognition::set_threads(settings.recognition.threads);
            let recognizer = PipelineRecognizer::load(&settings)?;
            let mut service = Service::start(settings, recognizer, notifier, signals)?;
            log::info!("ready {:.2} s after start", started.elapsed().as_secs_f64());
            service.run(RunOptions {
                exit_when_replay_ends,
            })
        }
    }
}
