//! Permission for side effects, passed in by whoever decides it.
//!
//! A team worker may page, store offsets and write `<topic>.state` only while it holds the
//! leadership; a standalone console always may. Which of the two applies is decided once, where
//! the process is wired (the team worker hands its lease in), and travels as a value to every
//! component that performs a side effect. A global would let any module ask, and hide from the
//! reader which components are gated.

use std::fmt;
use std::sync::Arc;

/// Whatever grants or refuses side effects at this moment (the team worker's lease).
pub trait Authority: Send + Sync {
    /// Whether a side effect may happen now. `what` names it, for the refusal's log line.
    fn allows(&self, what: &str) -> bool;
}

/// The permission a component checks before each side effect. Cheap to clone.
#[derive(Clone, Default)]
pub struct SideEffects(Option<Arc<dyn Authority>>);

impl SideEffects {
    /// Never refused: standalone, the console, replay, tests in-process.
    pub fn always() -> Self {
        Self(None)
    }

    /// Granted while `authority` allows it.
    pub fn guarded_by(authority: Arc<dyn Authority>) -> Self {
        Self(Some(authority))
    }

    pub fn allowed(&self, what: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|authority| authority.allows(what))
    }

    pub fn is_guarded(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for SideEffects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_guarded() {
            "SideEffects(guarded)"
        } else {
            "SideEffects(always)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Switch(AtomicBool);

    impl Authority for Switch {
        fn allows(&self, _: &str) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn always_allows_and_a_guard_decides_each_time() {
        assert!(SideEffects::always().allowed("anything"));
        let switch = Arc::new(Switch(AtomicBool::new(true)));
        let guarded = SideEffects::guarded_by(switch.clone());
        assert!(guarded.allowed("send"));
        switch.0.store(false, Ordering::Relaxed);
        assert!(!guarded.allowed("send"));
        assert!(!guarded.clone().allowed("send"), "clones share the guard");
    }
}
