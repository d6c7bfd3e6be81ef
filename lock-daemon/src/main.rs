//! `lock-daemon`: parses the command line, builds the service, maps errors to
//! exit codes. The logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lock_daemon::config::{LockType, Settings};
use lock_daemon::notify::Notifier;
use lock_daemon::secure::SecureRequest;
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
    /// Talk to the running daemon through its control socket (control.socket).
    Ctl {
        #[arg(long, global = true, default_value = "/etc/facelock/lock-daemon.toml")]
        config: PathBuf,
        /// The socket to use instead of the configuration's control.socket.
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Tokens for the HTTP API ([http]).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Hash the PIN that MQTT unlocks must carry (mqtt.unlock_code_hash): reads 4 to 8
    /// digits from standard input and prints the line to paste into [mqtt].
    CodeHash,
    /// Write Locked to the relay and exit (systemd's ExecStopPost: covers crashes and SIGKILL).
    ///
    /// Reads only the configuration's [relay] section; errors elsewhere in the file are
    /// reported after locking. Relays given on the command line are locked as well.
    Secure {
        #[arg(long, default_value = "/etc/facelock/lock-daemon.toml")]
        config: PathBuf,
        /// Also lock the relay on this BCM GPIO pin (for when the configuration is unreadable).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=27))]
        bcm_pin: Option<u8>,
        /// With --bcm-pin: the relay board switches on a low input.
        #[arg(long, requires = "bcm_pin")]
        active_low: bool,
        /// With --bcm-pin: "fail-secure" (electric strike, energised to unlock) or
        /// "fail-safe" (magnetic lock, energised to lock).
        #[arg(long, requires = "bcm_pin", default_value = "fail-secure", value_parser = parse_lock_type)]
        lock_type: LockType,
        /// Also lock this simulated relay log.
        #[arg(long)]
        sim_log: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Make a fresh random token: prints the token once (give it to the client; it is
    /// not stored anywhere) and the [[http.token]] lines, with only its hash, to paste into
    /// the configuration. Restart the daemon to use it.
    New {
        /// The token's name, as the audit log shows it (e.g. home-assistant).
        name: String,
        /// What it may do: read (status, events, recognise, metrics), unlock (the door,
        /// for a while), admin (mode, classifier upload, preview; includes the others).
        /// Repeat for several.
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<lock_daemon::http::auth::Scope>,
    },
}

fn parse_scope(text: &str) -> Result<lock_daemon::http::auth::Scope, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
enum CtlAction {
    /// Lock, door, mode, the last decision and who is enrolled.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the mode: normal, lockdown (faces never open; the exit button still does) or
    /// unlocked (door held open). Persisted across restarts.
    Mode { mode: String },
    /// Unlock the door for a while (refused in lockdown), audited under your uid.
    Unlock {
        /// How long, in seconds (at most door.max_manual_unlock_secs).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Lock now: end an unlock (a face, the exit button or `ctl unlock`) early.
    Lock,
    /// Enrol at the door: keep the next good frames of the one face in view as photos of
    /// NAME ([capture] must be enabled). Prints progress and why frames are refused until
    /// the count is reached or time runs out. Never unlocks; audited under your uid.
    /// Ctrl-C stops watching, not the capture: `ctl capture --cancel` stops it.
    Capture {
        /// The person's name: their folder name under images/ on the workstation.
        #[arg(required_unless_present = "cancel")]
        name: Option<String>,
        /// How many frames to keep.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        /// The most seconds to spend (at most capture.max_secs).
        #[arg(long, default_value_t = 60.0, value_parser = parse_seconds)]
        seconds: f64,
        /// Stop the running capture (the frames kept so far stay).
        #[arg(long, conflicts_with = "name")]
        cancel: bool,
    },
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds above 0, e.g. 60"
        )),
    }
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
        Command::Ctl {
            config,
            socket,
            action,
        } => ctl(&config, socket, action),
        Command::Token {
            action: TokenAction::New { name, scopes },
        } => {
            use lock_daemon::http::auth;
            if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                anyhow::bail!("the name must be 1 to 64 characters of plain text");
            }
            let token = auth::new_token();
            let scopes = scopes.into_iter().collect();
            println!("token (shown once; give it to the client, keep it out of URLs and logs):");
            println!("  {token}");
            println!();
            println!("add to the [http] part of the lock's configuration, then restart it:");
            println!();
            print!(
                "{}",
                auth::config_lines(&name, &auth::hash_token(&token), &scopes)
            );
            Ok(())
        }
        Command::CodeHash => {
            use std::io::BufRead as _;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let code = line.trim_end_matches(['\r', '\n']);
            if !(4..=8).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                anyhow::bail!(
                    "the code must be 4 to 8 digits (Home Assistant asks for it with the \
                     format ^\\d{{4,8}}$); nothing was printed"
                );
            }
            let hash = lock_daemon::http::auth::hash_token(code);
            println!("add to the [mqtt] part of the lock's configuration, then restart it:");
            println!();
            println!(
                "unlock_code_hash = \"{}\"",
                lock_daemon::http::auth::hash_text(&hash)
            );
            Ok(())
        }
        Command::Secure {
            config,
            bcm_pin,
            active_low,
            lock_type,
            sim_log,
        } => {
            let outcome = lock_daemon::secure::secure(&SecureRequest {
                config,
                bcm_pin,
                active_low,
                lock_type,
                sim_log,
            });
            for locked in &outcome.locked {
                println!("locked {locked}");
            }
            for warning in &outcome.warnings {
                log::warn!("{warning}");
            }
            match outcome.success() {
                true => Ok(()),
                false => Err(anyhow::anyhow!(
                    "the door may not be locked: {}",
                    outcome.failures.join("; ")
                )),
            }
        }
        Command::Run {
            config,
            exit_when_replay_ends,
        } => {
            let started = std::time::Instant::now();
            let signals = Signals::install()?;
            let notifier = Notifier::from_env().context("cannot reach systemd's notify socket")?;
            let settings = Settings::load(&config)?;
            // Lock first, before anything slow or fallible: the door is locked at start.
            // The claim refuses a second daemon on the same relay.
            let (relay, claim) = lock_daemon::relay::claim(&settings.relay)
                .context("cannot take the relay and lock the door at start")?;
            recognition::set_threads(settings.recognition.threads);
            let recognizer = PipelineRecognizer::load(&settings)?;
            let mut service =
                Service::start(settings, relay, claim, recognizer, notifier, signals)?;
            log::info!("ready {:.2} s after start", started.elapsed().as_secs_f64());
            service.run(RunOptions {
                exit_when_replay_ends,
            })
        }
    }
}

fn parse_lock_type(text: &str) -> Result<LockType, String> {
    match text {
        "fail-secure" => Ok(LockType::FailSecure),
        "fail-safe" => Ok(LockType::FailSafe),
        other => Err(format!(
            "{other:?}: use \"fail-secure\" (electric strike) or \"fail-safe\" (magnetic lock)"
        )),
    }
}

fn ctl(config: &std::path::Path, socket: Option<PathBuf>, action: CtlAction) -> Result<()> {
    use lock_daemon::control::{call, Request};
    let socket = match socket {
        Some(socket) => socket,
        None => {
            Settings::load(config)?
                .control
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} sets no control.socket: enable the control socket there (and \
                         restart the daemon), or pass --socket",
                        config.display()
                    )
                })?
                .socket
        }
    };
    let (request, json) = match action {
        CtlAction::Status { json } => (Request::Status, json),
        CtlAction::Mode { mode } => (Request::Mode { mode }, false),
        CtlAction::Unlock { seconds, reason } => (Request::Unlock { seconds, reason }, false),
        CtlAction::Lock => (Request::Lock, false),
        CtlAction::Capture { cancel: true, .. } => (Request::CaptureCancel, false),
        CtlAction::Capture {
            name,
            count,
            seconds,
            ..
        } => {
            let person = name.unwrap_or_default();
            return watch_capture(
                &socket,
                Request::Capture {
                    person,
                    count,
                    seconds,
                },
            );
        }
    };
    let reply = call(&socket, &request).map_err(anyhow::Error::msg)?;
    if !reply.ok {
        anyhow::bail!("{}", reply.message);
    }
    match (&reply.status, json) {
        (Some(status), true) => println!("{}", serde_json::to_string_pretty(status)?),
        (Some(status), false) => {
            println!("{}", reply.message);
            for key in [
                "lock",
                "door",
                "mode",
                "released_by",
                "held_open_alarm",
                "fire_release",
                "recognition",
                "enrolled",
                "last_decision",
                "camera_ok",
                "uptime_secs",
                "version",
            ] {
                if let Some(value) = status.get(key).filter(|v| !v.is_null()) {
                    let text = match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    println!("  {key:16} {text}");
                }
            }
        }
        (None, _) => println!("{}", reply.message),
    }
    Ok(())
}

/// Starts a capture and prints its progress until it ends: kept frames, and each new
/// reason a frame was refused (at most one a second, so a person can follow it).
fn watch_capture(socket: &std::path::Path, request: lock_daemon::control::Request) -> Result<()> {
    use lock_daemon::capture::{Progress, State};
    use lock_daemon::control::{call, Request};
    let reply = call(socket, &request).map_err(anyhow::Error::msg)?;
    if !reply.ok {
        anyhow::bail!("{}", reply.message);
    }
    println!("{}", reply.message);
    println!("look at the camera; turn your head a little left, right, up and down, slowly");
    let started = std::time::Instant::now();
    let (mut kept, mut said, mut said_at) = (0, String::new(), None::<std::time::Instant>);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let reply = call(socket, &Request::Status).map_err(anyhow::Error::msg)?;
        let progress = reply
            .status
            .as_ref()
            .and_then(|s| s.get("capture"))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the daemon no longer reports the capture"))?;
        let progress: Progress = serde_json::from_value(progress)?;
        if progress.kept != kept {
            kept = progress.kept;
            println!("  kept {}/{}", progress.kept, progress.wanted);
        }
        if let Some(reason) = &progress.last_reject {
            let quiet = said_at.is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0);
            if *reason != said && quiet {
                println!("  refused: {reason}");
                said.clone_from(reason);
                said_at = Some(std::time::Instant::now());
            }
        }
        if progress.state != State::Running {
            println!("{}", progress.summary(started.elapsed()));
            if progress.kept > 0 {
                println!(
                    "the frames are in {} on this machine; copy them to the workstation with \
                     scripts/pull-captures.sh",
                    progress.dir.display()
                );
            }
            return match progress.state {
                State::Done => Ok(()),
                _ => Err(anyhow::anyhow!(
                    "the capture ended {} with {} of {} frames",
                    progress.state.as_str(),
                    progress.kept,
                    progress.wanted
                )),
            };
        }
    }
}
