//! The notification example in docs/notifications.md is a configuration that parses, validates and starts.

use incident_console::config::{Config, DEFAULT_CONFIG};
use incident_console::notify::{Channel, Notifier};

fn readme_example() -> String {
    let readme = include_str!("../docs/notifications.md");
    let start = readme
        .find("<!-- notifications:start -->")
        .expect("start marker");
    let end = readme
        .find("<!-- notifications:end -->")
        .expect("end marker");
    let section = &readme[start..end];
    let block = section.split("```ron\n").nth(1).expect("a ron block");
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_readme_example_parses_and_configures_email_and_the_webhook() {
    let example = readme_example();
    // Swap the shipped notifications section for the example.
    let from = DEFAULT_CONFIG
        .find("    notifications: (")
        .expect("shipped section");
    let rest = &DEFAULT_CONFIG[from..];
    let shipped_section_len = rest.find("\n    ),\n").expect("section end") + "\n    ),\n".len();
    let text = format!(
        "{}{}{}",
        &DEFAULT_CONFIG[..from],
        example,
        &rest[shipped_section_len..]
    );
    let config = Config::parse(&text, "README example").unwrap_or_else(|e| panic!("{e}"));
    let notifications = &config.notifications;
    assert!(notifications.enabled(Channel::Email));
    assert!(notifications.enabled(Channel::Webhook));
    assert!(!notifications.enabled(Channel::Slack));
    assert_eq!(notifications.email.port(), 2525);
    assert_eq!(notifications.escalation_levels.len(), 3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut notifier = Notifier::start(notifications).expect("starts");
        notifier.shutdown(std::time::Duration::from_secs(1)).await;
    });
}
