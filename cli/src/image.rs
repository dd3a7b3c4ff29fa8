//! `podnet image pull|ls|rm|import`: the node agent owns the image store;
//! these ask it over the control socket. A pull streams progress, shown per
//! layer on stderr when it is a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use runtime::api::{Client, Request, Response};
use runtime::image::{ImageInfo, PullEvent, Reference, human_size};

use crate::args::{ImageCommand, Output};
use crate::error::CliError;
use crate::{call, table, unexpected};

pub(crate) async fn run(socket: &Path, command: ImageCommand) -> Result<ExitCode, CliError> {
    match command {
        ImageCommand::Pull { reference, platform } => pull(socket, reference, platform).await,
        ImageCommand::Ls { output } => {
            let Response::Images(images) = call(socket, Request::ImageList).await? else {
                return unexpected();
            };
            match output {
                Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&images)?),
                Some(Output::Yaml) => print!("{}", serde_yaml_ng::to_string(&images)?),
                _ => print!("{}", list(&images)),
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Rm { reference } => {
            let Response::ImageRemoved { blobs, bytes } =
                call(socket, Request::ImageRemove { reference: reference.clone() }).await?
            else {
                return unexpected();
            };
            let name = Reference::parse(&reference).map(|r| r.to_string()).unwrap_or(reference);
            println!("Deleted: {name} ({blobs} blobs, {} freed)", human_size(bytes));
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Import { file } => {
            // The agent opens the file: give it a path that does not depend on our cwd.
            let path = std::fs::canonicalize(&file)
                .map_err(|e| format!("cannot import {}: {e}: check the path", file.display()))?;
            let Response::Images(images) = call(socket, Request::ImageImport { path }).await? else {
                return unexpected();
            };
            for image in images {
                println!(
                    "imported {} ({}, {}, {})",
                    image.reference,
                    short(&image.digest),
                    image.platform,
                    human_size(image.size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn pull(socket: &Path, reference: String, platform: Option<String>) -> Result<ExitCode, CliError> {
    let mut client = Client::connect(socket).await?;
    client.start(&Request::ImagePull { reference, platform }).await?;
    let tty = std::io::stderr().is_terminal();
    let mut shown: Option<String> = None;
    let mut err = std::io::stderr();
    loop {
        let next = tokio::select! {
            next = client.next() => next?,
            _ = tokio::signal::ctrl_c() => return Err("pull interrupted (the agent finishes it for anyone else waiting)".into()),
        };
        match next {
            Some(Response::ImagePull(PullEvent::Layer { digest, done, total })) if tty => {
                let id = short(&digest);
                if shown.as_deref().is_some_and(|s| s != id) {
                    let _ = writeln!(err);
                }
                let _ = write!(err, "\r{id}: {} / {}", human_size(done), human_size(total));
                shown = Some(id);
            }
            Some(Response::ImagePull(PullEvent::Layer { .. })) => {}
            Some(Response::ImagePull(PullEvent::Done(info))) => {
                if shown.is_some() {
                    let _ = writeln!(err);
                }
                println!(
                    "pulled {} ({}, {}, {})",
                    info.reference,
                    info.digest,
                    info.platform,
                    human_size(info.size)
                );
                return Ok(ExitCode::SUCCESS);
            }
            Some(Response::ImagePull(PullEvent::Failed(reason))) => {
                if shown.is_some() {
                    let _ = writeln!(err);
                }
                return Err(reason.into());
            }
            Some(_) => return unexpected(),
            None => return Err("the agent ended the pull without an answer: see its log".into()),
        }
    }
}

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> String {
    digest.strip_prefix("sha256:").unwrap_or(digest).chars().take(12).collect()
}

/// `image ls`, as crictl images: REPOSITORY TAG DIGEST SIZE.
fn list(images: &[ImageInfo]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|image| {
            let (repository, tag) = match Reference::parse(&image.reference) {
                Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".into())),
                Err(_) => (image.reference.clone(), "<none>".into()),
            };
            vec![repository, tag, short(&image.digest), human_size(image.size)]
        })
        .collect();
    table::render(&["REPOSITORY", "TAG", "DIGEST", "SIZE"], &rows)
}
