//! WS-Discovery (the 2005/04 version ONVIF uses), so NVRs and Home Assistant find the
//! camera by themselves: a `Probe` multicast to 239.255.255.250:3702 is answered with a
//! `ProbeMatch` (types `dn:NetworkVideoTransmitter tds:Device`, the camera's scopes, the
//! device service's address on each interface), a `Hello` is sent at start and a `Bye`
//! at stop. The messages are pure functions below; `run` is the socket.

use quick_xml::escape::escape;
use quick_xml::events::Event;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
pub const PORT: u16 = 3702;
const DISCOVERY_NS: &str = "http://schemas.xmlsoap.org/ws/2005/04/discovery";

/// Who we are to discovery.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `urn:uuid:…`, the same across restarts.
    pub endpoint: String,
    pub scopes: Vec<String>,
    /// The device service's URL on each address.
    pub xaddrs: Vec<String>,
}

/// What a Probe asks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub message_id: String,
    /// Local names of the types asked for (empty: any).
    pub types: Vec<String>,
    pub scopes: Vec<String>,
}

/// Reads a Probe; anything else (a Hello of another device, a ProbeMatch, garbage) is
/// `None` and ignored.
pub fn parse_probe(datagram: &[u8]) -> Option<Probe> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut reader = quick_xml::NsReader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut probe = Probe::default();
    let mut is_probe = false;
    let mut reading: Option<&'static str> = None;
    loop {
        match reader.read_resolved_event().ok()? {
            (ns, Event::Start(e)) | (ns, Event::Empty(e)) => {
                let local = e.local_name();
                let in_discovery = matches!(ns, quick_xml::name::ResolveResult::Bound(n) if n.as_ref() == DISCOVERY_NS.as_bytes());
                reading = match local.as_ref() {
                    b"MessageID" => Some("id"),
                    b"Types" if in_discovery => Some("types"),
                    b"Scopes" if in_discovery => Some("scopes"),
                    b"Probe" if in_discovery => {
                        is_probe = true;
                        None
                    }
                    _ => None,
                };
            }
            (_, Event::Text(t)) => {
                let value = t.decode().ok()?.trim().to_string();
                match reading {
                    Some("id") => probe.message_id = value,
                    Some("types") => {
                        probe.types = value
                            .split_whitespace()
                            .map(|q| q.rsplit(':').next().unwrap_or(q).to_string())
                            .collect()
                    }
                    Some("scopes") => {
                        probe.scopes = value.split_whitespace().map(str::to_string).collect()
                    }
                    _ => {}
                }
            }
            (_, Event::End(_)) => reading = None,
            (_, Event::Eof) => break,
            _ => {}
        }
    }
    is_probe.then_some(probe)
}

/// Whether the probe asks for a device like this one: its types (any of
/// NetworkVideoTransmitter, Device) and every scope a prefix of one of ours (RFC 2396
/// matching, by path segments).
pub fn matches(probe: &Probe, id: &Identity) -> bool {
    let types_ok = probe.types.is_empty()
        || probe
            .types
            .iter()
            .any(|t| t == "NetworkVideoTransmitter" || t == "Device");
    let scopes_ok = probe.scopes.iter().all(|want| {
        let want = want.trim_end_matches('/');
        id.scopes
            .iter()
            .any(|have| have == want || have.starts_with(&format!("{want}/")))
    });
    types_ok && scopes_ok
}

/// A message id of our own (`urn:uuid:`), different each call.
pub fn message_id(seed: &str) -> String {
    use sha2::Digest;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    uuid_from(&sha2::Sha256::digest(format!("{seed}/{n}/{nanos}")))
}

/// A UUID (version 4 layout) from 16+ bytes of a hash.
pub fn uuid_from(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn envelope(action: &str, to: &str, relates_to: Option<&str>, seed: &str, body: &str) -> String {
    let relates = relates_to
        .map(|r| format!("<a:RelatesTo>{}</a:RelatesTo>", escape(r)))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:d=\"{DISCOVERY_NS}\" \
         xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\" xmlns:tds=\"http://www.onvif.org/ver10/device/wsdl\">\
         <s:Header><a:MessageID>{}</a:MessageID>{relates}<a:To>{to}</a:To>\
         <a:Action>{DISCOVERY_NS}/{action}</a:Action></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        message_id(seed)
    )
}

fn description(id: &Identity) -> String {
    let scopes: Vec<String> = id
        .scopes
        .iter()
        .map(|s| escape(s.as_str()).into_owned())
        .collect();
    let xaddrs: Vec<String> = id
        .xaddrs
        .iter()
        .map(|s| escape(s.as_str()).into_owned())
        .collect();
    format!(
        "<a:EndpointReference><a:Address>{}</a:Address></a:EndpointReference>\
         <d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types><d:Scopes>{}</d:Scopes>\
         <d:XAddrs>{}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>",
        escape(id.endpoint.as_str()),
        scopes.join(" "),
        xaddrs.join(" ")
    )
}

/// The answer to `probe`.
pub fn probe_match(probe: &Probe, id: &Identity) -> String {
    envelope(
        "ProbeMatches",
        "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous",
        Some(&probe.message_id),
        &id.endpoint,
        &format!(
            "<d:ProbeMatches><d:ProbeMatch>{}</d:ProbeMatch></d:ProbeMatches>",
            description(id)
        ),
    )
}

/// Announces the camera.
pub fn hello(id: &Identity) -> String {
    envelope(
        "Hello",
        "urn:schemas-xmlsoap-org:ws:2005:04:discovery",
        None,
        &id.endpoint,
        &format!("<d:Hello>{}</d:Hello>", description(id)),
    )
}

/// Says it is leaving.
pub fn bye(id: &Identity) -> String {
    envelope(
        "Bye",
        "urn:schemas-xmlsoap-org:ws:2005:04:discovery",
        None,
        &id.endpoint,
        &format!(
            "<d:Bye><a:EndpointReference><a:Address>{}</a:Address></a:EndpointReference></d:Bye>",
            escape(id.endpoint.as_str())
        ),
    )
}

/// The multicast socket: port 3702 shared with other listeners on the machine, the
/// group joined on every IPv4 address given.
fn socket(addresses: &[Ipv4Addr]) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    let mut joined = 0;
    for a in addresses {
        if s.join_multicast_v4(&GROUP, a).is_ok() {
            joined += 1;
        }
    }
    if joined == 0 {
        s.join_multicast_v4(&GROUP, &Ipv4Addr::UNSPECIFIED)?;
    }
    s.set_multicast_loop_v4(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Answers probes until `stop`, with a Hello first and a Bye last. `addresses`: the
/// IPv4 addresses to listen on and to send from; `identity(addr)`: our description for
/// a prober at `addr` (its XAddrs reachable from there).
pub async fn run(
    addresses: Vec<Ipv4Addr>,
    identity: impl Fn(Option<Ipv4Addr>) -> Identity + Send,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let sock = socket(&addresses)?;
    let group = SocketAddr::from(SocketAddrV4::new(GROUP, PORT));
    let announce = |text: String| {
        let sock = &sock;
        let addresses = &addresses;
        async move {
            for a in addresses {
                let _ = socket2::SockRef::from(sock).set_multicast_if_v4(a);
                let _ = sock.send_to(text.as_bytes(), group).await;
            }
        }
    };
    announce(hello(&identity(None))).await;
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            got = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let Some(probe) = parse_probe(&buf[..n]) else { continue };
                let from_v4 = match from { SocketAddr::V4(a) => Some(*a.ip()), SocketAddr::V6(_) => None };
                let id = identity(from_v4);
                if matches(&probe, &id) {
                    let _ = sock.send_to(probe_match(&probe, &id).as_bytes(), from).await;
                }
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    announce(bye(&identity(None))).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            endpoint: uuid_from(&[7u8; 32]),
            scopes: vec![
                "onvif://www.onvif.org/type/video_encoder".into(),
                "onvif://www.onvif.org/name/Front%20door".into(),
            ],
            xaddrs: vec!["http://192.168.1.20:8080/onvif/device_service".into()],
        }
    }

    const PROBE: &str = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
        xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" \
        xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\"><s:Header><a:MessageID>uuid:probe-1</a:MessageID>\
        <a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action></s:Header>\
        <s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>";

    #[test]
    fn a_probe_for_video_transmitters_is_matched() {
        let p = parse_probe(PROBE.as_bytes()).expect("a probe");
        assert_eq!(p.message_id, "uuid:probe-1");
        assert_eq!(p.types, ["NetworkVideoTransmitter"]);
        assert!(matches(&p, &id()));
        let answer = probe_match(&p, &id());
        assert!(
            answer.contains("<a:RelatesTo>uuid:probe-1</a:RelatesTo>"),
            "{answer}"
        );
        assert!(answer.contains("dn:NetworkVideoTransmitter tds:Device"));
        assert!(
            answer.contains("<d:XAddrs>http://192.168.1.20:8080/onvif/device_service</d:XAddrs>")
        );
        assert!(hello(&id()).contains("<d:Hello>") && bye(&id()).contains("<d:Bye>"));
    }

    #[test]
    fn other_types_scopes_and_messages_are_not_answered() {
        let printer = PROBE.replace("dn:NetworkVideoTransmitter", "dn:Printer");
        assert!(!matches(&parse_probe(printer.as_bytes()).unwrap(), &id()));
        let mut p = parse_probe(PROBE.as_bytes()).unwrap();
        p.scopes = vec!["onvif://www.onvif.org/name".into()];
        assert!(matches(&p, &id()), "a scope prefix matches");
        p.scopes = vec!["onvif://www.onvif.org/name/Back".into()];
        assert!(!matches(&p, &id()));
        assert!(
            parse_probe(hello(&id()).as_bytes()).is_none(),
            "our own Hello"
        );
        for junk in [&b""[..], b"\xff\xfe", b"<x>", b"<<<"] {
            assert!(parse_probe(junk).is_none());
        }
    }

    #[test]
    fn message_ids_differ_and_uuids_have_the_v4_layout() {
        assert_ne!(message_id("a"), message_id("a"));
        let u = uuid_from(&[0xffu8; 16]);
        assert_eq!(u, "urn:uuid:ffffffff-ffff-4fff-bfff-ffffffffffff");
    }
}
