//! Which destinations an outgoing webhook may reach, so a tenant's notification URL cannot make
//! us reach our own network, the cloud metadata service or other internal hosts (SSRF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::ports::DeliveryError;

/// Longer URLs are refused: no receiver needs one, and they bloat stored runs.
const MAX_URL_LEN: usize = 2048;

/// What a notification URL may point at. Checked at submission ([`DestinationPolicy::check_url`]) and
/// again for every resolved address at connection time ([`DestinationPolicy::permits`]), since
/// DNS may answer differently later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Allow `localhost`, `127.0.0.0/8` and `::1`.
    pub allow_loopback: bool,
    /// Allow private networks: `10/8`, `172.16/12`, `192.168/16`, `100.64/10`, `fc00::/7`.
    pub allow_private: bool,
    /// Refuse plain `http`.
    pub require_https: bool,
}

/// How an address is treated by a [`DestinationPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressClass {
    Public,
    Loopback,
    Private,
    /// Never reachable through a policy: link-local (cloud metadata), multicast,
    /// documentation, reserved and other special-purpose ranges.
    Forbidden,
}

impl DestinationPolicy {
    /// https only, public addresses only.
    pub const fn production() -> Self {
        Self { allow_loopback: false, allow_private: false, require_https: true }
    }

    /// For a receiver on the developer's machine: http and loopback allowed, private
    /// networks still refused.
    pub const fn local_development() -> Self {
        Self { allow_loopback: true, allow_private: false, require_https: false }
    }

    /// Checks a notification URL without resolving it: scheme, host, no credentials, and literal
    /// IP hosts against [`Self::permits`]. Host names are checked when connecting.
    pub fn check_url(&self, raw: &str) -> Result<Url, DeliveryError> {
        if raw.len() > MAX_URL_LEN {
            return Err(refused(format!("URL is longer than {MAX_URL_LEN} characters")));
        }
        let url = Url::parse(raw).map_err(|e| refused(format!("not a valid URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if !self.require_https => {}
            "http" => return Err(refused("scheme must be https")),
            _ => return Err(refused("scheme must be http or https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("URL must not contain credentials"));
        }
        let allowed = match url.host() {
            None => return Err(refused("URL has no host")),
            Some(Host::Domain(name)) => !is_localhost_name(name) || self.allow_loopback,
            Some(Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
        };
        if !allowed {
            return Err(refused("host is not a public address"));
        }
        Ok(url)
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        match classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::Private => self.allow_private,
            AddressClass::Forbidden => false,
        }
    }
}

fn refused(reason: impl Into<String>) -> DeliveryError {
    DeliveryError::Refused(reason.into())
}

/// RFC 6761 reserves `localhost` and its subdomains for loopback; resolvers may answer for
/// them without DNS, so they are refused by name, not only by address.
fn is_localhost_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        // Carrier-grade NAT space: internal to a provider's network (Alibaba's metadata
        // service lives here).
        (100, 64..=127, _) => AddressClass::Private,
        // "This network", including the unspecified 0.0.0.0, which connects to the local host.
        (0, _, _) => AddressClass::Forbidden,
        // Link-local, including the AWS/GCP/Azure metadata address 169.254.169.254 and the
        // ECS/Lambda credentials endpoint 169.254.170.2.
        (169, 254, _) => AddressClass::Forbidden,
        // IETF protocol assignments (includes Oracle's metadata 192.0.0.192), documentation
        // (TEST-NET-1/2/3), the deprecated 6to4 relay and benchmarking ranges.
        (192, 0, 0) | (192, 0, 2) | (192, 88, 99) | (198, 51, 100) | (203, 0, 113) => AddressClass::Forbidden,
        (198, 18..=19, _) => AddressClass::Forbidden,
        // Multicast (224/4), reserved (240/4) and the limited broadcast address.
        (224..=255, _, _) => AddressClass::Forbidden,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Forbidden;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // `::ffff:a.b.c.d` reaches the IPv4 address itself, so it gets the same treatment.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        classify_v4(Ipv4Addr::new(a, b, c, d))
    };
    match s {
        // Deprecated IPv4-compatible addresses (::a.b.c.d): nothing legitimate uses them.
        [0, 0, 0, 0, 0, 0, _, _] => AddressClass::Forbidden,
        // NAT64 (64:ff9b::/96) translates to the embedded IPv4 address, which may be private.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded_v4(hi, lo),
        // Local-use NAT64 (64:ff9b:1::/48) only exists inside a private network.
        [0x64, 0xff9b, 1, ..] => AddressClass::Private,
        // 6to4 (2002::/16) embeds an IPv4 address in bits 16..48.
        [0x2002, hi, lo, ..] => match embedded_v4(hi, lo) {
            AddressClass::Public => AddressClass::Public,
            _ => AddressClass::Forbidden,
        },
        // Discard-only (100::/64).
        [0x100, 0, 0, 0, ..] => AddressClass::Forbidden,
        // IETF protocol assignments (2001::/23: Teredo, ORCHID, ...) and documentation
        // (2001:db8::/32, 3fff::/20).
        [0x2001, 0..=0x1ff, ..] | [0x2001, 0xdb8, ..] => AddressClass::Forbidden,
        [0x3fff, 0..=0x0fff, ..] => AddressClass::Forbidden,
        // The AWS instance metadata and DNS services (fd00:ec2::254, ::253) sit in ULA space
        // but must stay unreachable even when private networks are allowed.
        [0xfd00, 0x0ec2, ..] => AddressClass::Forbidden,
        // Unique local (fc00::/7) and deprecated site-local (fec0::/10).
        [0xfc00..=0xfdff, ..] | [0xfec0..=0xfeff, ..] => AddressClass::Private,
        // Link-local (fe80::/10).
        [0xfe80..=0xfebf, ..] => AddressClass::Forbidden,
        // Multicast (ff00::/8).
        [0xff00..=0xffff, ..] => AddressClass::Forbidden,
        _ => AddressClass::Public,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const EVERYTHING: DestinationPolicy =
        DestinationPolicy { allow_loopback: true, allow_private: true, require_https: false };

    fn permitted(policy: DestinationPolicy, ip: &str) -> bool {
        policy.permits(ip.parse().unwrap())
    }

    fn refused_by_production(ips: &[&str]) {
        for ip in ips {
            assert!(!permitted(DestinationPolicy::production(), ip), "{ip} should be refused");
        }
    }

    fn refused_by_every_policy(ips: &[&str]) {
        for ip in ips {
            assert!(!permitted(EVERYTHING, ip), "{ip} should always be refused");
        }
    }

    #[test]
    fn public_addresses_are_permitted() {
        for ip in
            ["93.184.216.34", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "2a00:1450::1"]
        {
            assert!(permitted(DestinationPolicy::production(), ip), "{ip} should be permitted");
        }
    }

    #[test]
    fn loopback_needs_allow_loopback() {
        let loopback = ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"];
        refused_by_production(&loopback);
        for ip in loopback {
            assert!(permitted(DestinationPolicy::local_development(), ip), "{ip}");
        }
    }

    #[test]
    fn private_networks_need_allow_private() {
        let private = [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:10.1.2.3",
            "64:ff9b::a01:203",
        ];
        refused_by_production(&private);
        for ip in private {
            assert!(!permitted(DestinationPolicy::local_development(), ip), "{ip}");
            assert!(permitted(EVERYTHING, ip), "{ip}");
        }
    }

    #[test]
    fn link_local_and_metadata_are_always_refused() {
        refused_by_every_policy(&[
            "169.254.169.254",
            "169.254.170.2",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ]);
    }

    #[test]
    fn unspecified_broadcast_and_multicast_are_always_refused() {
        refused_by_every_policy(&[
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "::",
            "ff02::1",
            "ff05::2",
        ]);
    }

    #[test]
    fn documentation_and_special_ranges_are_always_refused() {
        refused_by_every_policy(&[
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.0.0.192",
            "198.18.0.1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "100::1",
            "::7f00:1",
        ]);
    }

    #[test]
    fn embedded_ipv4_forms_follow_the_ipv4_rules() {
        refused_by_production(&[
            "::ffff:127.0.0.1",
            "::ffff:192.168.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a00:1::",
        ]);
        assert!(permitted(DestinationPolicy::production(), "::ffff:8.8.8.8"));
        assert!(permitted(DestinationPolicy::production(), "64:ff9b::808:808"));
        assert!(permitted(DestinationPolicy::production(), "2002:808:808::1"));
    }

    #[test]
    fn production_urls() {
        let policy = DestinationPolicy::production();
        assert_eq!(policy.check_url("https://example.com/hook?x=1").unwrap().host_str(), Some("example.com"));
        for bad in [
            "http://example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "not a url",
            "https://",
            "data:text/plain,hello",
        ] {
            assert!(matches!(policy.check_url(bad), Err(DeliveryError::Refused(_))), "{bad} should be refused");
        }
    }

    #[test]
    fn local_development_urls() {
        let policy = DestinationPolicy::local_development();
        for good in
            ["http://localhost:8080/hook", "http://127.0.0.1:3000/", "http://[::1]:3000/", "https://example.com/"]
        {
            assert!(policy.check_url(good).is_ok(), "{good} should be accepted");
        }
        for bad in ["http://10.0.0.5/", "http://169.254.169.254/", "http://u:p@localhost/"] {
            assert!(matches!(policy.check_url(bad), Err(DeliveryError::Refused(_))), "{bad} should be refused");
        }
    }

    #[test]
    fn refusals_do_not_echo_credentials() {
        let err = DestinationPolicy::production().check_url("https://user:hunter2@example.com/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn overlong_urls_are_refused() {
        let url = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(DestinationPolicy::production().check_url(&url).is_err());
    }
}
