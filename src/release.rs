//! What a tool you install carries besides itself: a version a bug report can use (commit,
//! build date, the librdkafka it links), shell completions and a man page, all generated
//! from the one clap definition in `cli`.

use std::io::Write;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;

pub const GIT_COMMIT: &str = env!("INCIDENT_CONSOLE_GIT_COMMIT");
pub const BUILD_DATE: &str = env!("INCIDENT_CONSOLE_BUILD_DATE");

/// `0.1.0 (commit 0123456789ab, built 2026-12-01)`: `-V`, and the first line of `--version`.
pub fn short_version() -> String {
    format!(
        "{} (commit {GIT_COMMIT}, built {BUILD_DATE})",
        env!("CARGO_PKG_VERSION")
    )
}

/// `--version`: the short version and the librdkafka version linked, read from the library
/// itself (the one loaded, not the one the bindings were written for).
pub fn long_version() -> String {
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    format!("{}\nlibrdkafka {librdkafka}", short_version())
}

/// The clap command with the run-time version texts; completions and the man page use it too.
pub fn command() -> clap::Command {
    Cli::command()
        .version(short_version())
        .long_version(long_version())
}

/// Parses the process's arguments (clap prints help, version and errors and exits).
pub fn parse_cli() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// `completions SHELL`: the completion script on `out`. Generated whole first: clap_complete
/// panics on a write error, and `| head` is a closed pipe, not a crash.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = command();
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name.clone(), &mut script);
    if shell == clap_complete::Shell::Bash {
        script = mend_bash(&String::from_utf8_lossy(&script), &name).into_bytes();
    }
    out.write_all(&script)?;
    out.flush()
}

/// clap_complete 4.6 names a hyphenated binary's subcommand cases `incident__subcmd__console__
/// subcmd__doctor` but looks them up as `incident__console__subcmd__doctor`, so nothing after a
/// subcommand completed (its options, `completions`' shells). The lookup's spelling is the one
/// kept.
fn mend_bash(script: &str, name: &str) -> String {
    let wrong = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", name.replace('-', "__"));
    script.replace(&wrong, &right)
}

/// `man`: the roff man page (section 1) on `out`, its subcommands as sections of the one page.
pub fn write_man(out: &mut dyn Write) -> std::io::Result<()> {
    let mut page = Vec::new();
    render_man(&mut page)?;
    out.write_all(&page)?;
    out.flush()
}

fn render_man(out: &mut dyn Write) -> std::io::Result<()> {
    let command = command();
    let man = clap_mangen::Man::new(command.clone())
        .date(BUILD_DATE)
        .source(format!("incident-console {}", env!("CARGO_PKG_VERSION")));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    // One page that names every subcommand with its own options, so `man incident-console`
    // is enough (no incident-console-doctor.1 to install beside it).
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        writeln!(
            out,
            ".SH \"{}\"",
            format!("incident-console {name}").to_uppercase()
        )?;
        let sub_man = clap_mangen::Man::new(sub.clone().name(format!("incident-console {name}")));
        out.write_all(without_heading(|b| sub_man.render_synopsis_section(b))?.as_bytes())?;
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            writeln!(out, ".PP\n{}", roff_escape(&about.to_string()))?;
        }
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            out.write_all(without_heading(|b| sub_man.render_options_section(b))?.as_bytes())?;
        }
    }
    man.render_version_section(out)?;
    Ok(())
}

fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\\\");
            // A line starting with . or ' would be a roff request.
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A rendered section without its `.SH` heading, so that a subcommand's synopsis and options
/// sit under the subcommand's own heading.
fn without_heading(
    render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<String> {
    let mut buffer = Vec::new();
    render(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer)
        .lines()
        .filter(|line| !line.starts_with(".SH "))
        .map(|line| format!("{line}\n"))
        .collect())
}
