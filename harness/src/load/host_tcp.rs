//! The load generator's own machine, as its kernel counts TCP: the local ports closed connections
//! still hold, and the connections the host's listeners dropped.
//!
//! Requests reach the lab through Docker's userland proxy, a listener on 127.0.0.1 of this machine.
//! Two of its limits can pass for the service's:
//! - A client that gives up on a request closes its connection (HTTP/1.1 cannot cancel a request any
//!   other way), and the proxy closes its own to the container in turn. The side that closes first
//!   keeps the socket in TIME_WAIT for a minute, holding a local port, and Linux reuses such a port
//!   early only on loopback. An overloaded step (thousands of users, each giving up every second)
//!   fills the range, and the next step's connections fail whatever the service does. A step starts
//!   only once the range has room again.
//! - Thousands of users connecting at a step's start overflow the proxy's accept queue: the kernel
//!   drops their SYNs (`ListenOverflows`), and each waits a second to try again, past the request's
//!   timeout. The service never saw them. Only the host's listeners count here (the service's own
//!   queue is in its container's namespace), so a rise during a step is this machine's plumbing.

use std::path::Path;

/// What this machine's kernel says of TCP now (the host's network namespace: the generator's and
/// the userland proxy's sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTcp {
    /// Sockets in TIME_WAIT off loopback (Linux reuses a loopback one for a new connection as soon
    /// as it must, so those never run the range out).
    pub time_wait: usize,
    /// How many ports the ephemeral range holds (`net.ipv4.ip_local_port_range`).
    pub range: usize,
    /// Connections the host's listeners dropped for a full accept queue, since boot.
    pub listen_overflows: u64,
}

impl HostTcp {
    pub fn read() -> std::io::Result<Self> {
        let proc = Path::new("/proc");
        let mut time_wait = 0;
        for table in ["net/tcp", "net/tcp6"] {
            match std::fs::read_to_string(proc.join(table)) {
                Ok(text) => time_wait += count_time_wait(&text),
                // No IPv6 is no socket in it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let range = std::fs::read_to_string(proc.join("sys/net/ipv4/ip_local_port_range"))?;
        let range = range_size(&range).ok_or_else(|| unreadable("ip_local_port_range", &range))?;
        let netstat = std::fs::read_to_string(proc.join("net/netstat"))?;
        let listen_overflows = tcp_ext(&netstat, "ListenOverflows")
            .ok_or_else(|| unreadable("net/netstat's ListenOverflows", &netstat))?;
        Ok(Self {
            time_wait,
            range,
            listen_overflows,
        })
    }

    /// Whether a step may start: at most a quarter of the range is waiting, so a step's own
    /// connections cannot run out of ports before the first of them are free again.
    pub fn room(self) -> bool {
        self.time_wait * 4 <= self.range
    }
}

impl std::fmt::Display for HostTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} local ports in TIME_WAIT of {} ephemeral",
            self.time_wait, self.range
        )
    }
}

fn unreadable(what: &str, text: &str) -> std::io::Error {
    let start: String = text.chars().take(80).collect();
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what} reads {start:?}"))
}

/// The sockets in TIME_WAIT (state `06`) off loopback in a `/proc/net/tcp` or `tcp6` table.
fn count_time_wait(table: &str) -> usize {
    (table.lines().skip(1))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.get(3) == Some(&"06"))
        .filter(|fields| fields.get(1).is_some_and(|local| !on_loopback(local)))
        .count()
}

/// Whether a table's `address:port` (hexadecimal, in the kernel's byte order) is a loopback one:
/// 127.0.0.0/8 (its last byte `7F`), `::1`, or `::ffff:127.x.y.z`.
fn on_loopback(local: &str) -> bool {
    let address = local.split(':').next().unwrap_or_default();
    match address.len() {
        8 => address.ends_with("7F"),
        32 => {
            address == "00000000000000000000000001000000"
                || (address.starts_with("0000000000000000FFFF0000") && address.ends_with("7F"))
        }
        _ => false,
    }
}

/// How many ports `low high` (as `ip_local_port_range` reads) holds.
fn range_size(text: &str) -> Option<usize> {
    let mut bounds = text.split_whitespace().map(str::parse::<usize>);
    let (low, high) = (bounds.next()?.ok()?, bounds.next()?.ok()?);
    (high >= low).then(|| high - low + 1)
}

/// The counter `name` of `/proc/net/netstat`'s `TcpExt` lines (a line of names, then their values).
fn tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_tables_are_read_for_waiting_ports_and_dropped_connections() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C4A 0100007F:1F90 06 00000000:00000000 03:00000A2B 00000000     0        0 0 3 0000000000000000
   2: 0113A8C0:C350 0513A8C0:1F90 06 00000000:00000000 03:00000A2B 00000000     0        0 0 3 0000000000000000
   3: 0100007F:9C4B 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(count_time_wait(table), 1, "one off loopback");
        let table6 = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:9C4A 00000000000000000000000001000000:1F90 06 0
   1: 0000000000000000FFFF00000100007F:9C4B 0000000000000000FFFF00000100007F:1F90 06 0
   2: 00000000000000000000000000000001:9C4C 00000000000000000000000000000002:1F90 06 0
";
        assert_eq!(count_time_wait(table6), 1, "one off loopback");
        assert_eq!(range_size("32768\t60999\n"), Some(28232));
        assert_eq!(range_size("60999 32768"), None);
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7700 7712\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext(netstat, "ListenOverflows"), Some(7700));
        assert_eq!(tcp_ext(netstat, "Nonesuch"), None);
        let tcp = |time_wait| HostTcp {
            time_wait,
            range: 28232,
            listen_overflows: 0,
        };
        assert!(tcp(7058).room());
        assert!(!tcp(7059).room(), "more than a quarter of the range waits");
        assert!(HostTcp::read().is_ok(), "this machine's kernel tables read");
    }
}
