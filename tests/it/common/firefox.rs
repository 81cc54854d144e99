//! Headless Firefox (Debian's Firefox ESR) driven over WebDriver BiDi, the protocol
//! Firefox speaks natively (`--remote-debugging-port`; no geckodriver needed). Only what
//! the page tests need: one tab, navigate, evaluate.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs it (`tests/setup.sh` does, unless `EDGECAM_NO_BROWSER=1`).
pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// Preferences for a test profile: no first-run pages or updates, a fake camera for a
/// presenter, no OpenH264 download, real host addresses instead of mDNS names. (The
/// loopback preference is set, but Firefox ESR 153 still gathers no 127.0.0.1
/// candidate, so media tests run it in a network namespace: `super::netns`.)
const USER_JS: &str = r#"
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("app.update.disabledForTesting", true);
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.autoplay.default", 0);
user_pref("media.peerconnection.ice.loopback", true);
user_pref("media.peerconnection.ice.obfuscate_host_addresses", false);
user_pref("media.gmp-gmpopenh264.enabled", false);
user_pref("media.gmp-manager.updateEnabled", false);
"#;

pub struct Firefox {
    child: Child,
    _profile: tempfile::TempDir,
    rpc: super::rpc::Rpc,
    context: String,
}

impl Firefox {
    /// Starts Firefox with one blank tab, or says plainly that the test is skipped and
    /// returns `None` where it is not installed.
    pub async fn launch_or_skip(test: &str) -> Option<Self> {
        if !std::path::Path::new(FIREFOX).exists() {
            eprintln!(
                "SKIPPED {test}: Firefox ESR is not installed (run sh tests/setup.sh without \
                 EDGECAM_NO_BROWSER=1 to install it)"
            );
            return None;
        }
        Some(Self::launch().await)
    }

    pub async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        std::fs::write(profile.path().join("user.js"), USER_JS).expect("user.js");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(FIREFOX)
            .args(["--headless", "--no-remote", "--profile"])
            .arg(profile.path())
            .arg(format!("--remote-debugging-port={port}"))
            .arg("--remote-allow-hosts=localhost,127.0.0.1")
            .arg("about:blank")
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start firefox-esr");
        // Its BiDi endpoint comes up a few seconds after the start.
        let url = format!("ws://127.0.0.1:{port}/session");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let ws = loop {
            match tokio_tungstenite::connect_async(&url).await {
                Ok((ws, _)) => break ws,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "Firefox's WebDriver BiDi endpoint did not come up: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let mut ff = Self {
            child,
            _profile: profile,
            rpc: super::rpc::Rpc::new(ws),
            context: String::new(),
        };
        let session = ff.call("session.new", json!({"capabilities": {}})).await;
        assert!(session["type"] == "success", "session.new: {session}");
        let tree = ff.call("browsingContext.getTree", json!({})).await;
        ff.context = tree["result"]["contexts"][0]["context"]
            .as_str()
            .expect("a browsing context")
            .to_string();
        ff
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        self.rpc
            .call(
                json!({"method": method, "params": params}),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|| panic!("no BiDi reply to {method}"))
    }

    /// Loads `url` in the tab and waits for it to finish loading.
    pub async fn open(&self, url: &str) {
        let r = self
            .call(
                "browsingContext.navigate",
                json!({"context": self.context, "url": url, "wait": "complete"}),
            )
            .await;
        assert!(r["type"] == "success", "navigate to {url}: {r}");
    }

    /// Evaluates an expression (awaiting a promise) and returns its JSON value.
    pub async fn eval(&self, expression: &str) -> Value {
        let wrapped = format!("(async () => JSON.stringify(await ({expression})))()");
        let r = self
            .call(
                "script.evaluate",
                json!({"expression": wrapped, "target": {"context": self.context},
                       "awaitPromise": true}),
            )
            .await;
        match r["result"]["result"]["value"].as_str() {
            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            None => json!({"exception": r.to_string()}),
        }
    }

    /// Evaluates `expr` every 100 ms until `pred` holds; fails naming `what` after `secs`.
    pub async fn wait_for(
        &self,
        expr: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        super::eval_until(secs, what, || self.eval(expr), pred).await
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
