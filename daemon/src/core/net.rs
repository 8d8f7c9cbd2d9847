//! Network names as the operator writes them in grants, and which
//! addresses count as public: the vocabulary the config and the plugin
//! host share.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host the operator grants: `api.example.com`, `api.example.com:8443`,
/// `*.example.com`, or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower-case name without the `*.`.
    host: String,
    /// `*.example.com`: subdomains of `host`, not `host` itself.
    subdomains: bool,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim().to_ascii_lowercase();
        if t.contains("://") || t.contains('/') {
            return Err(format!(
                "`{text}` is a URL; write the host name alone (`api.example.com`, optionally `:port`)"
            ));
        }
        // `[::1]:8080`, `[::1]`, `host:port`, `host`.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
                _ => (t.clone(), None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{text}`: `{p}` is not a port"))
            })
            .transpose()?;
        let (host, subdomains) = match host.strip_prefix("*.") {
            Some(h) => (h.to_owned(), true),
            None => (host, false),
        };
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !(name_ok || host.parse::<IpAddr>().is_ok()) || host.contains('*') {
            return Err(format!(
                "`{text}` is not a host name (`api.example.com`, `*.example.com`, an IP address)"
            ));
        }
        Ok(HostPattern {
            host,
            subdomains,
            port,
        })
    }

    /// Whether this entry is exactly the IP address `host` (any port): an
    /// address granted as such.
    pub fn is_address(&self, host: &str) -> bool {
        !self.subdomains
            && host.parse::<IpAddr>().is_ok()
            && self.host
                == host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
    }

    /// Whether every request `other` admits is one this entry admits too
    /// (ports aside where either leaves them open): for checking that a
    /// grant's `private_network` names hosts its `http` grants.
    pub fn covers(&self, other: &HostPattern) -> bool {
        let port = other.port.or(self.port).unwrap_or(0);
        if other.subdomains {
            self.subdomains
                && (other.host == self.host || other.host.ends_with(&format!(".{}", self.host)))
                && self.port.is_none_or(|p| p == port)
        } else {
            self.matches(&other.host, port)
        }
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self.subdomains {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

/// Which granted names may resolve to loopback, private or otherwise
/// non-public addresses (an address granted as such always may).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PrivateNetwork {
    /// None of them: the default.
    #[default]
    No,
    /// Every granted name (`private_network = true`).
    All,
    /// These names only (`private_network = ["intranet.example.com"]`),
    /// so that a public API granted beside them cannot be pointed at the
    /// private network.
    Hosts(Vec<HostPattern>),
}

impl PrivateNetwork {
    pub fn allows(&self, host: &str, port: u16) -> bool {
        match self {
            PrivateNetwork::No => false,
            PrivateNetwork::All => true,
            PrivateNetwork::Hosts(hosts) => hosts.iter().any(|p| p.matches(host, port)),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A secret's name: an environment variable a plugin may read.
pub fn is_secret_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether an address is on the public internet. Loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast, documentation and
/// benchmarking ranges are not; nor are IPv6 unique-local and the IPv4
/// addresses IPv6 can carry (mapped, compatible, NAT64, 6to4) when the
/// IPv4 address is not.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Local-use NAT64 (64:ff9b:1::/48) and IPv4-translated
    // (::ffff:0:a.b.c.d) carry one too.
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || (s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0)
    {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[..4] == [0x100, 0, 0, 0] // discard
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible, ::
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_covers_the_names_it_admits() {
        let p = |t: &str| HostPattern::parse(t).unwrap();
        assert!(p("intranet").covers(&p("intranet")));
        assert!(p("intranet").covers(&p("intranet:8080")));
        assert!(p("*.corp").covers(&p("wiki.corp")) && p("*.corp").covers(&p("*.eu.corp")));
        assert!(!p("wiki.corp").covers(&p("*.corp")));
        assert!(!p("api.example.com").covers(&p("intranet")));
        assert!(!p("intranet:443").covers(&p("intranet:80")));
    }

    #[test]
    fn host_patterns_match_names_ports_and_subdomains() {
        let p = HostPattern::parse("API.Example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(p.matches("api.example.com.", 80));
        assert!(!p.matches("evil-api.example.com", 443));
        assert!(!p.matches("api.example.com.evil.net", 443));
        let p = HostPattern::parse("*.zendesk.com").unwrap();
        assert!(p.matches("acme.zendesk.com", 443));
        assert!(!p.matches("zendesk.com", 443));
        assert!(!p.matches("acmezendesk.com", 443));
        let p = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(p.matches("127.0.0.1", 8080));
        assert!(!p.matches("127.0.0.1", 8081));
        let p = HostPattern::parse("[::1]:8080").unwrap();
        assert!(p.matches("[::1]", 8080));
        for bad in [
            "https://x.com",
            "x.com/path",
            "*",
            "a..b",
            "x.com:0",
            "x.com:http",
            "",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "64:ff9b:1::a00:1",
            "::ffff:0:7f00:1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
