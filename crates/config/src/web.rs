//! `web:` in config.ron: where the live web view listens, its limits, and who may acknowledge
//! from it.

use serde::{Deserialize, Serialize};

/// Tokens shorter than this are refused: a token is the whole of an operator's credential.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// `HOST:PORT` of the page and its WebSocket; `None` (the default) turns it off.
    pub addr: Option<String>,
    /// Pages watching at once; one more is refused with 503 until one leaves.
    pub max_clients: usize,
    /// Updates sent to each page per second at most; each carries the latest state whole.
    pub updates_per_sec: u32,
    /// Newest feed entries sent to the page (the console keeps `console.feed_capacity`).
    pub feed_rows: usize,
    /// Who may acknowledge from the page, each with a bearer token. Empty (the default):
    /// the page is read-only.
    pub operators: Vec<WebOperator>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebOperator {
    /// Recorded with the acknowledgements this operator makes from the page.
    pub name: String,
    pub token: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            addr: None,
            max_clients: 32,
            updates_per_sec: 4,
            feed_rows: 200,
            operators: Vec::new(),
        }
    }
}

impl WebConfig {
    /// Returns the offending field (relative to `web.`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(addr) = &self.addr {
            super::monitoring::check_listen_addr(addr).map_err(|m| ("addr".to_string(), m))?;
        }
        if !(1..=1000).contains(&self.max_clients) {
            return Err(("max_clients".into(), "must be between 1 and 1000".into()));
        }
        if !(1..=30).contains(&self.updates_per_sec) {
            return Err(("updates_per_sec".into(), "must be between 1 and 30".into()));
        }
        if !(1..=1000).contains(&self.feed_rows) {
            return Err(("feed_rows".into(), "must be between 1 and 1000".into()));
        }
        // The field named is `operators` (where its line is found); the message says which.
        for (index, operator) in self.operators.iter().enumerate() {
            let which = format!("operator {} (`{}`)", index + 1, operator.name);
            if operator.name.trim().is_empty() {
                return Err((
                    "operators".into(),
                    format!("operator {}: the name must not be empty", index + 1),
                ));
            }
            if operator.token.chars().count() < MIN_TOKEN_CHARS {
                return Err((
                    "operators".into(),
                    format!("{which}: the token must be at least {MIN_TOKEN_CHARS} characters"),
                ));
            }
            if self.operators[..index]
                .iter()
                .any(|other| other.token == operator.token)
            {
                return Err((
                    "operators".into(),
                    format!("{which}: the token is the same as another operator's"),
                ));
            }
        }
        Ok(())
    }

    pub fn redact(&mut self) {
        for operator in &mut self.operators {
            operator.token = crate::REDACTED.into();
        }
    }

    /// The operator a presented token belongs to. Every configured token is compared in full
    /// (no early exit), so the time taken does not tell how much of a guess was right.
    pub fn operator_for(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for operator in &self.operators {
            if constant_time_eq(operator.token.as_bytes(), presented.as_bytes()) {
                found = Some(operator.name.as_str());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_operator(token: &str) -> WebConfig {
        WebConfig {
            operators: vec![WebOperator {
                name: "alice".into(),
                token: token.into(),
            }],
            ..WebConfig::default()
        }
    }

    #[test]
    fn tokens_find_their_operator_and_nothing_else() {
        let config = with_operator("0123456789abcdef");
        assert_eq!(config.operator_for("0123456789abcdef"), Some("alice"));
        assert_eq!(config.operator_for("0123456789abcdeF"), None);
        assert_eq!(config.operator_for("0123456789abcde"), None);
        assert_eq!(config.operator_for(""), None);
        assert_eq!(WebConfig::default().operator_for(""), None);
    }

    #[test]
    fn short_duplicate_or_nameless_operators_are_refused() {
        assert!(with_operator("0123456789abcdef").validate().is_ok());
        let (field, message) = with_operator("short").validate().unwrap_err();
        assert_eq!(field, "operators");
        assert!(
            message.starts_with("operator 1 (`alice`): the token"),
            "{message}"
        );
        let mut twice = with_operator("0123456789abcdef");
        twice.operators.push(WebOperator {
            name: "bob".into(),
            token: "0123456789abcdef".into(),
        });
        let (_, message) = twice.validate().unwrap_err();
        assert!(message.starts_with("operator 2 (`bob`)"), "{message}");
        let mut nameless = with_operator("0123456789abcdef");
        nameless.operators[0].name = " ".into();
        let (_, message) = nameless.validate().unwrap_err();
        assert!(message.contains("name must not be empty"), "{message}");
        let zero = WebConfig {
            max_clients: 0,
            ..WebConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().0, "max_clients");
    }

    #[test]
    fn a_short_token_names_the_file_and_line_and_omitted_settings_keep_their_defaults() {
        use crate::{Config, DEFAULT_CONFIG};
        let text = DEFAULT_CONFIG.replacen(
            "        operators: [],",
            "        operators: [(name: \"alice\", token: \"short\")],",
            1,
        );
        let line = text.lines().position(|l| l.contains("\"short\"")).unwrap() + 1;
        let error = Config::parse(&text, "web.ron").unwrap_err().to_string();
        assert!(error.starts_with(&format!("web.ron:{line}:")), "{error}");
        assert!(
            error.contains("web.operators") && error.contains("alice"),
            "{error}"
        );
        let only_addr = "(web: (addr: Some(\"127.0.0.1:8080\")))";
        let config = Config::parse(only_addr, "addr.ron").unwrap();
        assert_eq!(config.web.addr.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(config.web.max_clients, WebConfig::default().max_clients);
        assert!(config.web.operators.is_empty());
    }

    #[test]
    fn redaction_hides_every_token() {
        let mut config = with_operator("0123456789abcdef");
        config.redact();
        assert_eq!(config.operators[0].token, crate::REDACTED);
        assert_eq!(config.operators[0].name, "alice");
    }
}
