//! Entering and leaving the full-screen terminal. Whatever happens (a normal exit, an error, a
//! panic on any thread) the terminal is given back in its normal state: raw mode off, cursor
//! shown, alternate screen left.

use std::io::{self, Stdout, Write};
use std::mem::ManuallyDrop;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// True while the console owns the terminal.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

pub type ConsoleTerminal = Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal while the console runs; restores it when dropped.
pub struct TerminalGuard {
    /// Dropped by hand: see `Drop`.
    pub terminal: ManuallyDrop<ConsoleTerminal>,
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        // ratatui's own drop shows the cursor and, when that fails, says so with `eprintln!`,
        // which panics when stderr is the terminal that went away (a killed tmux server, a
        // dropped ssh link): the panic then unwound through the runtime while its last commit
        // was still running, and the process stayed behind. A terminal that cannot show the
        // cursor is gone, so there is nothing for that drop to do: it is skipped.
        if self.terminal.show_cursor().is_ok() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.terminal) };
        }
    }
}

pub fn enter() -> io::Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let setup = (|| {
        let mut stdout = io::stdout();
        // Cleared with a plain escape sequence: ratatui's `clear` asks the terminal for the
        // cursor position, which some terminals (and terminal emulators in tests) never answer.
        // Bracketed paste: a paste arrives as one event, not as a burst of keys (crossterm
        // leaves input beyond 1,024 bytes unread until the next key when it is keys).
        execute!(
            stdout,
            EnterAlternateScreen,
            EnableBracketedPaste,
            // The wheel and clicks (src/tui/mouse.rs); shift-drag still selects text in
            // most terminals.
            EnableMouseCapture,
            Hide,
            Clear(ClearType::All)
        )?;
        Terminal::new(CrosstermBackend::new(stdout))
    })();
    match setup {
        Ok(terminal) => Ok(TerminalGuard {
            terminal: ManuallyDrop::new(terminal),
        }),
        Err(error) => {
            restore();
            Err(error)
        }
    }
}

/// Gives the terminal back. Safe to call more than once and from any thread; returns whether
/// there was anything to restore.
pub fn restore() -> bool {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return false;
    }
    let _ = disable_raw_mode();
    let mut stdout = io::stdout();
    let _ = execute!(
        stdout,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        Show
    );
    let _ = stdout.flush();
    true
}

/// A panic anywhere while the console is up restores the terminal, prints the panic on the
/// normal screen, and ends the process: a UI whose worker died must not sit frozen in raw mode.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let was_active = restore();
            previous(info);
            if was_active {
                // Not `eprintln!`: a second panic here, with stderr gone, would abort.
                let _ = writeln!(
                    io::stderr(),
                    "incident-console: the console stopped because of the panic above"
                );
                std::process::exit(101);
            }
        }));
    });
}
