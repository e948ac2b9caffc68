//! Incident events as the producer sends them, and a decoder whose errors say exactly what
//! was wrong and where.
//!
//! Text fields are kept byte-for-byte as received: sanitising for a terminal or an email header
//! is the job of whoever renders them, so nothing a producer wrote is lost here.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub type Timestamp = DateTime<Utc>;

pub type IncidentId = i64;

/// Writes a timestamp exactly as chrono's own `Serialize` does (RFC 3339 with `Z`, and 0, 3, 6
/// or 9 digits of fraction), but as one string. chrono's writes it piece by piece through
/// `collect_str`, which serde_json escapes piece by piece: that was about 8 % of the CPU of
/// a backlog's drain, whose every output line carries two timestamps (docs/performance.md).
pub fn serialize_timestamp<S: serde::Serializer>(
    at: &Timestamp,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// High and critical incidents page people; the others wait for office hours.
    pub fn escalates(self) -> bool {
        matches!(self, Self::High | Self::Critical)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    InProgress,
    Resolved,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::InProgress => "in_progress",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }

    /// Resolved and closed both end the incident's working life.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Resolved | Self::Closed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentCreated {
    pub incident_id: IncidentId,
    pub title: String,
    pub priority: Priority,
    pub status: Status,
    pub category: String,
    pub reported_by: String,
    #[serde(default)]
    pub assigned_to: Option<String>,
    #[serde(serialize_with = "serialize_timestamp")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdated {
    pub incident_id: IncidentId,
    pub title: String,
    pub old_status: Status,
    pub new_status: Status,
    pub priority: Priority,
    #[serde(default)]
    pub assigned_to: Option<String>,
    #[serde(serialize_with = "serialize_timestamp")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAdded {
    pub incident_id: IncidentId,
    pub title: String,
    pub author: String,
    pub comment: String,
    #[serde(serialize_with = "serialize_timestamp")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentUploaded {
    pub incident_id: IncidentId,
    pub title: String,
    pub filename: String,
    pub size_bytes: u64,
    pub content_type: String,
    pub uploaded_by: String,
    #[serde(serialize_with = "serialize_timestamp")]
    pub uploaded_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentChanged {
    pub incident_id: IncidentId,
    pub title: String,
    pub priority: Priority,
    #[serde(default)]
    pub old_assignee: Option<String>,
    pub new_assignee: String,
    pub changed_by: String,
    #[serde(serialize_with = "serialize_timestamp")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationTriggered {
    pub incident_id: IncidentId,
    pub title: String,
    pub priority: Priority,
    pub level: u32,
    pub reason: String,
    pub triggered_by: String,
    #[serde(serialize_with = "serialize_timestamp")]
    pub triggered_at: Timestamp,
}

/// One decoded event. Serialises back to the producer's shape (with `event_type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum IncidentEvent {
    IncidentCreated(IncidentCreated),
    StatusUpdated(StatusUpdated),
    CommentAdded(CommentAdded),
    AttachmentUploaded(AttachmentUploaded),
    AssignmentChanged(AssignmentChanged),
    EscalationTriggered(EscalationTriggered),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    IncidentCreated,
    StatusUpdated,
    CommentAdded,
    AttachmentUploaded,
    AssignmentChanged,
    EscalationTriggered,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        Self::IncidentCreated,
        Self::StatusUpdated,
        Self::CommentAdded,
        Self::AttachmentUploaded,
        Self::AssignmentChanged,
        Self::EscalationTriggered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncidentCreated => "incident_created",
            Self::StatusUpdated => "status_updated",
            Self::CommentAdded => "comment_added",
            Self::AttachmentUploaded => "attachment_uploaded",
            Self::AssignmentChanged => "assignment_changed",
            Self::EscalationTriggered => "escalation_triggered",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl IncidentEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::IncidentCreated(_) => EventType::IncidentCreated,
            Self::StatusUpdated(_) => EventType::StatusUpdated,
            Self::CommentAdded(_) => EventType::CommentAdded,
            Self::AttachmentUploaded(_) => EventType::AttachmentUploaded,
            Self::AssignmentChanged(_) => EventType::AssignmentChanged,
            Self::EscalationTriggered(_) => EventType::EscalationTriggered,
        }
    }

    pub fn incident_id(&self) -> IncidentId {
        match self {
            Self::IncidentCreated(e) => e.incident_id,
            Self::StatusUpdated(e) => e.incident_id,
            Self::CommentAdded(e) => e.incident_id,
            Self::AttachmentUploaded(e) => e.incident_id,
            Self::AssignmentChanged(e) => e.incident_id,
            Self::EscalationTriggered(e) => e.incident_id,
        }
    }

    pub fn title(&self) -> &str {
        match self {
            Self::IncidentCreated(e) => &e.title,
            Self::StatusUpdated(e) => &e.title,
            Self::CommentAdded(e) => &e.title,
            Self::AttachmentUploaded(e) => &e.title,
            Self::AssignmentChanged(e) => &e.title,
            Self::EscalationTriggered(e) => &e.title,
        }
    }

    /// Comment and attachment events do not carry the incident's priority.
    pub fn priority(&self) -> Option<Priority> {
        match self {
            Self::IncidentCreated(e) => Some(e.priority),
            Self::StatusUpdated(e) => Some(e.priority),
            Self::AssignmentChanged(e) => Some(e.priority),
            Self::EscalationTriggered(e) => Some(e.priority),
            Self::CommentAdded(_) | Self::AttachmentUploaded(_) => None,
        }
    }

    /// When the producer says the thing happened.
    pub fn occurred_at(&self) -> Timestamp {
        match self {
            Self::IncidentCreated(e) => e.created_at,
            Self::StatusUpdated(e) => e.updated_at,
            Self::CommentAdded(e) => e.created_at,
            Self::AttachmentUploaded(e) => e.uploaded_at,
            Self::AssignmentChanged(e) => e.updated_at,
            Self::EscalationTriggered(e) => e.triggered_at,
        }
    }

    /// A one-line description of what changed, for feeds and logs.
    pub fn summary(&self) -> String {
        match self {
            Self::IncidentCreated(e) => format!("opened ({}) by {}", e.status, e.reported_by),
            Self::StatusUpdated(e) => format!("{} → {}", e.old_status, e.new_status),
            Self::CommentAdded(e) => format!("comment by {}", e.author),
            Self::AttachmentUploaded(e) => {
                format!(
                    "{} ({} bytes) by {}",
                    e.filename, e.size_bytes, e.uploaded_by
                )
            }
            Self::AssignmentChanged(e) => format!(
                "{} → {}",
                e.old_assignee.as_deref().unwrap_or("unassigned"),
                e.new_assignee
            ),
            Self::EscalationTriggered(e) => format!("level {} by {}", e.level, e.triggered_by),
        }
    }
}

/// Why a payload is not an event. `reason()` is a short stable label for metrics and
/// dead-letter headers; `Display` is the full sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("payload is a tombstone (null value)")]
    Tombstone,
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("not valid JSON at line {line} column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("JSON is not an object")]
    NotAnObject,
    #[error("missing field `event_type`")]
    MissingEventType,
    #[error("unknown event_type `{0}`")]
    UnknownEventType(String),
    #[error("missing field `{field}`")]
    MissingField { field: String },
    #[error("field `{field}`: {message}")]
    InvalidField { field: String, message: String },
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Tombstone => "tombstone",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::Syntax { .. } => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingEventType => "missing_event_type",
            Self::UnknownEventType(_) => "unknown_event_type",
            Self::MissingField { .. } => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
        }
    }

    /// Every label `reason()` can return, so metrics can list zero counts too.
    pub const REASONS: [&'static str; 10] = [
        "empty",
        "tombstone",
        "too_large",
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "missing_event_type",
        "unknown_event_type",
        "missing_field",
        "invalid_field",
    ];
}

/// Payloads larger than this are refused before parsing, whatever the config says.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Decodes one Kafka message value into an event. `None` is a tombstone.
pub fn decode(payload: Option<&[u8]>, max_bytes: usize) -> Result<IncidentEvent, DecodeError> {
    let bytes = payload.ok_or(DecodeError::Tombstone)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;

    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => DecodeError::NotAnObject,
            Err(error) => envelope_error(error),
        });
    }
    // First pass finds the discriminator (and rejects bad JSON with its position); the second
    // decodes the concrete type so that field errors name the field.
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(envelope_error)?;
    let event_type = match envelope.event_type {
        None => return Err(DecodeError::MissingEventType),
        Some(name) => {
            EventType::parse(&name).ok_or_else(|| DecodeError::UnknownEventType(quote(&name)))?
        }
    };
    let event = match event_type {
        EventType::IncidentCreated => IncidentEvent::IncidentCreated(decode_as(text)?),
        EventType::StatusUpdated => IncidentEvent::StatusUpdated(decode_as(text)?),
        EventType::CommentAdded => IncidentEvent::CommentAdded(decode_as(text)?),
        EventType::AttachmentUploaded => IncidentEvent::AttachmentUploaded(decode_as(text)?),
        EventType::AssignmentChanged => IncidentEvent::AssignmentChanged(decode_as(text)?),
        EventType::EscalationTriggered => IncidentEvent::EscalationTriggered(decode_as(text)?),
    };
    validate(&event)?;
    Ok(event)
}

fn validate(event: &IncidentEvent) -> Result<(), DecodeError> {
    if event.incident_id() <= 0 {
        return Err(DecodeError::InvalidField {
            field: "incident_id".into(),
            message: format!("must be a positive integer, got {}", event.incident_id()),
        });
    }
    if let IncidentEvent::EscalationTriggered(e) = event
        && e.level == 0
    {
        return Err(DecodeError::InvalidField {
            field: "level".into(),
            message: "must be 1 or more (1 is the first level)".into(),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
}

fn envelope_error(error: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => {
            let message = error.to_string();
            if message.starts_with("invalid type") {
                if message.contains("expected struct Envelope") {
                    DecodeError::NotAnObject
                } else {
                    DecodeError::InvalidField {
                        field: "event_type".into(),
                        message: strip_position(&message),
                    }
                }
            } else {
                DecodeError::InvalidField {
                    field: "event_type".into(),
                    message: strip_position(&message),
                }
            }
        }
        Category::Syntax | Category::Eof | Category::Io => DecodeError::Syntax {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        },
    }
}

fn decode_as<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, DecodeError> {
    // Nearly every payload is valid: decoded without tracking the path, which costs per
    // field. Only a payload that fails is decoded again, tracked, to name the field.
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = strip_position(&inner.to_string());
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            return DecodeError::MissingField {
                field: field.to_string(),
            };
        }
        if message.starts_with("duplicate field") || path == "." {
            let field = message
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or(path);
            return DecodeError::InvalidField { field, message };
        }
        DecodeError::InvalidField {
            field: path,
            message,
        }
    })?;
    deserializer.end().map_err(envelope_error)?;
    Ok(value)
}

/// serde_json appends " at line L column C"; for field errors the field name says more.
/// Messages quote the offending value: it is cut and escaped, since it is the sender's text.
fn strip_position(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(index) => &message[..index],
        None => message,
    };
    quote(message)
}

/// At most `MAX_QUOTED_CHARS` characters of untrusted text, control characters escaped, so an
/// error message stays one short, printable line in logs, headers and the feed.
const MAX_QUOTED_CHARS: usize = 200;

fn quote(text: &str) -> String {
    let mut quoted = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_QUOTED_CHARS {
            quoted.push('…');
            break;
        }
        if c.is_control() {
            quoted.extend(c.escape_default());
        } else {
            quoted.push(c);
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-string form is byte for byte what chrono's own `Serialize` writes, for every
    /// length of fraction, a leap second and the years RFC 3339 cannot hold in four digits.
    #[test]
    fn timestamps_serialise_as_chrono_writes_them() {
        #[derive(Serialize)]
        struct Ours(#[serde(serialize_with = "serialize_timestamp")] Timestamp);
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let mut times: Vec<Timestamp> = [0, 5_000_000, 5_000, 336_440_294, 1_500_000_000]
            .into_iter()
            .map(|nano| day.and_hms_nano_opt(23, 59, 59, nano).unwrap().and_utc())
            .collect();
        for year in [0, 999, 9999, 10_000, -1] {
            let date = chrono::NaiveDate::from_ymd_opt(year, 1, 2).unwrap();
            times.push(date.and_hms_micro_opt(3, 4, 5, 6).unwrap().and_utc());
        }
        for at in times {
            let chrono_s = serde_json::to_string(&at).unwrap();
            assert_eq!(
                serde_json::to_string(&Ours(at)).unwrap(),
                chrono_s,
                "{at:?}"
            );
        }
    }

    const CREATED: &str = r#"{
  "incident_id": 123,
  "title": "Server Down",
  "priority": "high",
  "status": "open",
  "category": "hardware",
  "reported_by": "john.doe",
  "assigned_to": "jane.smith",
  "created_at": "2024-01-01T10:00:00Z",
  "event_type": "incident_created"
}"#;

    fn decode_str(text: &str) -> Result<IncidentEvent, DecodeError> {
        decode(Some(text.as_bytes()), DEFAULT_MAX_PAYLOAD_BYTES)
    }

    #[test]
    fn decodes_incident_created_verbatim() {
        let event = decode_str(CREATED).unwrap();
        let IncidentEvent::IncidentCreated(created) = event else {
            panic!("wrong variant")
        };
        assert_eq!(created.incident_id, 123);
        assert_eq!(created.title, "Server Down");
        assert_eq!(created.priority, Priority::High);
        assert_eq!(created.status, Status::Open);
        assert_eq!(created.assigned_to.as_deref(), Some("jane.smith"));
        assert_eq!(created.created_at.to_rfc3339(), "2024-01-01T10:00:00+00:00");
    }

    #[test]
    fn decodes_each_planned_type() {
        let cases = [
            (
                r#"{"incident_id":1,"event_type":"comment_added","title":"t","author":"a","comment":"c","created_at":"2024-01-01T10:00:00Z"}"#,
                EventType::CommentAdded,
            ),
            (
                r#"{"incident_id":1,"event_type":"attachment_uploaded","title":"t","filename":"f.log","size_bytes":10,"content_type":"text/plain","uploaded_by":"u","uploaded_at":"2024-01-01T10:00:00Z"}"#,
                EventType::AttachmentUploaded,
            ),
            (
                r#"{"incident_id":1,"event_type":"assignment_changed","title":"t","priority":"low","old_assignee":null,"new_assignee":"b","changed_by":"c","updated_at":"2024-01-01T10:00:00Z"}"#,
                EventType::AssignmentChanged,
            ),
            (
                r#"{"incident_id":1,"event_type":"escalation_triggered","title":"t","priority":"critical","level":2,"reason":"r","triggered_by":"x","triggered_at":"2024-01-01T10:00:00Z"}"#,
                EventType::EscalationTriggered,
            ),
            (
                r#"{"incident_id":1,"event_type":"status_updated","title":"t","old_status":"open","new_status":"in_progress","priority":"medium","updated_at":"2024-01-01T10:00:00Z"}"#,
                EventType::StatusUpdated,
            ),
        ];
        for (text, expected) in cases {
            let event = decode_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(event.event_type(), expected);
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_null_assignee_accepted() {
        let text = CREATED.replace("\"jane.smith\"", "null").replace(
            "\"category\"",
            "\"new_field\": {\"x\": [1,2]}, \"category\"",
        );
        let IncidentEvent::IncidentCreated(created) = decode_str(&text).unwrap() else {
            panic!()
        };
        assert_eq!(created.assigned_to, None);
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let cases: &[(&[u8], &str, &str)] = &[
            (b"", "empty", "empty payload"),
            (b"  \n", "empty", "empty payload"),
            (b"\xff\xfe", "invalid_utf8", "offset 0"),
            (b"{\"incident_id\": 1,", "invalid_json", "line 1"),
            (b"[1,2]", "not_an_object", "not an object"),
            (b"42", "not_an_object", "not an object"),
            (
                b"{\"incident_id\":1}",
                "missing_event_type",
                "missing field `event_type`",
            ),
            (
                b"{\"event_type\":\"incident_deleted\"}",
                "unknown_event_type",
                "`incident_deleted`",
            ),
            (
                b"{\"event_type\":7}",
                "invalid_field",
                "field `event_type`",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":1,\"title\":\"t\",\"author\":\"a\",\"created_at\":\"2024-01-01T10:00:00Z\"}",
                "missing_field",
                "missing field `comment`",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":\"1\",\"title\":\"t\",\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"2024-01-01T10:00:00Z\"}",
                "invalid_field",
                "field `incident_id`: invalid type: string",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":99999999999999999999,\"title\":\"t\",\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"2024-01-01T10:00:00Z\"}",
                "invalid_field",
                "field `incident_id`",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":0,\"title\":\"t\",\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"2024-01-01T10:00:00Z\"}",
                "invalid_field",
                "must be a positive integer, got 0",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":1,\"title\":null,\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"2024-01-01T10:00:00Z\"}",
                "invalid_field",
                "field `title`: invalid type: null",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":1,\"title\":\"t\",\"title\":\"u\",\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"2024-01-01T10:00:00Z\"}",
                "invalid_field",
                "duplicate field `title`",
            ),
            (
                b"{\"event_type\":\"status_updated\",\"incident_id\":1,\"title\":\"t\",\"old_status\":\"open\",\"new_status\":\"done\",\"priority\":\"high\",\"updated_at\":\"2024-01-01T10:00:00Z\"}",
                "invalid_field",
                "field `new_status`: unknown variant `done`",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":1,\"title\":\"t\",\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"yesterday\"}",
                "invalid_field",
                "field `created_at`",
            ),
            (
                b"{\"event_type\":\"comment_added\",\"incident_id\":1,\"title\":\"t\",\"author\":\"a\",\"comment\":\"c\",\"created_at\":\"2024-01-01T10:00:00Z\"} trailing",
                "invalid_json",
                "trailing characters",
            ),
        ];
        for (payload, reason, needle) in cases {
            let error = decode(Some(payload), DEFAULT_MAX_PAYLOAD_BYTES)
                .expect_err(&String::from_utf8_lossy(payload));
            assert_eq!(error.reason(), *reason, "{error}");
            assert!(
                error.to_string().contains(needle),
                "`{error}` should contain `{needle}`"
            );
        }
    }

    #[test]
    fn quoted_input_in_errors_is_short_and_printable() {
        let long = format!(r#"{{"event_type":"x{}\u001b[2J"}}"#, "y".repeat(5000));
        let error = decode_str(&long).unwrap_err().to_string();
        assert!(error.chars().count() < 260, "{} chars", error.len());
        assert!(!error.contains('\u{1b}'));
        let value = format!(
            r#"{{"event_type":"comment_added","incident_id":"{}\u0007"}}"#,
            "z".repeat(5000)
        );
        let error = decode_str(&value).unwrap_err().to_string();
        assert!(error.chars().count() < 260, "{error}");
        assert!(!error.contains('\u{7}'));
    }

    #[test]
    fn tombstones_and_oversized_payloads_are_refused_before_parsing() {
        assert_eq!(
            decode(None, DEFAULT_MAX_PAYLOAD_BYTES),
            Err(DecodeError::Tombstone)
        );
        assert_eq!(
            decode(Some(CREATED.as_bytes()), 10),
            Err(DecodeError::TooLarge {
                size: CREATED.len(),
                limit: 10
            })
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let open = "[".repeat(100_000);
        let close = "]".repeat(100_000);
        let error = decode_str(&format!("{open}{close}")).unwrap_err();
        assert_eq!(error.reason(), "not_an_object");
        let in_known_field = format!(
            r#"{{"event_type":"comment_added","incident_id":1,"title":{open}{close},"author":"a","comment":"c","created_at":"2024-01-01T10:00:00Z"}}"#
        );
        let error = decode_str(&in_known_field).unwrap_err();
        assert_eq!(
            error.to_string(),
            "field `title`: invalid type: sequence, expected a string"
        );
        // Deep data in a field nobody reads is skipped without recursing.
        let in_unknown_field = format!(
            r#"{{"event_type":"comment_added","incident_id":1,"x":{open}{close},"title":"t","author":"a","comment":"c","created_at":"2024-01-01T10:00:00Z"}}"#
        );
        assert!(decode_str(&in_unknown_field).is_ok());
    }

    #[test]
    fn text_is_kept_as_received() {
        let text = CREATED.replace("Server Down", "Server \\u001b[2J Down\\r\\nBcc: x");
        let event = decode_str(&text).unwrap();
        assert_eq!(event.title(), "Server \u{1b}[2J Down\r\nBcc: x");
    }
}
