//! Ports for servers the tests start in other processes (aiosmtpd, Prometheus) or hand to the
//! console to bind. Such a port is chosen first and bound later by someone else, so another
//! socket may take it in between. A port the kernel hands out for `bind(0)` or an outgoing
//! connection comes from the ephemeral range (32768-60999 here), and these test binaries open
//! many connections (Kafka clients, HTTP), so those ports are chosen below that range, where the
//! kernel never allocates by itself; each call of one process moves on to the next port.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A port on 127.0.0.1 that nothing listened on a moment ago, outside the ephemeral range.
/// Test binaries run one at a time, but start points differ by process so that a leftover
/// server of an earlier binary is stepped over rather than met first.
pub fn free_port() -> u16 {
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..COUNT {
        let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = (FIRST + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every port of the range taken: let the kernel choose.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}
