//! Message templates: `{{ name }}` placeholders, nothing else (`\{{` writes a literal `{{`).
//! One file per channel and notification kind under `assets/templates/`; the shipped ones are
//! compiled in, and a directory given in the configuration overrides them file by file. Every
//! template is checked at start-up against the variables its kind provides, so a typo fails
//! the start, not a page at 3 a.m.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use incident_core::engine::{Audience, Notification, NotificationKind};

use super::config::{Channel, KINDS};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}:{line}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub line: usize,
    pub message: String,
}

impl Template {
    /// Parses `text`; `name` (a file name) and the line only serve error messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, TemplateError> {
        let error = |offset: usize, message: String| TemplateError {
            name: name.to_string(),
            line: text[..offset].matches('\n').count() + 1,
            message,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let offset = text.len() - rest.len() + start;
            if rest[..start].ends_with('\\') {
                literal.push_str(&rest[..start - 1]);
                literal.push_str("{{");
                rest = &rest[start + 2..];
                continue;
            }
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(error(offset, "`{{` is never closed with `}}`".into()));
            };
            let name = after[..end].trim();
            if name.is_empty() {
                return Err(error(offset, "empty placeholder `{{}}`".into()));
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(error(
                    offset,
                    format!("`{{{{{name}}}}}`: a placeholder is a plain name like `{{{{title}}}}`"),
                ));
            }
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the placeholders; each value passes through `escape` (template text does not).
    /// A variable without a value renders empty: `TemplateSet::load` has already refused
    /// templates naming variables their kind does not have.
    pub fn render(&self, values: &Values, escape: fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Variable(name) => {
                    if let Some(value) = values.get(name) {
                        out.push_str(&escape(value));
                    }
                }
            }
        }
        out
    }
}

/// Variable name -> value for one rendering.
pub type Values = BTreeMap<String, String>;

/// Variables every template may use, whatever its kind.
pub const COMMON_VARIABLES: [&str; 6] = [
    "incident_id",
    "title",
    "priority",
    "kind",
    "audience",
    "recipient",
];

/// The fields the engine provides for each kind (see `core::engine`), with sample values.
pub fn kind_fields(kind: NotificationKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        NotificationKind::IncidentCreated => &[
            ("status", "open"),
            ("category", "database"),
            ("reported_by", "monitoring"),
            ("assignee", "alice"),
            ("created_at", "2026-01-01T00:00:00+00:00"),
        ],
        NotificationKind::StatusChanged => &[
            ("old_status", "open"),
            ("new_status", "in_progress"),
            ("assignee", "alice"),
            ("updated_at", "2026-01-01T00:00:00+00:00"),
        ],
        NotificationKind::AssignmentChanged => &[
            ("old_assignee", "unassigned"),
            ("new_assignee", "alice"),
            ("changed_by", "bob"),
            ("updated_at", "2026-01-01T00:00:00+00:00"),
        ],
        NotificationKind::Escalation => &[
            ("level", "1"),
            ("level_name", "on-call"),
            ("repeat", "0"),
            ("reason", "new incident"),
            ("opened_at", "2026-01-01T00:00:00+00:00"),
        ],
        NotificationKind::EscalationAcknowledged => &[
            ("level", "1"),
            ("by", "alice"),
            ("acknowledged_at", "2026-01-01T00:00:00+00:00"),
            ("time_to_acknowledge", "2m 03s"),
        ],
        NotificationKind::Resolved => &[
            ("new_status", "resolved"),
            ("assignee", "alice"),
            ("time_to_resolve", "1h 02m"),
            ("updated_at", "2026-01-01T00:00:00+00:00"),
        ],
        NotificationKind::SelfAlert => &[
            ("alert", "broker_unreachable"),
            ("state", "firing"),
            ("detail", "Kafka unreachable for 60 s: 1/1 brokers are down"),
            ("since", "2026-01-01T00:00:00+00:00"),
            ("duration", "4m 10s"),
            ("console", "incident-console"),
        ],
    }
}

pub fn audience_label(audience: &Audience) -> String {
    match audience {
        Audience::Administrators => "administrators".into(),
        Audience::User { name } => name.clone(),
        Audience::EscalationLevel { level } => format!("escalation level {level}"),
    }
}

/// The values a notification offers its templates, raw (escaping is the renderer's job).
pub fn values_of(notification: &Notification, recipient: &str) -> Values {
    let mut values: Values = notification
        .fields
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    values.insert("incident_id".into(), notification.incident_id.to_string());
    values.insert("title".into(), notification.title.clone());
    values.insert(
        "priority".into(),
        notification
            .priority
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "unknown".into()),
    );
    values.insert("kind".into(), notification.kind.as_str().into());
    values.insert("audience".into(), audience_label(&notification.audience));
    values.insert("recipient".into(), recipient.to_string());
    values
}

fn sample_values(kind: NotificationKind) -> Values {
    let mut values: Values = kind_fields(kind)
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    for name in COMMON_VARIABLES {
        values.insert(name.into(), format!("sample {name}"));
    }
    values
}

/// Which message a template produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TemplateSlot {
    /// `email/<kind>.txt`: a `Subject:` line, a blank line, then the body.
    Email,
    /// `slack/<kind>.txt`: the message text (Slack mrkdwn).
    Slack,
    /// `webhook/<kind>.txt`: the `message` field of the JSON body.
    Webhook,
    /// `pagerduty/<kind>.txt`: the alert summary (only triggers have one).
    PagerDuty,
    /// `sms/<kind>.txt`: one line, cut to `SMS_MAX_CHARS` (one SMS segment).
    Sms,
}

/// An SMS longer than this is split into several billed segments (GSM-7): texts are cut.
pub const SMS_MAX_CHARS: usize = 160;

impl TemplateSlot {
    pub fn of(channel: Channel) -> Self {
        match channel {
            Channel::Email => Self::Email,
            Channel::Slack => Self::Slack,
            Channel::PagerDuty => Self::PagerDuty,
            Channel::Webhook => Self::Webhook,
            Channel::Sms => Self::Sms,
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Slack => "slack",
            Self::Webhook => "webhook",
            Self::PagerDuty => "pagerduty",
            Self::Sms => "sms",
        }
    }

    fn kinds(self) -> &'static [NotificationKind] {
        match self {
            Self::PagerDuty => &[NotificationKind::Escalation, NotificationKind::SelfAlert],
            _ => &KINDS,
        }
    }
}

macro_rules! shipped {
    ($($dir:literal / $kind:literal),* $(,)?) => {
        &[$(
            (concat!($dir, "/", $kind, ".txt"),
             include_str!(concat!("../../../assets/templates/", $dir, "/", $kind, ".txt"))),
        )*]
    };
}

/// The templates compiled into the binary: relative path -> text.
pub const SHIPPED: &[(&str, &str)] = shipped![
    "email" / "incident_created",
    "email" / "status_changed",
    "email" / "assignment_changed",
    "email" / "escalation",
    "email" / "escalation_acknowledged",
    "email" / "resolved",
    "email" / "self_alert",
    "slack" / "incident_created",
    "slack" / "status_changed",
    "slack" / "assignment_changed",
    "slack" / "escalation",
    "slack" / "escalation_acknowledged",
    "slack" / "resolved",
    "slack" / "self_alert",
    "webhook" / "incident_created",
    "webhook" / "status_changed",
    "webhook" / "assignment_changed",
    "webhook" / "escalation",
    "webhook" / "escalation_acknowledged",
    "webhook" / "resolved",
    "webhook" / "self_alert",
    "pagerduty" / "escalation",
    "pagerduty" / "self_alert",
    "sms" / "incident_created",
    "sms" / "status_changed",
    "sms" / "assignment_changed",
    "sms" / "escalation",
    "sms" / "escalation_acknowledged",
    "sms" / "resolved",
    "sms" / "self_alert",
];

/// An email template: subject and body.
#[derive(Debug, Clone)]
pub struct EmailTemplate {
    pub subject: Template,
    pub body: Template,
}

#[derive(Debug, Clone)]
enum Loaded {
    Email(EmailTemplate),
    Text(Template),
}

/// Every template, parsed and checked.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    templates: BTreeMap<(TemplateSlot, &'static str), Loaded>,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub body: String,
}

impl TemplateSet {
    /// The shipped templates, overridden file by file from `dir` when given. Fails on a
    /// template that does not parse or names a variable its kind does not have.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut templates = BTreeMap::new();
        for slot in [
            TemplateSlot::Email,
            TemplateSlot::Slack,
            TemplateSlot::Webhook,
            TemplateSlot::PagerDuty,
            TemplateSlot::Sms,
        ] {
            for kind in slot.kinds() {
                let relative = format!("{}/{}.txt", slot.dir(), kind.as_str());
                let (name, text) = match dir.map(|d| d.join(&relative)).filter(|p| p.is_file()) {
                    Some(path) => {
                        let text =
                            std::fs::read_to_string(&path).map_err(|error| TemplateError {
                                name: path.display().to_string(),
                                line: 1,
                                message: format!("cannot read: {error}"),
                            })?;
                        (path.display().to_string(), text)
                    }
                    None => {
                        let text = SHIPPED
                            .iter()
                            .find(|(path, _)| *path == relative)
                            .map(|(_, text)| text.to_string())
                            .ok_or_else(|| TemplateError {
                                name: relative.clone(),
                                line: 1,
                                message: "no shipped template".into(),
                            })?;
                        (format!("(built-in) {relative}"), text)
                    }
                };
                let loaded = if slot == TemplateSlot::Email {
                    Loaded::Email(parse_email(&name, &text)?)
                } else {
                    Loaded::Text(Template::parse(&name, text.trim_end())?)
                };
                check_variables(&name, &text, &loaded, *kind)?;
                templates.insert((slot, kind.as_str()), loaded);
            }
        }
        let set = Self { templates };
        // A rendering of every template with sample values: what start-up promises works.
        for kind in KINDS {
            let values = sample_values(kind);
            set.email(kind, &values);
            set.text(TemplateSlot::Slack, kind, &values);
            set.text(TemplateSlot::Webhook, kind, &values);
            set.text(TemplateSlot::Sms, kind, &values);
        }
        Ok(set)
    }

    pub fn email(&self, kind: NotificationKind, values: &Values) -> Option<RenderedEmail> {
        match self.templates.get(&(TemplateSlot::Email, kind.as_str()))? {
            Loaded::Email(template) => Some(RenderedEmail {
                subject: single_line(&template.subject.render(values, single_line_value), 250),
                body: template.body.render(values, body_value),
            }),
            Loaded::Text(_) => None,
        }
    }

    /// Slack, webhook and PagerDuty texts; `None` for a slot the kind has no template in.
    pub fn text(
        &self,
        slot: TemplateSlot,
        kind: NotificationKind,
        values: &Values,
    ) -> Option<String> {
        match self.templates.get(&(slot, kind.as_str()))? {
            Loaded::Text(template) => Some(match slot {
                TemplateSlot::Slack => template.render(values, slack_value),
                TemplateSlot::PagerDuty => {
                    single_line(&template.render(values, single_line_value), 1024)
                }
                TemplateSlot::Sms => {
                    single_line(&template.render(values, single_line_value), SMS_MAX_CHARS)
                }
                _ => template.render(values, body_value),
            }),
            Loaded::Email(_) => None,
        }
    }
}

fn parse_email(name: &str, text: &str) -> Result<EmailTemplate, TemplateError> {
    let (first, body) = text.split_once('\n').unwrap_or((text, ""));
    let Some(subject) = first.trim_end_matches('\r').strip_prefix("Subject:") else {
        return Err(TemplateError {
            name: name.into(),
            line: 1,
            message: "an email template starts with a `Subject:` line".into(),
        });
    };
    let body = body
        .strip_prefix("\r\n")
        .or_else(|| body.strip_prefix('\n'))
        .unwrap_or(body);
    let subject = Template::parse(name, subject.trim())?;
    let body = Template::parse(name, body).map_err(|mut error| {
        error.line += 2;
        error
    })?;
    Ok(EmailTemplate { subject, body })
}

fn check_variables(
    name: &str,
    text: &str,
    loaded: &Loaded,
    kind: NotificationKind,
) -> Result<(), TemplateError> {
    let templates: Vec<&Template> = match loaded {
        Loaded::Email(email) => vec![&email.subject, &email.body],
        Loaded::Text(template) => vec![template],
    };
    let known = |variable: &str| {
        COMMON_VARIABLES.contains(&variable)
            || kind_fields(kind)
                .iter()
                .any(|(field, _)| *field == variable)
    };
    for template in templates {
        if let Some(unknown) = template.variables().find(|v| !known(v)) {
            let line = text
                .lines()
                .position(|line| line.contains(unknown))
                .map(|i| i + 1)
                .unwrap_or(1);
            let mut available: Vec<&str> = COMMON_VARIABLES.to_vec();
            available.extend(kind_fields(kind).iter().map(|(field, _)| *field));
            return Err(TemplateError {
                name: name.into(),
                line,
                message: format!(
                    "unknown variable `{unknown}` for {}; available: {}",
                    kind.as_str(),
                    available.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// For headers and one-line summaries: control characters (CR, LF, tab, NEL, line and
/// paragraph separators ...) become spaces, so a title cannot start a new header; long text is
/// cut at a character boundary.
pub fn single_line(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() <= max_chars {
        return cleaned.to_string();
    }
    let mut cut: String = cleaned.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn single_line_value(value: &str) -> String {
    single_line(value, 500)
}

/// Values inside a body stay on one line too: a title is one line, and a line break in it
/// must not make the rest look like part of the message's own text.
fn body_value(value: &str) -> String {
    single_line(value, 4000)
}

/// Slack mrkdwn: `&`, `<` and `>` in values are escaped so a title cannot mention @channel or
/// forge a link; the template's own markup stays.
fn slack_value(value: &str) -> String {
    body_value(value)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl fmt::Display for TemplateSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_render_and_escapes_stay_literal() {
        let template = Template::parse("t", "#{{ incident_id }} {{title}} \\{{x}}").unwrap();
        let out = template.render(
            &values(&[("incident_id", "7"), ("title", "Disk full")]),
            body_value,
        );
        assert_eq!(out, "#7 Disk full {{x}}");
        assert_eq!(
            template.variables().collect::<Vec<_>>(),
            ["incident_id", "title"]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("a\nb {{ title", 2, "never closed"),
            ("{{}}", 1, "empty"),
            ("x\n\n{{ title | upper }}", 3, "plain name"),
        ];
        for (text, line, needle) in cases {
            let error = Template::parse("f.txt", text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.message.contains(needle), "{error}");
        }
    }

    #[test]
    fn sms_texts_are_one_line_of_at_most_160_characters() {
        let set = TemplateSet::load(None).unwrap();
        for kind in KINDS {
            let mut values = sample_values(kind);
            let text = set.text(TemplateSlot::Sms, kind, &values).unwrap();
            assert!(
                !text.contains('\n') && text.chars().count() <= SMS_MAX_CHARS,
                "{text}"
            );
            values.insert("title".into(), "x\ny ".repeat(100));
            // Self-alerts carry their long text in `detail`.
            values.insert("detail".into(), "x\ny ".repeat(100));
            let long = set.text(TemplateSlot::Sms, kind, &values).unwrap();
            assert_eq!(long.chars().count(), SMS_MAX_CHARS, "{long}");
            assert!(!long.contains('\n') && long.ends_with('…'), "{long}");
        }
    }

    #[test]
    fn the_shipped_templates_load() {
        let set = TemplateSet::load(None).unwrap();
        let email = set
            .email(
                NotificationKind::Escalation,
                &sample_values(NotificationKind::Escalation),
            )
            .unwrap();
        assert!(!email.subject.is_empty() && !email.body.is_empty());
        assert!(
            set.text(
                TemplateSlot::PagerDuty,
                NotificationKind::Escalation,
                &sample_values(NotificationKind::Escalation)
            )
            .is_some()
        );
        assert!(
            set.text(
                TemplateSlot::PagerDuty,
                NotificationKind::Resolved,
                &Values::new()
            )
            .is_none()
        );
    }

    #[test]
    fn a_directory_overrides_and_unknown_variables_fail_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("slack")).unwrap();
        std::fs::write(dir.path().join("slack/resolved.txt"), "done: {{ title }}\n").unwrap();
        let set = TemplateSet::load(Some(dir.path())).unwrap();
        let text = set
            .text(
                TemplateSlot::Slack,
                NotificationKind::Resolved,
                &values(&[("title", "<!channel> & co")]),
            )
            .unwrap();
        assert_eq!(text, "done: &lt;!channel&gt; &amp; co");

        std::fs::write(
            dir.path().join("slack/resolved.txt"),
            "ok\n{{ level_name }}",
        )
        .unwrap();
        let error = TemplateSet::load(Some(dir.path())).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.message.contains("unknown variable `level_name`"),
            "{error}"
        );

        std::fs::create_dir_all(dir.path().join("email")).unwrap();
        std::fs::write(dir.path().join("slack/resolved.txt"), "ok").unwrap();
        std::fs::write(dir.path().join("email/resolved.txt"), "Hello {{ title }}").unwrap();
        let error = TemplateSet::load(Some(dir.path())).unwrap_err();
        assert!(error.message.contains("Subject:"), "{error}");
    }

    #[test]
    fn subjects_cannot_carry_line_breaks() {
        let template = parse_email("e", "Subject: [{{priority}}] {{title}}\n\nbody\n").unwrap();
        let subject = single_line(
            &template.subject.render(
                &values(&[
                    ("priority", "high"),
                    ("title", "Down\r\nBcc: victim@example.com\u{2028}x"),
                ]),
                single_line_value,
            ),
            250,
        );
        assert_eq!(subject, "[high] Down  Bcc: victim@example.com x");
        assert_eq!(single_line("abcdef", 4), "abc…");
        assert_eq!(body_value("a\r\nb\u{7}c"), "a  b c");
    }
}
