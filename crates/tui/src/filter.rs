//! The feed filter typed after `/`: words separated by spaces, all of which must match. A word
//! that names a priority (`critical`) or an event type (`status_updated`) matches exactly that;
//! `dlq` matches rejected payloads; any other word is looked for, ignoring case, in the title,
//! the summary, the incident id and the error. A filter with an operator or a call is a
//! field query instead (src/tui/query.rs): `priority == "critical" && category == "database"`.

use crate::core::engine::FeedEntry;
use crate::core::event::{EventType, Priority};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Priority(Priority),
    Type(EventType),
    DeadLetter,
    Text(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    terms: Vec<Term>,
    /// A field query, or why the text is not one (then nothing matches).
    query: Option<Result<std::sync::Arc<super::query::Query>, String>>,
}

impl FeedFilter {
    pub fn parse(text: &str) -> Self {
        if super::query::looks_like_query(text) {
            return Self {
                terms: Vec::new(),
                query: Some(super::query::Query::compile(text.trim()).map(std::sync::Arc::new)),
            };
        }
        let terms = text
            .split_whitespace()
            .map(|word| {
                let word = word.to_lowercase();
                if let Some(priority) = Priority::ALL.into_iter().find(|p| p.as_str() == word) {
                    Term::Priority(priority)
                } else if let Some(event_type) = EventType::parse(&word) {
                    Term::Type(event_type)
                } else if matches!(word.as_str(), "dlq" | "rejected" | "dead_letter") {
                    Term::DeadLetter
                } else {
                    Term::Text(word)
                }
            })
            .collect();
        Self { terms, query: None }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty() && self.query.is_none()
    }

    /// Why the filter, a query, cannot be read.
    pub fn error(&self) -> Option<&str> {
        match &self.query {
            Some(Err(error)) => Some(error),
            _ => None,
        }
    }

    pub fn matches(&self, entry: &FeedEntry) -> bool {
        match &self.query {
            Some(Ok(query)) => return query.matches(entry),
            Some(Err(_)) => return false,
            None => {}
        }
        self.terms.iter().all(|term| match term {
            Term::Priority(p) => entry.priority == Some(*p),
            Term::Type(t) => entry.event_type == Some(*t),
            Term::DeadLetter => entry.event_type.is_none(),
            Term::Text(word) => {
                let id = word.trim_start_matches('#');
                contains_ignoring_case(&entry.title, word)
                    || contains_ignoring_case(&entry.summary, word)
                    || entry
                        .error
                        .as_deref()
                        .is_some_and(|e| contains_ignoring_case(e, word))
                    || (!id.is_empty()
                        && entry
                            .incident_id
                            .is_some_and(|i| i.to_string().contains(id)))
                    || entry
                        .event_type
                        .is_some_and(|t| t.as_str().contains(word.as_str()))
            }
        })
    }
}

/// `needle` is already lower case.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        haystack
            .as_bytes()
            .windows(needle.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use chrono::TimeZone;

    fn entry(
        event_type: Option<EventType>,
        priority: Option<Priority>,
        title: &str,
        id: Option<i64>,
    ) -> FeedEntry {
        FeedEntry {
            seq: 1,
            received_at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            event_type,
            incident_id: id,
            priority,
            title: title.into(),
            summary: "open → in_progress".into(),
            source: None,
            error: event_type.is_none().then(|| "not valid JSON".into()),
            raw: Arc::from(""),
        }
    }

    #[test]
    fn words_select_priority_type_dead_letters_or_text() {
        let critical = entry(
            Some(EventType::IncidentCreated),
            Some(Priority::Critical),
            "Server Down",
            Some(1234),
        );
        let status = entry(
            Some(EventType::StatusUpdated),
            Some(Priority::Low),
            "Disk full",
            Some(77),
        );
        let rejected = entry(None, None, "", None);
        let table = [
            ("", [true, true, true]),
            ("critical", [true, false, false]),
            ("CRITICAL", [true, false, false]),
            ("status_updated", [false, true, false]),
            ("dlq", [false, false, true]),
            ("server", [true, false, false]),
            ("#1234", [true, false, false]),
            ("77", [false, true, false]),
            ("in_progress", [true, true, true]),
            ("json", [false, false, true]),
            ("low disk", [false, true, false]),
            ("low server", [false, false, false]),
            ("created", [true, false, false]),
        ];
        for (text, expected) in table {
            let filter = FeedFilter::parse(text);
            let got = [&critical, &status, &rejected].map(|e| filter.matches(e));
            assert_eq!(got, expected, "filter {text:?}");
        }
    }

    #[test]
    fn case_insensitive_search_handles_unicode_and_short_text() {
        assert!(contains_ignoring_case("Ünïcode Title", "ünï"));
        assert!(!contains_ignoring_case("ab", "abc"));
        assert!(contains_ignoring_case("ABC", "b"));
    }
}
