//! Email notifications delivered to a real SMTP server (aiosmtpd) on loopback.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::time::Duration;

use incident_console::core::engine::{Audience, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::notify::Notifier;

use fixtures::{fast_config, notification, with_smtp};
use servers::{Mail, SmtpSink, WAIT, eventually};

fn recipients(mails: &[Mail]) -> BTreeSet<String> {
    mails.iter().flat_map(|m| m.rcpt_tos.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_workflow_reaches_its_people() {
    let sink = SmtpSink::start().await;
    let mut notifier = Notifier::start(&with_smtp(fast_config(), sink.port)).unwrap();

    // New incident: the administrators.
    notifier.submit(notification(
        NotificationKind::IncidentCreated,
        Audience::Administrators,
        123,
        "Server Down",
        Priority::High,
        &[
            ("status", "open"),
            ("category", "hardware"),
            ("reported_by", "john.doe"),
            ("assignee", "jane.smith"),
            ("created_at", "2024-01-01T10:00:00+00:00"),
        ],
    ));
    let mails = sink.wait_for(2).await;
    assert_eq!(
        recipients(&mails),
        set(&["admins@example.com", "boss@example.com"])
    );
    for mail in &mails {
        assert_eq!(mail.rcpt_tos.len(), 1, "one message per recipient");
        assert_eq!(mail.mail_from, "console@example.com");
        assert_eq!(mail.subject(), "[high] New incident #123: Server Down");
        assert_eq!(
            mail.header("To").as_deref(),
            Some(mail.rcpt_tos[0].as_str())
        );
        let body = mail.body();
        assert!(body.contains("Category:    hardware"), "{body}");
        assert!(body.contains("Reported by: john.doe"), "{body}");
    }

    // Status change: the assignee, through the users table.
    notifier.submit(notification(
        NotificationKind::StatusChanged,
        Audience::User {
            name: "jane.smith".into(),
        },
        123,
        "Server Down",
        Priority::High,
        &[
            ("old_status", "open"),
            ("new_status", "in_progress"),
            ("assignee", "jane.smith"),
            ("updated_at", "2024-01-01T10:05:00+00:00"),
        ],
    ));
    let mails = sink.wait_for(3).await;
    let status = &mails[2];
    assert_eq!(status.rcpt_tos, ["jane@corp.example"]);
    assert_eq!(
        status.subject(),
        "[high] Incident #123 is now in_progress: Server Down"
    );
    assert!(status.body().contains("Status:   open -> in_progress"));

    // Escalation: the level's emails and users (through user_email).
    notifier.submit(notification(
        NotificationKind::Escalation,
        Audience::EscalationLevel { level: 1 },
        123,
        "Server Down",
        Priority::High,
        &[
            ("level", "1"),
            ("level_name", "on-call"),
            ("repeat", "0"),
            ("reason", "new incident"),
            ("opened_at", "2024-01-01T10:00:00+00:00"),
        ],
    ));
    let mails = sink.wait_for(5).await;
    assert_eq!(
        recipients(&mails[3..]),
        set(&["pager-1@example.com", "oncall.one@example.com"])
    );
    for mail in &mails[3..] {
        assert_eq!(
            mail.subject(),
            "[high] ESCALATION level 1 (on-call): incident #123: Server Down"
        );
        assert!(mail.body().contains("Reason:   new incident"));
    }

    // Resolution: the administrators.
    notifier.submit(notification(
        NotificationKind::Resolved,
        Audience::Administrators,
        123,
        "Server Down",
        Priority::High,
        &[
            ("new_status", "resolved"),
            ("assignee", "jane.smith"),
            ("time_to_resolve", "1h 30m"),
            ("updated_at", "2024-01-01T11:30:00+00:00"),
        ],
    ));
    let mails = sink.wait_for(7).await;
    assert_eq!(
        recipients(&mails[5..]),
        set(&["admins@example.com", "boss@example.com"])
    );
    for mail in &mails[5..] {
        assert_eq!(
            mail.subject(),
            "[high] Resolved: incident #123: Server Down"
        );
        assert!(mail.body().contains("Time to resolve: 1h 30m"));
    }

    let status = eventually(WAIT, "7 counted deliveries", || {
        let status = notifier.status();
        (status.delivered == 7).then_some(status)
    })
    .await;
    assert_eq!(status.failed, 0);
    assert_eq!(status.channels.len(), 1);
    assert_eq!(status.channels[0].name, "email");
    assert_eq!(status.channels[0].delivered, 7);
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.mails().len(), 7, "nothing more was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_with_line_breaks_cannot_add_headers_or_recipients() {
    let sink = SmtpSink::start().await;
    let mut notifier = Notifier::start(&with_smtp(fast_config(), sink.port)).unwrap();
    let title = "Disk full\r\nBcc: attacker@evil.example\r\nX-Injected: yes\n\rSubject: fake";
    notifier.submit(notification(
        NotificationKind::IncidentCreated,
        Audience::Administrators,
        7,
        title,
        Priority::Critical,
        &[("category", "storage\r\nCc: other@evil.example")],
    ));
    // A user name that tries to smuggle an address is not mailed at all.
    notifier.submit(notification(
        NotificationKind::AssignmentChanged,
        Audience::User {
            name: "x\r\nBcc: attacker@evil.example".into(),
        },
        7,
        title,
        Priority::Critical,
        &[],
    ));
    let mails = sink.wait_for(2).await;
    let status = eventually(WAIT, "the unroutable user to be counted", || {
        let status = notifier.status();
        (status.delivered == 2 && status.failed == 1).then_some(status)
    })
    .await;
    assert_eq!(status.channels[0].failures.get("no_address"), Some(&1));
    assert_eq!(
        recipients(&mails),
        set(&["admins@example.com", "boss@example.com"])
    );
    for mail in &mails {
        let names: Vec<String> = mail
            .headers()
            .into_iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        for forbidden in ["bcc", "cc", "x-injected"] {
            assert!(
                !names.iter().any(|n| n == forbidden),
                "{forbidden} became a header: {:?}",
                mail.data
            );
        }
        assert_eq!(names.iter().filter(|n| *n == "subject").count(), 1);
        let subject = mail.subject();
        assert!(subject.starts_with("[critical] New incident #7: Disk full"));
        assert!(
            subject.contains("Bcc: attacker@evil.example"),
            "kept as text: {subject}"
        );
        assert!(
            mail.body()
                .contains("#7 Disk full  Bcc: attacker@evil.example  X-Injected: yes"),
            "the title stays on its line in the body: {}",
            mail.body()
        );
    }
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.mails().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_delays_mail_but_loses_none_and_submit_never_waits() {
    let mut sink = SmtpSink::start().await;
    sink.stop();
    let mut notifier = Notifier::start(&with_smtp(fast_config(), sink.port)).unwrap();
    for id in 1..=5 {
        // `submit` is not async: that it returns at all while the server is down is the point.
        notifier.submit(notification(
            NotificationKind::IncidentCreated,
            Audience::Administrators,
            id,
            &format!("Outage test {id}"),
            Priority::Medium,
            &[],
        ));
    }
    // All 2 admins x 5 incidents held, some already waiting for a retry.
    let waiting = eventually(WAIT, "deliveries to be held and retrying", || {
        let status = notifier.status();
        (status.channels[0].retrying > 0 && status.outbox_depth == 10).then_some(status)
    })
    .await;
    assert_eq!(waiting.delivered, 0);
    assert!(
        waiting.channels[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("smtp_connection")),
        "{:?}",
        waiting.channels[0].last_error
    );
    assert!(sink.mails().is_empty());

    sink.restart().await;
    let mails = sink.wait_for(10).await;
    let status = eventually(WAIT, "all settled", || {
        let status = notifier.status();
        (status.outbox_depth == 0).then_some(status)
    })
    .await;
    assert_eq!(status.delivered, 10);
    assert_eq!(status.failed, 0);
    notifier.shutdown(Duration::from_secs(5)).await;
    let mails_after = sink.mails();
    assert_eq!(mails_after.len(), 10, "each mail arrived exactly once");
    let distinct: BTreeSet<(String, String)> = mails
        .iter()
        .map(|m| (m.rcpt_tos.join(","), m.subject()))
        .collect();
    assert_eq!(distinct.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_notification_twice_is_mailed_once() {
    let sink = SmtpSink::start().await;
    let mut notifier = Notifier::start(&with_smtp(fast_config(), sink.port)).unwrap();
    let n = notification(
        NotificationKind::IncidentCreated,
        Audience::Administrators,
        9,
        "Twice",
        Priority::Low,
        &[],
    );
    notifier.submit(n.clone());
    notifier.submit(n);
    let status = eventually(WAIT, "the duplicate to be dropped", || {
        let status = notifier.status();
        (status.deduplicated == 2 && status.delivered == 2).then_some(status)
    })
    .await;
    assert_eq!(status.channels[0].deduplicated, 2);
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.mails().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_was_submitted() {
    let sink = SmtpSink::start().await;
    let mut notifier = Notifier::start(&with_smtp(fast_config(), sink.port)).unwrap();
    for id in 1..=3 {
        notifier.submit(notification(
            NotificationKind::Resolved,
            Audience::Administrators,
            id,
            "Done",
            Priority::Low,
            &[],
        ));
    }
    notifier.shutdown(Duration::from_secs(10)).await;
    // No waiting here: shutdown returned after the drain.
    assert_eq!(sink.mails().len(), 6);
    assert_eq!(notifier.status().delivered, 6);
}

fn tls_sink_options(
    dir: &std::path::Path,
    mode: &'static str,
) -> (servers::SinkOptions, std::path::PathBuf) {
    let (cert, key) = servers::self_signed_certificate(dir);
    (
        servers::SinkOptions {
            tls: Some((mode, cert.clone(), key)),
            auth: Some("mailer:s3cret".into()),
            ..servers::SinkOptions::default()
        },
        cert,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_login_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (options, cert) = tls_sink_options(dir.path(), "starttls");
    let sink = SmtpSink::start_with(options).await;
    let mut config = with_smtp(fast_config(), sink.port);
    config.email.tls = incident_console::notify::config::SmtpTls::Starttls;
    config.email.ca_file = Some(cert);
    config.apply_env(&|name| match name {
        "SMTP_USERNAME" => Some("mailer".into()),
        "SMTP_PASSWORD" => Some("s3cret".into()),
        _ => None,
    });
    config.validate().unwrap();
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(notification(
        NotificationKind::Resolved,
        Audience::Administrators,
        31,
        "Over TLS",
        Priority::Low,
        &[],
    ));
    let mails = sink.wait_for(2).await;
    for mail in &mails {
        assert!(mail.tls, "sent after STARTTLS");
        assert_eq!(mail.login.as_deref(), Some("mailer"));
        assert_eq!(mail.subject(), "[low] Resolved: incident #31: Over TLS");
    }
    notifier.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_and_a_refused_login_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let (options, cert) = tls_sink_options(dir.path(), "implicit");
    let sink = SmtpSink::start_with(options).await;
    let mut config = with_smtp(fast_config(), sink.port);
    config.email.tls = incident_console::notify::config::SmtpTls::Tls;
    config.email.ca_file = Some(cert);
    config.email.username = Some("mailer".into());
    config.email.password = Some("s3cret".into());
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(notification(
        NotificationKind::Resolved,
        Audience::Administrators,
        32,
        "Wrapped",
        Priority::Low,
        &[],
    ));
    let mails = sink.wait_for(2).await;
    assert!(
        mails
            .iter()
            .all(|m| m.tls && m.login.as_deref() == Some("mailer"))
    );
    notifier.shutdown(Duration::from_secs(5)).await;

    // The same server with a wrong password: refused for good, not retried for an hour.
    config.email.password = Some("wrong".into());
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(notification(
        NotificationKind::Resolved,
        Audience::Administrators,
        33,
        "Refused",
        Priority::Low,
        &[],
    ));
    let status = eventually(WAIT, "the refusals to be counted", || {
        let status = notifier.status();
        (status.failed == 2).then_some(status)
    })
    .await;
    let email = &status.channels[0];
    assert_eq!(
        email.failures.get("smtp_535"),
        Some(&2),
        "{:?}",
        email.failures
    );
    assert_eq!(email.retrying, 0);
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.mails().len(), 2);
}
