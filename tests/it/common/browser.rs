//! Headless Chromium driven over the DevTools protocol (CDP), for end-to-end page tests.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    rpc: super::rpc::Rpc,
}

/// One page (tab) attached with a flat CDP session.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
    target: String,
}

/// Path of the Chromium binary.
pub fn chromium() -> &'static str {
    if std::path::Path::new("/usr/bin/chromium").exists() {
        "/usr/bin/chromium"
    } else {
        "chromium"
    }
}

/// Whether Chromium is installed (`tests/setup.sh` installs it unless
/// `EDGECAM_NO_BROWSER=1`).
pub fn installed() -> bool {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    std::path::Path::new("/usr/bin/chromium").exists()
        || on_path("chromium")
        || on_path("chromium-browser")
}

impl Browser {
    /// Starts Chromium, or says plainly that this browser test is skipped and returns
    /// `None` where none is installed.
    pub async fn launch_or_skip(test: &str, extra_args: &[&str]) -> Option<Self> {
        if !installed() {
            eprintln!(
                "SKIPPED {test}: Chromium is not installed (run sh tests/setup.sh without \
                 EDGECAM_NO_BROWSER=1 to install it)"
            );
            return None;
        }
        Some(Self::launch(extra_args).await)
    }

    pub async fn launch(extra_args: &[&str]) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            // Loopback-only tests: let WebRTC use 127.0.0.1 and show real addresses.
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra_args)
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("chromium starts (apt-get install chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let mut text = String::new();
        // Up to 60 s: on a machine busy with an emulated board, Chromium starts slowly.
        for _ in 0..1200 {
            if let Ok(t) = std::fs::read_to_string(&port_file)
                && t.lines().count() >= 2
            {
                text = t;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut lines = text.lines();
        let port = lines.next().expect("DevToolsActivePort written");
        let path = lines.next().expect("browser ws path");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("cdp connect");
        Self {
            child,
            _profile: profile,
            rpc: super::rpc::Rpc::new(ws),
        }
    }

    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let mut msg = json!({"method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let v = self
            .rpc
            .call(msg, Duration::from_secs(30))
            .await
            .expect("cdp answer in time");
        if let Some(err) = v.get("error") {
            // A page still navigating replaces its JS context under us ("…context…", or
            // "Inspected target navigated or closed" mid-reload): callers that poll see
            // this as an exception and try again.
            let text = err.to_string();
            if method == "Runtime.evaluate"
                && (text.contains("context") || text.contains("navigated"))
            {
                return json!({"exceptionDetails": err.clone()});
            }
            panic!("CDP {method} failed: {err}");
        }
        v["result"].clone()
    }

    /// Opens a new tab at `url`.
    pub async fn open(&self, url: &str) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": url}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        Page {
            browser: self,
            session,
            target: target_id,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page<'_> {
    /// Evaluates an expression (awaiting a promise) and returns its JSON value.
    pub async fn eval(&self, expression: &str) -> Value {
        let r = self
            .browser
            .call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            return json!({"exception": ex.to_string()});
        }
        r["result"]["value"].clone()
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

    /// Closes the tab (its peer connection and WebSocket go with it).
    pub async fn close(self) {
        let _ = self
            .browser
            .call(None, "Target.closeTarget", json!({"targetId": self.target}))
            .await;
    }
}

/// JS returning the viewer page's decode state: frames decoded, video width, states.
pub const VIEWER_PROBE: &str = r#"(async () => {
  const pc = window.edgecam && window.edgecam.pc;
  const v = document.getElementById('video');
  let frames = 0;
  if (pc) {
    const stats = await pc.getStats();
    stats.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames = r.framesDecoded || 0; });
  }
  return { frames, width: v ? v.videoWidth : 0, height: v ? v.videoHeight : 0,
           pc: pc ? pc.connectionState : 'none',
           badge: document.getElementById('state').textContent,
           viewers: document.getElementById('viewers').textContent };
})()"#;

/// JS: watch over WHEP with plain `fetch` from a page of the daemon's origin.
pub const WHEP_WATCH: &str = r#"(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  const v = document.createElement('video');
  v.muted = true; v.autoplay = true; v.playsInline = true;
  document.body.appendChild(v);
  pc.ontrack = e => { v.srcObject = new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const res = await fetch('/whep', { method: 'POST', headers: { 'Content-Type': 'application/sdp' },
                                     body: pc.localDescription.sdp });
  const answer = await res.text();
  window.whep = { pc, video: v, status: res.status, location: res.headers.get('Location'),
                  type: res.headers.get('Content-Type') };
  if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return { status: res.status, location: window.whep.location, type: window.whep.type,
           candidates: (answer.match(/a=candidate:/g) || []).length };
})()"#;

/// JS: frames decoded by the WHEP player of `WHEP_WATCH`.
pub const WHEP_PROBE: &str = r#"(async () => {
  let frames = 0;
  (await window.whep.pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames = r.framesDecoded || 0;
  });
  return { frames, width: window.whep.video.videoWidth, pc: window.whep.pc.connectionState };
})()"#;

/// Reads the capture-time stamp (see `src/capture/stamp.rs`) from every presented frame.
pub const LATENCY_PROBE: &str = r#"(() => {
  const v = document.getElementById('video');
  const c = document.createElement('canvas');
  const ctx = c.getContext('2d', { willReadFrequently: true });
  window.lat = { ms: [], misread: 0 };
  const step = () => {
    const now = Date.now();
    const w = v.videoWidth, h = v.videoHeight;
    const bs = Math.min(16, Math.max(2, Math.floor(w / 40))) & ~1;
    if (w >= 40 * bs && h >= bs) {
      c.width = 40 * bs; c.height = bs;
      ctx.drawImage(v, 0, h - bs, 40 * bs, bs, 0, 0, 40 * bs, bs);
      const d = ctx.getImageData(0, 0, 40 * bs, bs).data;
      const bit = i => {
        const o = ((bs >> 1) * 40 * bs + i * bs + (bs >> 1)) * 4;
        return (d[o] + d[o + 1] + d[o + 2]) / 3 > 128 ? 1 : 0;
      };
      let t = 0, check = 0;
      for (let i = 0; i < 32; i++) t = t * 2 + bit(i);
      for (let i = 32; i < 40; i++) check = check * 2 + bit(i);
      const b = [t >>> 24, (t >>> 16) & 255, (t >>> 8) & 255, t & 255];
      if ((b[0] ^ b[1] ^ b[2] ^ b[3] ^ 0xA5) === check) {
        const lat = (now % 4294967296 - t + 4294967296) % 4294967296;
        if (lat < 60000) window.lat.ms.push(lat); else window.lat.misread++;
      } else {
        window.lat.misread++;
      }
    }
    v.requestVideoFrameCallback(step);
  };
  v.requestVideoFrameCallback(step);
  return true;
})()"#;
