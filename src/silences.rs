//! `incident-console silences [--json]` and `incident-console silences end ID`.
//!
//! Where the silences are depends on the role. Standalone, an operator's silences live in
//! the running console's engine and in its journal (which brings them back at a start); in
//! team mode they live in the active worker's engine and on `<topic>.state`, which every
//! console reads.
//!
//! Ending one from the command line:
//! - **team mode** (`--role console|worker` or `team.role`, with `-b`/`-t`): an `end_silence`
//!   record on `<topic>.commands`, exactly what `x` at a team console sends; the active worker
//!   applies it (now, or the next one to become active), every console shows the silence
//!   gone, and the record is deleted from `<topic>.state`.
//! - **standalone**: a standalone console reads no commands from outside itself (no command
//!   topic, no socket), and its journal is its own: while it runs it holds the journal's lock
//!   and its engine holds the silence. Writing the end into the journal behind its back would
//!   leave it holding the silence anyway, and say otherwise at the next start. So with a
//!   console running this refuses and says to press `x` there; with none, the end is
//!   journaled and the next start does not bring the silence back.

use crate::config::Config;
use crate::core::silence::Silence;
use crate::team::Role;

/// The silences to list: the planned windows of the configuration, and the operators' ones
/// from the journal (standalone) or from `<topic>.state` (team mode).
pub async fn current(config: &Config) -> anyhow::Result<Vec<Silence>> {
    let now = chrono::Utc::now();
    let mut silences = config.oncall.windows().unwrap_or_default();
    if config.team.role != Role::Standalone {
        let config = config.clone();
        let restored =
            tokio::task::spawn_blocking(move || crate::team::restore::read_state(&config))
                .await??;
        silences.extend(restored.silences);
    } else if config.journal.enabled {
        let path = config.journal.resolved_path()?;
        // No journal yet: nobody has set a silence.
        if path.exists() {
            silences.extend(crate::journal::JournalReader::open(&path)?.open_silences(now)?);
        }
    }
    Ok(silences)
}

/// Ends the silence `id`; returns what to tell the user.
pub async fn end(config: &Config, id: &str) -> anyhow::Result<String> {
    if config
        .oncall
        .windows()
        .unwrap_or_default()
        .iter()
        .any(|window| window.id == id)
        && config.team.role == Role::Standalone
    {
        anyhow::bail!(
            "{id} is a planned window of the configuration (oncall.maintenance): it comes back \
             at every start; change the configuration, or end it for this run with `x` in the \
             console"
        );
    }
    match config.team.role {
        Role::Standalone => end_in_journal(config, id),
        Role::Console | Role::Worker => send_end(config, id).await,
    }
}

fn end_in_journal(config: &Config, id: &str) -> anyhow::Result<String> {
    use crate::journal::{Journal, JournalError, JournalRecord, OnCallRecord};
    if !config.journal.enabled {
        anyhow::bail!(
            "no journal (--no-journal): a console's silences live only in that console; end \
             it there with `x`"
        );
    }
    let path = config.journal.resolved_path()?;
    if !path.exists() {
        anyhow::bail!(
            "no silence {id}: there is no journal at {} yet",
            path.display()
        );
    }
    let mut journal = match Journal::open_configured(&config.journal) {
        Ok(journal) => journal,
        Err(JournalError::Locked { pid, .. }) => anyhow::bail!(
            "a console{} is running on the journal {}: end the silence there (select its \
             escalation and press x), or stop that console first. A standalone console takes \
             no commands from outside; in team mode (--role console -b HOST:PORT -t TOPIC) \
             this command asks the active worker",
            pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
            path.display()
        ),
        Err(error) => return Err(error.into()),
    };
    let now = chrono::Utc::now();
    if !journal.open_silences(now)?.iter().any(|s| s.id == id) {
        anyhow::bail!(
            "no running silence {id} in the journal {} (`incident-console silences` lists them)",
            path.display()
        );
    }
    journal.write(&[JournalRecord::OnCall(OnCallRecord::SilenceEnded {
        id: id.to_string(),
        by: Some(config.operator()),
        at: now,
    })])?;
    Ok(format!(
        "silence {id} ended in the journal {}; the next start does not bring it back",
        path.display()
    ))
}

async fn send_end(config: &Config, id: &str) -> anyhow::Result<String> {
    use crate::team::commands::{Asker, EndSilenceCommand, TeamCommand, commands_topic};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    // Said here rather than only in the active worker's log: the silences the team holds are
    // the planned windows and what `<topic>.state` has.
    if !current(config)
        .await?
        .iter()
        .any(|silence| silence.id == id)
    {
        anyhow::bail!(
            "no silence {id} on {} nor in the configuration (`incident-console silences` lists \
             them)",
            crate::team::state::state_topic(&config.kafka.topic)
        );
    }
    let command = TeamCommand::EndSilence(EndSilenceCommand {
        silence_id: id.to_string(),
        asker: Asker {
            by: config.operator(),
            at: chrono::Utc::now().to_rfc3339(),
            console: format!("cli-{}", std::process::id()),
            // Not read: an operator's command counts whatever the epoch.
            epoch: 0,
        },
    });
    let topic = commands_topic(&config.kafka.topic);
    let producer: FutureProducer = crate::kafka::consumer::client_config(config, false).create()?;
    let (key, payload) = (command.key(), command.encode());
    let record = FutureRecord::to(&topic).key(&key).payload(&payload);
    match producer
        .send(record, std::time::Duration::from_secs(10))
        .await
    {
        Ok(delivered) => Ok(format!(
            "end of silence {id} sent on {topic} (offset {}): the active worker applies it, \
             and `incident-console silences` no longer lists it once it has",
            delivered.offset
        )),
        Err((error, _)) => anyhow::bail!("end of silence {id} not sent on {topic}: {error}"),
    }
}
