//! ONVIF Profile S, the part NVRs and Home Assistant use to add a camera without typing
//! its URLs: the device service (`/onvif/device_service`: clock, identity, network
//! interfaces, capabilities, services, scopes, hostname) and the media service
//! (`/onvif/media_service`: the main and sub profiles, both H.264, their stream URIs and
//! the snapshot URI). SOAP 1.2; requests are read with a real XML parser, answers are
//! written from templates whose every value is escaped. Pure: the HTTP handler in `web`
//! gives it the request body and what the device is, and sends back what it returns.

use crate::nvr_credentials::UsernameToken;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use std::time::{SystemTime, UNIX_EPOCH};

/// Requests larger than this are refused before parsing (a real one is about 2 KB).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

const DEVICE_NS: &str = "http://www.onvif.org/ver10/device/wsdl";
const MEDIA_NS: &str = "http://www.onvif.org/ver10/media/wsdl";

/// One stream's numbers, as its profile tells them.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub gov_length: u32,
    /// Its RTSP path (`/stream`, `/sub`).
    pub path: &'static str,
}

/// A network interface for `GetNetworkInterfaces`.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub ipv4: Option<(String, u8)>,
}

/// What the device is, for the answers.
#[derive(Debug, Clone)]
pub struct Device {
    /// How the client reached us (`host` or `host:port`), for the addresses we hand out.
    pub http_host: String,
    /// The host part alone, for the RTSP URI.
    pub host: String,
    pub rtsp_port: Option<u16>,
    pub name: String,
    pub hostname: String,
    pub model: String,
    pub firmware: String,
    pub serial: String,
    pub hardware: String,
    pub main: StreamInfo,
    pub sub: StreamInfo,
    pub interfaces: Vec<Interface>,
    pub now: SystemTime,
}

/// A SOAP fault: who is at fault (`Sender`/`Receiver`), the ONVIF subcode and a reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub sender: bool,
    pub subcode: &'static str,
    pub reason: String,
}

impl Fault {
    fn sender(subcode: &'static str, reason: impl Into<String>) -> Self {
        Self {
            sender: true,
            subcode,
            reason: reason.into(),
        }
    }

    /// The HTTP status SOAP 1.2 gives it.
    pub fn http_status(&self) -> u16 {
        if self.sender { 400 } else { 500 }
    }
}

/// The operation a request asks for: the Body's first element, and the text of the
/// tokens it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub operation: String,
    pub namespace: String,
    pub profile_token: Option<String>,
    pub configuration_token: Option<String>,
    /// The WS-Security UsernameToken in the SOAP Header, if any.
    pub token: Option<UsernameToken>,
}

/// Operations anyone may ask, before logging in (ONVIF's PRE_AUTH access class): a
/// client needs the clock to make its digest and the services to know where to go.
pub fn pre_auth(operation: &str) -> bool {
    matches!(
        operation,
        "GetSystemDateAndTime"
            | "GetCapabilities"
            | "GetServices"
            | "GetServiceCapabilities"
            | "GetWsdlUrl"
            | "GetEndpointReference"
    )
}

/// The fault for a request without a credential that lets it in.
pub fn not_authorized(reason: impl Into<String>) -> Fault {
    Fault::sender("ter:NotAuthorized", reason)
}

/// What the text being read belongs to.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    Profile,
    Configuration,
    Username,
    Password,
    Nonce,
    Created,
}

/// Reads a SOAP envelope. Anything that is not one is the sender's fault.
pub fn parse(body: &[u8]) -> Result<Request, Fault> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(Fault::sender(
            "ter:InvalidArgVal",
            "the request is too large",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Fault::sender("ter:InvalidArgVal", "the request is not UTF-8"))?;
    let mut reader = quick_xml::NsReader::from_str(text);
    reader.config_mut().trim_text(true);
    // Depth of the Body element once seen; the operation is its first child.
    let mut body_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut request: Option<Request> = None;
    let mut reading: Option<Field> = None;
    let mut token: Option<UsernameToken> = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| Fault::sender("ter:WellFormed", format!("not well-formed XML: {e}")))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            match (body_depth, &request) {
                (None, _) if local == "Body" && !empty => body_depth = Some(depth),
                (None, _) if local == "UsernameToken" => token = Some(UsernameToken::default()),
                (None, _) if token.is_some() && !empty => {
                    reading = match local.as_str() {
                        "Username" => Some(Field::Username),
                        "Password" => {
                            let digest = e.attributes().flatten().any(|a| {
                                a.key.local_name().as_ref() == b"Type"
                                    && a.value.ends_with(b"#PasswordDigest")
                            });
                            if let Some(t) = token.as_mut() {
                                t.digest = digest;
                            }
                            Some(Field::Password)
                        }
                        "Nonce" => Some(Field::Nonce),
                        "Created" => Some(Field::Created),
                        _ => None,
                    };
                }
                (Some(b), None) if depth == b + 1 => {
                    let namespace = match ns {
                        quick_xml::name::ResolveResult::Bound(n) => {
                            String::from_utf8_lossy(n.as_ref()).into_owned()
                        }
                        _ => String::new(),
                    };
                    request = Some(Request {
                        operation: local,
                        namespace,
                        profile_token: None,
                        configuration_token: None,
                        token: token.take(),
                    });
                }
                (Some(_), Some(_)) if !empty => {
                    reading = match local.as_str() {
                        "ProfileToken" => Some(Field::Profile),
                        "ConfigurationToken" => Some(Field::Configuration),
                        _ => None,
                    };
                }
                _ => {}
            }
            if !empty {
                depth += 1;
            }
            continue;
        }
        match event {
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                reading = None;
            }
            Event::Text(t) => {
                let Some(field) = reading else { continue };
                let value = t.decode().map(|c| c.trim().to_string()).unwrap_or_default();
                match (field, request.as_mut(), token.as_mut()) {
                    (Field::Profile, Some(r), _) => r.profile_token = Some(value),
                    (Field::Configuration, Some(r), _) => r.configuration_token = Some(value),
                    (Field::Username, None, Some(t)) => t.username = value,
                    (Field::Password, None, Some(t)) => t.password = value,
                    (Field::Nonce, None, Some(t)) => t.nonce = Some(value),
                    (Field::Created, None, Some(t)) => t.created = Some(value),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    request.ok_or_else(|| Fault::sender("ter:InvalidArgVal", "no SOAP Body with an operation"))
}

/// The answer to `request`: the SOAP envelope's Body content, or a fault.
pub fn respond(request: &Request, d: &Device) -> Result<String, Fault> {
    let device = request.namespace == DEVICE_NS || request.namespace.is_empty();
    let media = request.namespace == MEDIA_NS || request.namespace.is_empty();
    let op = request.operation.as_str();
    let e = |s: &str| escape(s).into_owned();
    let device_xaddr = format!("http://{}/onvif/device_service", e(&d.http_host));
    let media_xaddr = format!("http://{}/onvif/media_service", e(&d.http_host));
    let body = match op {
        "GetSystemDateAndTime" if device => {
            let (y, mo, da, h, mi, s) = civil_utc(d.now);
            format!(
                "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>\
                 <tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>\
                 <tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime>\
                 <tt:Time><tt:Hour>{h}</tt:Hour><tt:Minute>{mi}</tt:Minute><tt:Second>{s}</tt:Second></tt:Time>\
                 <tt:Date><tt:Year>{y}</tt:Year><tt:Month>{mo}</tt:Month><tt:Day>{da}</tt:Day></tt:Date>\
                 </tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
            )
        }
        "GetCapabilities" if device => format!(
            "<tds:GetCapabilitiesResponse><tds:Capabilities>\
             <tt:Device><tt:XAddr>{device_xaddr}</tt:XAddr>\
             <tt:Network><tt:IPFilter>false</tt:IPFilter><tt:ZeroConfiguration>false</tt:ZeroConfiguration>\
             <tt:IPVersion6>false</tt:IPVersion6><tt:DynDNS>false</tt:DynDNS></tt:Network>\
             <tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve><tt:DiscoveryBye>false</tt:DiscoveryBye>\
             <tt:RemoteDiscovery>false</tt:RemoteDiscovery><tt:SystemBackup>false</tt:SystemBackup>\
             <tt:SystemLogging>false</tt:SystemLogging><tt:FirmwareUpgrade>false</tt:FirmwareUpgrade>\
             <tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>5</tt:Minor></tt:SupportedVersions></tt:System>\
             <tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2>\
             <tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration><tt:AccessPolicyConfig>false</tt:AccessPolicyConfig>\
             <tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>false</tt:SAMLToken>\
             <tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false</tt:RELToken></tt:Security></tt:Device>\
             <tt:Media><tt:XAddr>{media_xaddr}</tt:XAddr><tt:StreamingCapabilities>\
             <tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>\
             </tt:StreamingCapabilities></tt:Media>\
             </tds:Capabilities></tds:GetCapabilitiesResponse>"
        ),
        "GetServices" if device => {
            let service = |ns: &str, xaddr: &str| {
                format!(
                    "<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{xaddr}</tds:XAddr>\
                     <tds:Version><tt:Major>2</tt:Major><tt:Minor>5</tt:Minor></tds:Version></tds:Service>"
                )
            };
            format!(
                "<tds:GetServicesResponse>{}{}</tds:GetServicesResponse>",
                service(DEVICE_NS, &device_xaddr),
                service(MEDIA_NS, &media_xaddr)
            )
        }
        "GetServiceCapabilities" if request.namespace == MEDIA_NS => {
            "<trt:GetServiceCapabilitiesResponse><trt:Capabilities SnapshotUri=\"true\" Rotation=\"false\" \
             VideoSourceMode=\"false\" OSD=\"false\"><trt:ProfileCapabilities MaximumNumberOfProfiles=\"2\"/>\
             <trt:StreamingCapabilities RTPMulticast=\"false\" RTP_TCP=\"true\" RTP_RTSP_TCP=\"true\" \
             NonAggregateControl=\"false\" NoRTSPStreaming=\"false\"/></trt:Capabilities>\
             </trt:GetServiceCapabilitiesResponse>"
                .to_string()
        }
        "GetServiceCapabilities" if device => "<tds:GetServiceCapabilitiesResponse><tds:Capabilities>\
             <tds:Network IPFilter=\"false\" ZeroConfiguration=\"false\" IPVersion6=\"false\" DynDNS=\"false\"/>\
             <tds:Security TLS1.2=\"false\" UsernameToken=\"false\" HttpDigest=\"false\"/>\
             <tds:System DiscoveryResolve=\"false\" DiscoveryBye=\"false\" RemoteDiscovery=\"false\" \
             SystemBackup=\"false\" SystemLogging=\"false\" FirmwareUpgrade=\"false\"/>\
             </tds:Capabilities></tds:GetServiceCapabilitiesResponse>"
            .to_string(),
        "GetDeviceInformation" if device => format!(
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>edgecam</tds:Manufacturer>\
             <tds:Model>{}</tds:Model><tds:FirmwareVersion>{}</tds:FirmwareVersion>\
             <tds:SerialNumber>{}</tds:SerialNumber><tds:HardwareId>{}</tds:HardwareId>\
             </tds:GetDeviceInformationResponse>",
            e(&d.model),
            e(&d.firmware),
            e(&d.serial),
            e(&d.hardware)
        ),
        "GetNetworkInterfaces" if device => {
            let mut out = String::from("<tds:GetNetworkInterfacesResponse>");
            for i in &d.interfaces {
                let ipv4 = match &i.ipv4 {
                    Some((addr, prefix)) => format!(
                        "<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual>\
                         <tt:Address>{}</tt:Address><tt:PrefixLength>{prefix}</tt:PrefixLength>\
                         </tt:Manual><tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>",
                        e(addr)
                    ),
                    None => String::new(),
                };
                out.push_str(&format!(
                    "<tds:NetworkInterfaces token=\"{}\"><tt:Enabled>true</tt:Enabled><tt:Info>\
                     <tt:Name>{}</tt:Name><tt:HwAddress>{}</tt:HwAddress><tt:MTU>1500</tt:MTU>\
                     </tt:Info>{ipv4}</tds:NetworkInterfaces>",
                    e(&i.name),
                    e(&i.name),
                    e(&i.mac)
                ));
            }
            out.push_str("</tds:GetNetworkInterfacesResponse>");
            out
        }
        "GetScopes" if device => {
            let items: String = scopes(&d.name, &d.hardware)
                .iter()
                .map(|item| {
                    format!(
                        "<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{}</tt:ScopeItem></tds:Scopes>",
                        e(item)
                    )
                })
                .collect();
            format!("<tds:GetScopesResponse>{items}</tds:GetScopesResponse>")
        }
        "GetHostname" if device => format!(
            "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP>\
             <tt:Name>{}</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>",
            e(&d.hostname)
        ),
        "GetProfiles" if media => format!(
            "<trt:GetProfilesResponse>{}{}</trt:GetProfilesResponse>",
            profile("Profiles", "main", d),
            profile("Profiles", "sub", d)
        ),
        "GetProfile" if media => {
            let token = profile_token(request)?;
            format!(
                "<trt:GetProfileResponse>{}</trt:GetProfileResponse>",
                profile("Profile", token, d)
            )
        }
        "GetVideoSources" if media => format!(
            "<trt:GetVideoSourcesResponse><trt:VideoSources token=\"camera\"><tt:Framerate>{}</tt:Framerate>\
             <tt:Resolution><tt:Width>{}</tt:Width><tt:Height>{}</tt:Height></tt:Resolution>\
             </trt:VideoSources></trt:GetVideoSourcesResponse>",
            d.main.fps, d.main.width, d.main.height
        ),
        "GetVideoEncoderConfigurations" if media => format!(
            "<trt:GetVideoEncoderConfigurationsResponse>{}{}</trt:GetVideoEncoderConfigurationsResponse>",
            encoder("Configurations", "main", &d.main),
            encoder("Configurations", "sub", &d.sub)
        ),
        "GetVideoEncoderConfiguration" if media => {
            let token = request.configuration_token.as_deref().unwrap_or_default();
            let stream = stream_of(token, d)
                .ok_or_else(|| Fault::sender("ter:NoConfig", "no such configuration"))?;
            format!(
                "<trt:GetVideoEncoderConfigurationResponse>{}</trt:GetVideoEncoderConfigurationResponse>",
                encoder("Configuration", token, stream)
            )
        }
        "GetStreamUri" if media => {
            let token = profile_token(request)?;
            let stream = stream_of(token, d).ok_or_else(no_profile)?;
            let port = d.rtsp_port.ok_or_else(|| Fault {
                sender: false,
                subcode: "ter:ActionNotSupported",
                reason: "RTSP is off on this camera (rtsp.listen is empty)".into(),
            })?;
            media_uri("GetStreamUri", &format!("rtsp://{}:{port}{}", e(&d.host), stream.path))
        }
        "GetSnapshotUri" if media => {
            let token = profile_token(request)?;
            stream_of(token, d).ok_or_else(no_profile)?;
            media_uri("GetSnapshotUri", &format!("http://{}/snapshot.jpg", e(&d.http_host)))
        }
        _ => {
            return Err(Fault::sender(
                "ter:ActionNotSupported",
                format!("{} is not supported by this camera", brief(op)),
            ));
        }
    };
    Ok(body)
}

/// A whole SOAP 1.2 envelope around `body`.
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:tds=\"{DEVICE_NS}\" xmlns:trt=\"{MEDIA_NS}\" \
         xmlns:tt=\"http://www.onvif.org/ver10/schema\" \
         xmlns:ter=\"http://www.onvif.org/ver10/error\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// A fault as its envelope's Body content.
pub fn fault_body(f: &Fault) -> String {
    format!(
        "<soap:Fault><soap:Code><soap:Value>soap:{}</soap:Value><soap:Subcode>\
         <soap:Value>{}</soap:Value></soap:Subcode></soap:Code><soap:Reason>\
         <soap:Text xml:lang=\"en\">{}</soap:Text></soap:Reason></soap:Fault>",
        if f.sender { "Sender" } else { "Receiver" },
        f.subcode,
        escape(f.reason.as_str())
    )
}

fn no_profile() -> Fault {
    Fault::sender("ter:NoProfile", "no such profile (main or sub)")
}

fn profile_token(request: &Request) -> Result<&str, Fault> {
    request
        .profile_token
        .as_deref()
        .ok_or_else(|| Fault::sender("ter:InvalidArgVal", "a ProfileToken is needed"))
}

fn stream_of<'d>(token: &str, d: &'d Device) -> Option<&'d StreamInfo> {
    match token {
        "main" => Some(&d.main),
        "sub" => Some(&d.sub),
        _ => None,
    }
}

fn encoder(element: &str, token: &str, s: &StreamInfo) -> String {
    format!(
        "<trt:{element} token=\"{token}\"><tt:Name>{token}</tt:Name><tt:UseCount>1</tt:UseCount>\
         <tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>{}</tt:Width><tt:Height>{}</tt:Height>\
         </tt:Resolution><tt:Quality>5</tt:Quality><tt:RateControl><tt:FrameRateLimit>{}</tt:FrameRateLimit>\
         <tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>{}</tt:BitrateLimit></tt:RateControl>\
         <tt:H264><tt:GovLength>{}</tt:GovLength><tt:H264Profile>Baseline</tt:H264Profile></tt:H264>\
         <tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address>\
         <tt:Port>0</tt:Port><tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>\
         <tt:SessionTimeout>PT60S</tt:SessionTimeout></trt:{element}>",
        s.width, s.height, s.fps, s.bitrate_kbps, s.gov_length
    )
}

fn profile(element: &str, token: &str, d: &Device) -> String {
    let Some(s) = stream_of(token, d) else {
        return String::new();
    };
    let enc = encoder("X", token, s)
        .replace("<trt:X ", "<tt:VideoEncoderConfiguration ")
        .replace("</trt:X>", "</tt:VideoEncoderConfiguration>");
    format!(
        "<trt:{element} token=\"{token}\" fixed=\"true\"><tt:Name>{token}</tt:Name>\
         <tt:VideoSourceConfiguration token=\"camera\"><tt:Name>camera</tt:Name><tt:UseCount>2</tt:UseCount>\
         <tt:SourceToken>camera</tt:SourceToken><tt:Bounds x=\"0\" y=\"0\" width=\"{}\" height=\"{}\"/>\
         </tt:VideoSourceConfiguration>{enc}</trt:{element}>",
        d.main.width, d.main.height
    )
}

fn media_uri(operation: &str, uri: &str) -> String {
    format!(
        "<trt:{operation}Response><trt:MediaUri><tt:Uri>{uri}</tt:Uri>\
         <tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>\
         <tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>\
         </trt:MediaUri></trt:{operation}Response>"
    )
}

/// The camera's scopes: what it is, its name and its hardware (also what discovery
/// announces).
pub fn scopes(name: &str, hardware: &str) -> Vec<String> {
    vec![
        "onvif://www.onvif.org/type/video_encoder".into(),
        "onvif://www.onvif.org/Profile/Streaming".into(),
        format!("onvif://www.onvif.org/name/{}", percent(name)),
        format!("onvif://www.onvif.org/hardware/{}", percent(hardware)),
    ]
}

/// A scope item's text: spaces and the like percent-encoded, as ONVIF scopes are URIs.
fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A client's operation name, cut short for the fault text.
fn brief(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Year, month, day, hour, minute, second in UTC (the civil calendar from days since
/// 1970, Howard Hinnant's algorithm).
pub fn civil_utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn device() -> Device {
        let stream = |w, h, fps, path| StreamInfo {
            width: w,
            height: h,
            fps,
            bitrate_kbps: 2000,
            gov_length: 60,
            path,
        };
        Device {
            http_host: "192.168.1.20:8080".into(),
            host: "192.168.1.20".into(),
            rtsp_port: Some(8554),
            name: "Front door".into(),
            hostname: "edgecam".into(),
            model: "edgecam".into(),
            firmware: "0.1.0".into(),
            serial: "00000000c0ffee".into(),
            hardware: "Raspberry Pi 4 Model B".into(),
            main: stream(1280, 720, 30, "/stream"),
            sub: stream(640, 360, 10, "/sub"),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "dc:a6:32:00:00:01".into(),
                ipv4: Some(("192.168.1.20".into(), 24)),
            }],
            now: UNIX_EPOCH + Duration::from_secs(1_796_083_200 + 3_723),
        }
    }

    fn soap(ns: &str, op: &str, inner: &str) -> Vec<u8> {
        format!(
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\">\
             <s:Header/><s:Body><x:{op} xmlns:x=\"{ns}\" xmlns:tt=\"http://www.onvif.org/ver10/schema\">{inner}</x:{op}></s:Body></s:Envelope>"
        )
        .into_bytes()
    }

    #[test]
    fn a_username_token_is_read_from_the_header() {
        // As zeep (Home Assistant's onvif-zeep-async) writes it.
        let body = format!(
            "<soap-env:Envelope xmlns:soap-env=\"http://www.w3.org/2003/05/soap-envelope\">\
             <soap-env:Header><wsse:Security xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\">\
             <wsse:UsernameToken><wsse:Username>viewer</wsse:Username>\
             <wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest\">tuOSpGlFlIXsozq4HFNeeGeFLEI=</wsse:Password>\
             <wsse:Nonce EncodingType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary\">LKqI6G/AikKCQrN0zqZFlg==</wsse:Nonce>\
             <wsu:Created xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\">2010-09-16T07:50:45Z</wsu:Created>\
             </wsse:UsernameToken></wsse:Security></soap-env:Header>\
             <soap-env:Body><ns0:GetProfiles xmlns:ns0=\"{MEDIA_NS}\"/></soap-env:Body></soap-env:Envelope>"
        );
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.operation, "GetProfiles");
        let t = r.token.expect("a token");
        assert_eq!(t.username, "viewer");
        assert!(t.digest);
        assert_eq!(t.password, "tuOSpGlFlIXsozq4HFNeeGeFLEI=");
        assert_eq!(t.nonce.as_deref(), Some("LKqI6G/AikKCQrN0zqZFlg=="));
        assert_eq!(t.created.as_deref(), Some("2010-09-16T07:50:45Z"));
        // No header, no token; the clock may be asked without one.
        assert_eq!(
            parse(&soap(DEVICE_NS, "GetHostname", "")).unwrap().token,
            None
        );
        assert!(pre_auth("GetSystemDateAndTime") && !pre_auth("GetStreamUri"));
    }

    #[test]
    fn the_operation_and_its_tokens_are_read_from_the_body() {
        let r = parse(&soap(
            MEDIA_NS,
            "GetStreamUri",
            "<x:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream></x:StreamSetup><x:ProfileToken> sub </x:ProfileToken>",
        ))
        .unwrap();
        assert_eq!(r.operation, "GetStreamUri");
        assert_eq!(r.namespace, MEDIA_NS);
        assert_eq!(r.profile_token.as_deref(), Some("sub"));
        let uri = respond(&r, &device()).unwrap();
        assert!(
            uri.contains("<tt:Uri>rtsp://192.168.1.20:8554/sub</tt:Uri>"),
            "{uri}"
        );
        let r = parse(&soap(DEVICE_NS, "GetDeviceInformation", "")).unwrap();
        let info = respond(&r, &device()).unwrap();
        assert!(
            info.contains("<tds:SerialNumber>00000000c0ffee</tds:SerialNumber>"),
            "{info}"
        );
    }

    #[test]
    fn profiles_are_h264_at_their_real_sizes() {
        let r = parse(&soap(MEDIA_NS, "GetProfiles", "")).unwrap();
        let p = respond(&r, &device()).unwrap();
        assert_eq!(p.matches("<tt:Encoding>H264</tt:Encoding>").count(), 2);
        assert!(
            p.contains("<tt:Width>1280</tt:Width><tt:Height>720</tt:Height>"),
            "{p}"
        );
        assert!(
            p.contains("<tt:Width>640</tt:Width><tt:Height>360</tt:Height>"),
            "{p}"
        );
        assert!(p.contains("token=\"main\"") && p.contains("token=\"sub\""));
    }

    #[test]
    fn the_clock_is_utc() {
        // 2026-12-01 01:02:03 UTC.
        assert_eq!(civil_utc(device().now), (2026, 12, 1, 1, 2, 3));
        assert_eq!(civil_utc(UNIX_EPOCH), (1970, 1, 1, 0, 0, 0));
        assert_eq!(
            civil_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            (2000, 2, 29, 0, 0, 0)
        );
    }

    #[test]
    fn bad_requests_are_faults_not_panics() {
        for body in [
            &b""[..],
            b"not xml",
            b"<a><b></a>",
            b"<s:Envelope xmlns:s=\"x\"><s:Body></s:Body></s:Envelope>",
            b"\xff\xfe",
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>",
        ] {
            let f = parse(body).unwrap_err();
            assert!(f.sender, "{f:?}");
        }
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(parse(&big).is_err());
        let unknown = parse(&soap(DEVICE_NS, "SetSystemFactoryDefault", "")).unwrap();
        let f = respond(&unknown, &device()).unwrap_err();
        assert_eq!(
            (f.subcode, f.http_status()),
            ("ter:ActionNotSupported", 400)
        );
        let body = fault_body(&f);
        assert!(body.contains("soap:Sender") && body.contains("SetSystemFactoryDefault"));
        let missing = parse(&soap(MEDIA_NS, "GetStreamUri", "")).unwrap();
        assert!(respond(&missing, &device()).is_err());
        let wrong = parse(&soap(
            MEDIA_NS,
            "GetSnapshotUri",
            "<x:ProfileToken>x</x:ProfileToken>",
        ))
        .unwrap();
        assert_eq!(
            respond(&wrong, &device()).unwrap_err().subcode,
            "ter:NoProfile"
        );
    }

    #[test]
    fn values_are_escaped() {
        let mut d = device();
        d.hostname = "<evil>&".into();
        let r = parse(&soap(DEVICE_NS, "GetHostname", "")).unwrap();
        let out = respond(&r, &d).unwrap();
        assert!(out.contains("&lt;evil&gt;&amp;"), "{out}");
    }
}
