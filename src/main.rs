use std::io::Write;

use incident_console::app;

/// A drain is allocation-bound (every event is decoded into owned strings and written as a
/// line, across threads): glibc's malloc took about a quarter of the CPU of a backlog's drain
/// in a profile (docs/performance.md), mimalloc's per-thread pages much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A file-size limit (`ulimit -f`) then fails the journal's write with EFBIG, which is
    // reported and held like a full disk, instead of SIGXFSZ killing the process with nothing
    // committed.
    // SAFETY: setting a signal to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = incident_console::release::parse_cli();
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
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(app::run(cli))
    }));
    // What is still running has nothing left to do for this run (a metadata request of the
    // topic check, say, waiting out its 10 s timeout): it must not hold the exit. A panic
    // too comes here (the hook has printed it): dropping the runtime while unwinding would
    // wait for its blocking threads without a bound.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let Ok(result) = result else {
        return std::process::ExitCode::from(101);
    };
    match result {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Not `eprintln!`, which panics when stderr is a terminal that went away.
            let _ = writeln!(std::io::stderr(), "incident-console: {error:#}");
            // A broken stdout and a journal that refused writes have their own documented
            // statuses (README, headless output).
            if let Some(failed) = error.downcast_ref::<incident_console::headless::OutputFailed>() {
                std::process::ExitCode::from(failed.exit_code())
            } else if error
                .downcast_ref::<incident_console::journal::JournalFailed>()
                .is_some()
            {
                std::process::ExitCode::from(incident_console::journal::JournalFailed::EXIT_CODE)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
