//! The ONVIF endpoints: the facts about this device that `crate::onvif` answers with,
//! gathered here (files, interfaces, the clock), and the SOAP exchange over HTTP.

use crate::auth::{Auth, Denied, Role};
use crate::onvif::{self, Device, StreamInfo};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;

/// What is known about the device at start (the rest is read per request).
#[derive(Debug, Clone)]
pub struct Facts {
    /// `camera.name`, else the hostname.
    pub name: String,
    pub hostname: String,
    pub model: String,
    pub serial: String,
    pub hardware: String,
    pub main: StreamInfo,
    pub sub: StreamInfo,
    pub rtsp_port: Option<u16>,
    /// This server's own address, for a request without a usable Host header.
    pub local: std::net::SocketAddr,
}

impl Facts {
    /// The hostname, the board's model and a stable serial number: the Raspberry Pi's
    /// own serial from the device tree where there is one, else derived from the
    /// machine id (kept across reboots; a re-flashed card gets a new one).
    pub fn read(
        name: Option<String>,
        main: StreamInfo,
        sub: StreamInfo,
        rtsp_port: Option<u16>,
        local: std::net::SocketAddr,
    ) -> Self {
        let text = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| {
                    s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                        .to_string()
                })
                .filter(|s| !s.is_empty())
        };
        let serial = text("/proc/device-tree/serial-number")
            .or_else(|| text("/etc/machine-id").map(|id| id.chars().take(16).collect()))
            .unwrap_or_else(|| "0000000000000000".into());
        let hardware = text("/proc/device-tree/model")
            .or_else(|| text("/sys/devices/virtual/dmi/id/product_name"))
            .unwrap_or_else(|| std::env::consts::ARCH.into());
        let hostname = Some(crate::netif::hostname())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "edgecam".into());
        Self {
            name: name.unwrap_or_else(|| hostname.clone()),
            hostname,
            model: "edgecam".into(),
            serial,
            hardware,
            main,
            sub,
            rtsp_port,
            local,
        }
    }
}

/// A Host header we may hand back in URLs: host or host:port of plain characters.
fn usable_host(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::HOST)?.to_str().ok()?;
    let ok = !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    ok.then(|| h.to_string())
}

/// The host part of `host[:port]` (an IPv6 literal keeps its brackets).
fn host_part(h: &str) -> String {
    if h.starts_with('[') {
        return h
            .split(']')
            .next()
            .map(|s| format!("{s}]"))
            .unwrap_or_default();
    }
    h.rsplit_once(':').map_or(h, |(host, _)| host).to_string()
}

/// Whether `request` may be answered: anyone may ask the PRE_AUTH operations and, on
/// a camera without a viewer password, everything; otherwise the WS-Security
/// UsernameToken (user `viewer` or `admin`) or the page's own credentials (session
/// cookie, HTTP Basic) must let the sender watch.
async fn admitted(
    auth: &Auth,
    uri: &str,
    request: &onvif::Request,
    headers: &HeaderMap,
    from: IpAddr,
) -> Result<(), onvif::Fault> {
    if !auth.watching_needs_credentials() || onvif::pre_auth(&request.operation) {
        return Ok(());
    }
    let denied = |d: Denied| match d {
        Denied::TooMany(wait) => onvif::not_authorized(format!(
            "too many wrong credentials from this address; try again in {} s",
            wait.as_secs() + 1
        )),
        _ => {
            onvif::not_authorized("the camera needs a user name (viewer or admin) and its password")
        }
    };
    if let Some(token) = &request.token {
        return auth
            .check_token(token, from, std::time::SystemTime::now())
            .map(|_| ())
            .map_err(denied);
    }
    let text = |h| {
        headers
            .get(h)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    match auth
        .identify(
            text(header::COOKIE),
            text(header::AUTHORIZATION),
            ("POST", uri),
            from,
        )
        .await
    {
        Ok(have) if auth.grants(have, Role::Viewer) => Ok(()),
        Ok(_) => Err(denied(Denied::Unauthorized)),
        Err(d) => Err(denied(d)),
    }
}

/// One SOAP request to the device or media service.
pub async fn service(
    facts: Arc<Facts>,
    auth: &Auth,
    from: IpAddr,
    uri: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let http_host = usable_host(&headers).unwrap_or_else(|| facts.local.to_string());
    let parsed = match onvif::parse(&body) {
        Ok(request) => admitted(auth, uri, &request, &headers, from)
            .await
            .map(|()| request),
        Err(f) => Err(f),
    };
    let result = parsed.and_then(|request| {
        let device = Device {
            host: host_part(&http_host),
            http_host: http_host.clone(),
            rtsp_port: facts.rtsp_port,
            name: facts.name.clone(),
            hostname: facts.hostname.clone(),
            model: facts.model.clone(),
            firmware: env!("CARGO_PKG_VERSION").into(),
            serial: facts.serial.clone(),
            hardware: facts.hardware.clone(),
            main: facts.main.clone(),
            sub: facts.sub.clone(),
            interfaces: crate::netif::interfaces(),
            now: std::time::SystemTime::now(),
        };
        onvif::respond(&request, &device)
    });
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(f) => (
            StatusCode::from_u16(f.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            onvif::fault_body(&f),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        onvif::envelope(&body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_only_when_plain() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "192.168.1.20:8080".parse().unwrap());
        assert_eq!(usable_host(&h).as_deref(), Some("192.168.1.20:8080"));
        h.insert(header::HOST, "evil\"><x".parse().unwrap());
        assert_eq!(usable_host(&h), None);
        assert_eq!(host_part("camera.local:8080"), "camera.local");
        assert_eq!(host_part("[fe80::1]:8080"), "[fe80::1]");
        assert_eq!(host_part("camera"), "camera");
    }
}
