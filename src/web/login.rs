//! The HTTP side of [`crate::auth`]: a gate in front of each group of routes, the login
//! form that sets the session cookie, and logout.

use super::{Assets, inline_assets};
use crate::auth::{COOKIE, Denied, Role, SESSION};
use crate::signaling::Signaling;
use axum::Form;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// What the request's credentials grant, for handlers behind the gate.
#[derive(Debug, Clone, Copy)]
pub struct Access(pub Option<Role>);

/// Lets the request through if its credentials grant `need`; browsers asking for a
/// page are sent to the login form, everything else gets 401 with a Basic challenge.
pub async fn gate(
    State((sig, need)): State<(Arc<Signaling>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    // CORS preflights never carry credentials; what they ask about is checked itself.
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let from = client_ip(&req);
    let headers = req.headers();
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let have = match sig
        .auth
        .identify(
            cookie.as_deref(),
            authorization.as_deref(),
            (
                req.method().as_str(),
                req.uri().path_and_query().map_or("/", |p| p.as_str()),
            ),
            from,
        )
        .await
    {
        Ok(have) => have,
        Err(denied) => return refuse(&req, &sig.auth, denied),
    };
    if !sig.auth.grants(have, need) {
        return refuse(&req, &sig.auth, Denied::Unauthorized);
    }
    req.extensions_mut().insert(Access(have));
    next.run(req).await
}

fn refuse(req: &Request, auth: &crate::auth::Auth, denied: Denied) -> Response {
    if let Denied::TooMany(wait) = denied {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, (wait.as_secs() + 1).to_string())],
            "too many wrong passwords from this address; try again later\n",
        )
            .into_response();
    }
    let wants_page = req.method() == Method::GET
        && !req.headers().contains_key(header::AUTHORIZATION)
        && !req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_page {
        let next = req.uri().path();
        return redirect(&format!("/login?next={}", percent_encode(next)), None);
    }
    let message = match denied {
        Denied::BadPassword => "wrong password\n",
        _ => "this needs a password: log in at /login, or use HTTP Basic auth\n",
    };
    // Digest first: clients that speak it (NVRs fetching snapshots) read the first
    // challenge; Basic stays for scripts and curl -u.
    let mut challenges = HeaderMap::new();
    let digest = auth.digest_challenge(denied == Denied::Stale);
    for value in [digest.as_str(), r#"Basic realm="edgecam", charset="UTF-8""#] {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            challenges.append(header::WWW_AUTHENTICATE, v);
        }
    }
    (StatusCode::UNAUTHORIZED, challenges, message).into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn form(State(sig): State<Arc<Signaling>>, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    if sig.auth.is_open() {
        return redirect(next, None);
    }
    login_page(StatusCode::OK, "", next)
}

pub async fn login(
    State(sig): State<Arc<Signaling>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    match sig.auth.check_password(&f.password, peer.ip()).await {
        Ok(role) => {
            tracing::info!(from = %peer.ip(), role = ?role, "login");
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
                sig.auth.new_session(role),
                SESSION.as_secs(),
                if sig.https || is_https(&headers) {
                    "; Secure"
                } else {
                    ""
                }
            );
            redirect(next, Some(cookie))
        }
        Err(Denied::TooMany(wait)) => {
            let mut r = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many wrong passwords. Try again in {} s.",
                    wait.as_secs() + 1
                ),
                next,
            );
            if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(_) => {
            tracing::warn!(from = %peer.ip(), "wrong password at login");
            login_page(StatusCode::UNAUTHORIZED, "Wrong password.", next)
        }
    }
}

pub async fn logout() -> Response {
    redirect(
        "/login",
        Some(format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        )),
    )
}

fn login_page(code: StatusCode, error: &str, next: &str) -> Response {
    static TEMPLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let text = |name: &str| {
            Assets::get(name)
                .map(|f| String::from_utf8_lossy(&f.data).into_owned())
                .unwrap_or_default()
        };
        inline_assets(&text("login.html"), &text("style.css"), "", "")
    });
    let body = template
        .replace("{{error}}", &html_escape(error))
        .replace("{{next}}", &html_escape(next));
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::CACHE_CONTROL, "no-store")]).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Only a path on this camera: never another site (`//evil`, `https://…`, `/\evil`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 512
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Everything but unreserved characters and `/` (a path stays a path).
const PATH_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, PATH_ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_camera() {
        assert_eq!(safe_next(Some("/presenter")), "/presenter");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "evil",
            "/a b",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_login_page_escapes_what_it_echoes() {
        let r = login_page(StatusCode::OK, "<b>", "/\"><script>");
        assert_eq!(r.status(), StatusCode::OK);
        let html = html_escape("\"><script>");
        assert_eq!(html, "&quot;&gt;&lt;script&gt;");
        assert_eq!(percent_encode("/a b?c"), "/a%20b%3Fc");
    }
}
