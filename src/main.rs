use clap::Parser;

use incident_console::app;
use incident_console::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("incident-console: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("incident-console: {error:#}");
            // A broken stdout has its own documented status (README, headless output).
            match error.downcast_ref::<incident_console::headless::OutputFailed>() {
                Some(failed) => std::process::ExitCode::from(failed.exit_code()),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
