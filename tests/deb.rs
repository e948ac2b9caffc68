//! The Debian package, built by `scripts/deb --dev --no-build` (cargo-deb, from the debug
//! binary this test run built; a nested cargo build would wait on this run's lock) and installed with
//! `dpkg -i` as a user would: the binary runs, the man page is found by `man`, the bash
//! completion is where bash-completion looks, the example config and the systemd unit are in
//! place, and the service user exists. Removed again at the end.

use std::path::Path;
use std::process::Command;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Removes the package even when an assertion fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "incident-console"])
            .output();
    }
}

#[test]
fn the_debian_package_installs_and_runs() {
    if unsafe { libc::geteuid() } != 0 {
        // dpkg -i needs root; CI runs as root, as does this workplace.
        panic!("the package test installs with dpkg -i and must run as root");
    }
    let deb = run("scripts/deb", &["--dev", "--no-build"]);
    let deb = deb.trim().lines().last().unwrap().to_string();
    assert!(deb.ends_with(".deb"), "{deb}");
    let contents = run("dpkg-deb", &["--contents", &deb]);
    for path in [
        "./usr/bin/incident-console",
        "./usr/share/man/man1/incident-console.1.gz",
        "./usr/share/bash-completion/completions/incident-console",
        "./usr/share/doc/incident-console/examples/config.ron",
        "./lib/systemd/system/incident-console.service",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }
    let _installed = Installed;
    run("dpkg", &["-i", &deb]);
    let version = run("/usr/bin/incident-console", &["--version"]);
    assert!(
        version.starts_with(&format!(
            "incident-console {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    assert!(version.contains("librdkafka "), "{version}");
    let page = run("man", &["-w", "incident-console"]);
    assert_eq!(page.trim(), "/usr/share/man/man1/incident-console.1.gz");
    run(
        "bash",
        &[
            "-n",
            "/usr/share/bash-completion/completions/incident-console",
        ],
    );
    // The shipped example parses as a configuration.
    run(
        "/usr/bin/incident-console",
        &[
            "--config",
            "/usr/share/doc/incident-console/examples/config.ron",
            "--print-config",
        ],
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/incident-console.service").unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/incident-console --no-tui"),
        "{unit}"
    );
    run("getent", &["passwd", "incident-console"]);
    assert!(Path::new("/var/lib/incident-console").is_dir());
}

/// The package's unit is the one docs/server.md shows, but for the binary's path.
#[test]
fn the_packaged_unit_is_the_documented_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/server.md")).unwrap();
    let start = docs.find("```ini\n").unwrap() + "```ini\n".len();
    let documented: Vec<String> = docs[start..][..docs[start..].find("```").unwrap()]
        .lines()
        .filter(|l| !l.starts_with('#') || l.starts_with("# SIGTERM"))
        .map(|l| l.replace("/usr/local/bin/", "/usr/bin/"))
        .collect();
    let packaged =
        std::fs::read_to_string(root.join("assets/deb/incident-console.service")).unwrap();
    let packaged: Vec<&str> = packaged
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect();
    assert_eq!(packaged, documented);
}
