//! The client a throttle counts by: an IPv4 address, or the /64 network of
//! an IPv6 address. One subscriber usually gets a whole /64 (often more), so
//! counting single IPv6 addresses would hand every client 2^64 fresh
//! budgets.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAddr(String);

impl ClientAddr {
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            // `::ffff:192.0.2.1` is the IPv4 client 192.0.2.1 on a dual-stack socket.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match ip {
            IpAddr::V4(v4) => Self(v4.to_string()),
            IpAddr::V6(v6) => {
                let network = Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1));
                Self(format!("{network}/64"))
            }
        }
    }

    /// No address known (a Unix socket, a test harness): all such clients
    /// share one budget.
    pub fn unknown() -> Self {
        Self("unknown".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(s: &str) -> String {
        ClientAddr::from_ip(s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))).0
    }

    #[test]
    fn ipv4_clients_count_by_address() {
        assert_eq!(of("198.51.100.7"), "198.51.100.7");
        assert_ne!(of("198.51.100.7"), of("198.51.100.8"));
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("::1"), "::/64");
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4_clients() {
        assert_eq!(of("::ffff:192.0.2.1"), "192.0.2.1");
    }
}
