//! Viewer and admin passwords: without them the page, the status, the WebSocket and the
//! controls are refused; a browser logs in with the form and watches; a viewer login
//! cannot present or stop the camera; tools use HTTP Basic; wrong passwords are
//! rate-limited per address.

use crate::common;

use common::browser::{Browser, VIEWER_PROBE};
use common::{Daemon, Ws, header, http_full};
use serde_json::json;

const VIEWER: &str = "family-room-7";
const ADMIN: &str = "only-me-please";

fn basic(password: &str) -> String {
    crate::common::basic_auth("user", password)
}

/// The session cookie (`edgecam_session=…`) a login answer sets.
fn session_cookie(head: &str) -> String {
    header(head, "set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("Set-Cookie")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_guard_watching_and_control() {
    let _bound =
        crate::common::time_bound("auth_password::passwords_guard_watching_and_control", None);
    let viewer_hash = edgecam::auth::hash_password(VIEWER).unwrap();
    let daemon = Daemon::start_with_admin(
        &[("EDGECAM_AUTH__VIEWER_PASSWORD_HASH", &viewer_hash)],
        ADMIN,
    )
    .await;
    let a = daemon.addr;
    let html = [("Accept", "text/html")];

    // Without credentials: browsers go to the login form, everything else gets 401.
    let (code, head, _) = http_full(a, "GET", "/", &html, "").await;
    assert_eq!(code, 303);
    assert_eq!(header(&head, "location"), Some("/login?next=/"));
    let (code, head, _) = http_full(a, "GET", "/api/status", &[], "").await;
    assert_eq!(code, 401);
    // Digest first (NVRs fetching stills read the first challenge), then Basic.
    assert!(
        header(&head, "www-authenticate")
            .is_some_and(|v| v.starts_with("Digest realm=\"edgecam\""))
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"edgecam\""),
        "{head}"
    );
    assert_eq!(http_full(a, "GET", "/app.js", &[], "").await.0, 401);
    assert_eq!(
        http_full(a, "POST", "/api/stream/stop", &[], "").await.0,
        401
    );
    assert_eq!(
        Ws::connect_with(&daemon.ws_url(), &[]).await.err(),
        Some(401)
    );
    let (code, _, body) = http_full(a, "GET", "/login?next=/presenter", &[], "").await;
    assert_eq!(code, 200);
    assert!(body.contains("name=\"password\"") && body.contains("value=\"/presenter\""));
    assert_eq!(http_full(a, "GET", "/healthz", &[], "").await.0, 200);

    // A wrong password at the form.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (code, _, body) = http_full(a, "POST", "/login", &form, "password=nope-nope&next=/").await;
    assert_eq!(code, 401);
    assert!(body.contains("Wrong password."));

    // The viewer password: watch, but neither present nor control.
    let (code, head, _) = http_full(
        a,
        "POST",
        "/login",
        &form,
        &format!("password={VIEWER}&next=%2F"),
    )
    .await;
    assert_eq!(code, 303);
    assert_eq!(header(&head, "location"), Some("/"));
    let set = header(&head, "set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let viewer_cookie = session_cookie(&head);
    let with_viewer = [("Cookie", viewer_cookie.as_str())];
    let (code, _, body) = http_full(a, "GET", "/api/status", &with_viewer, "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http_full(a, "POST", "/api/stream/stop", &with_viewer, "")
            .await
            .0,
        401
    );
    let (code, head, _) = http_full(
        a,
        "GET",
        "/presenter",
        &[("Cookie", &viewer_cookie), ("Accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(
        (code, header(&head, "location")),
        (303, Some("/login?next=/presenter"))
    );
    let mut ws = Ws::connect_with(&daemon.ws_url(), &with_viewer)
        .await
        .expect("viewer cookie opens the WebSocket");
    ws.send_json(&json!({"id": "presenter", "sdpOffer": "v=0"}))
        .await;
    let r = ws.recv_id("presenterResponse").await;
    assert_eq!(r["response"], "rejected");
    assert!(
        r["message"].as_str().unwrap().contains("admin password"),
        "{r}"
    );
    // A forged cookie is nobody.
    let forged = viewer_cookie.replacen("viewer", "admin", 1);
    assert_eq!(
        http_full(a, "GET", "/api/status", &[("Cookie", &forged)], "")
            .await
            .0,
        401
    );

    // Tools: HTTP Basic. The admin password controls (and may watch).
    let admin = basic(ADMIN);
    let (code, _, body) = http_full(
        a,
        "POST",
        "/api/stream/stop",
        &[("Authorization", &admin)],
        "",
    )
    .await;
    assert_eq!((code, body.as_str()), (200, r#"{"streaming":false}"#));
    let (code, _, _) = http_full(
        a,
        "POST",
        "/api/stream/start",
        &[("Authorization", &admin)],
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        http_full(
            a,
            "GET",
            "/api/status",
            &[("Authorization", &basic(VIEWER))],
            ""
        )
        .await
        .0,
        200
    );
    daemon.wait_running().await;

    // Wrong passwords from one address: after 5, refused for a while, even the right one.
    for _ in 0..5 {
        let (code, _, _) = http_full(
            a,
            "GET",
            "/api/status",
            &[("Authorization", &basic("wrong-pass"))],
            "",
        )
        .await;
        assert_eq!(code, 401);
    }
    let (code, head, _) = http_full(
        a,
        "GET",
        "/api/status",
        &[("Authorization", &basic(VIEWER))],
        "",
    )
    .await;
    assert_eq!(code, 429);
    assert!(header(&head, "retry-after").is_some());
    let (code, _, _) = http_full(a, "POST", "/login", &form, &format!("password={ADMIN}")).await;
    assert_eq!(code, 429, "the form shares the limit");
    // A session made before still works: the limit is on guessing, not on watching.
    assert_eq!(
        http_full(a, "GET", "/api/status", &with_viewer, "").await.0,
        200
    );
    drop(ws);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_and_watches() {
    let _bound = crate::common::time_bound("auth_password::a_browser_logs_in_and_watches", None);
    let viewer_hash = edgecam::auth::hash_password(VIEWER).unwrap();
    let daemon = Daemon::start_with_admin(
        &[("EDGECAM_AUTH__VIEWER_PASSWORD_HASH", &viewer_hash)],
        ADMIN,
    )
    .await;
    let Some(browser) = Browser::launch_or_skip("auth_password", &[]).await else {
        return;
    };
    let page = browser.open(&daemon.url("/")).await;
    page.wait_for("location.pathname", 20, "the login form", |v| v == "/login")
        .await;
    page.eval(&format!(
        "document.getElementById('password').value = '{VIEWER}'; \
         document.querySelector('form').submit(); true"
    ))
    .await;
    let v = page
        .wait_for(VIEWER_PROBE, 30, "a decoded frame after login", |v| {
            v["frames"].as_u64().unwrap_or(0) > 0 && v["width"] == 640
        })
        .await;
    assert_eq!(v["height"], 360, "{v}");
    assert_eq!(daemon.status().await["viewers"], 1);
    page.close().await;
    drop(browser);
    daemon.stop().await;
}
