//! The `unleash-remediation-service` binary: parses the command line and calls the library.

use std::io::Read;
use std::process::ExitCode;
use unleash_remediation_service::config::{Cli, Command, LogFormat};
use unleash_remediation_service::{commands, service, telemetry};

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Validate { files } => {
            let mut out = std::io::stdout();
            if commands::validate(&files, &mut out) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Resolve {
            remediation,
            problem_title,
            root_cause,
            index,
        } => match commands::resolve(&remediation, &problem_title, root_cause.as_deref(), index) {
            Ok(action) => {
                let text = serde_json::to_string_pretty(&action).expect("JSON value prints");
                print_quietly(&text)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Send { file, nats } => {
            telemetry::init_logging(LogFormat::Text);
            let body = if file == "-" {
                let mut s = Vec::new();
                std::io::stdin().read_to_end(&mut s).map(|_| s)
            } else {
                std::fs::read(&file)
            };
            let body = match body {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: cannot read {file}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rt = runtime();
            match rt.block_on(commands_send(&nats, body)) {
                Ok(line) => print_quietly(&line),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck {
            http_addr,
            path,
            timeout,
        } => match commands::healthcheck(&http_addr, &path, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            telemetry::init_logging(args.log_format);
            let rt = runtime();
            let run = async {
                let service = service::Service::build(*args).await?;
                service.run_until_stopped(service::shutdown_signal()).await
            };
            match rt.block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once, through the log (stderr), in the chosen format.
                    tracing::error!(error = %format!("{e:#}"), "service failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints a line to stdout; a reader that went away (`… | head`) ends the command quietly.
fn print_quietly(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// `send`: checks that the file is a CloudEvent and publishes it unchanged on subject = type.
async fn commands_send(
    nats: &unleash_remediation_service::config::NatsArgs,
    body: Vec<u8>,
) -> anyhow::Result<String> {
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("the file is not JSON: {e}"))?;
    let event = unleash_remediation_service::keptn::decode::to_cloudevent(value)
        .map_err(|e| anyhow::anyhow!("the file is not a CloudEvent: {}", e.message))?;
    use cloudevents::AttributesReader;
    let subject = event.ty().to_owned();
    let client = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        async_nats::connect_with_options(
            service::nats::servers(nats)?,
            service::nats::connect_options(nats).await?,
        ),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "NATS at {} did not answer within 10 s",
            service::nats::redact_url(&nats.url())
        )
    })??;
    client.publish(subject.clone(), body.into()).await?;
    client.flush().await?;
    Ok(format!(
        "sent {subject} (id {}) to {}",
        event.id(),
        service::nats::redact_url(&nats.url())
    ))
}
