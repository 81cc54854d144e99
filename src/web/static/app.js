// edgecam viewer: Kurento one2many protocol over /one2many. The browser makes the offer,
// ICE trickles both ways, a "status" data channel brings the viewer count. Reconnects by
// itself after a daemon restart, a rejection, or stopCommunication.
'use strict';
(() => {
  const video = document.getElementById('video');
  const overlay = document.getElementById('overlay');
  const badge = document.getElementById('state');
  const viewersEl = document.getElementById('viewers');
  const messageEl = document.getElementById('message');
  const unmuteBtn = document.getElementById('unmute');
  unmuteBtn.onclick = () => { video.muted = false; unmuteBtn.hidden = true; video.play().catch(() => {}); };

  const statsEl = document.getElementById('stats');
  const statsBtn = document.getElementById('stats-toggle');

  let ws = null;
  let pc = null;
  // Our id in /api/status viewer_links (from viewerResponse), for the camera's view of the link.
  let viewerId = null;
  let retryTimer = null;
  let wsBackoff = 500;
  // Milliseconds since page load at each step of the first join (diagnostics, benchmarks).
  const timings = {};
  // Presenter texts received on the data channel, oldest first.
  const texts = [];
  // Kurento message ids received, for diagnostics.
  const received = [];
  const mark = (name) => { if (!(name in timings)) timings[name] = Math.round(performance.now()); };

  function setState(state, text) {
    badge.className = 'badge ' + state;
    badge.textContent = state;
    overlay.hidden = state === 'live';
    if (state !== 'live') overlay.textContent = text || (state === 'offline' ? 'Camera offline' : 'Connecting…');
  }

  // Messages wait here while the socket opens, so the offer is made in parallel with it.
  let outbox = [];
  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    else outbox.push(msg);
  }

  function closePeer() {
    if (pc) { pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null; pc.close(); pc = null; }
  }

  // Why the camera last refused this page (shown while it tries again), e.g. a browser
  // whose WebRTC has none of the camera's codecs: the reason stays readable.
  let refusedWith = null;

  function retryViewer(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(startViewer, ms);
  }

  async function startViewer() {
    clearTimeout(retryTimer);
    closePeer();
    outbox = [];
    setState('connecting', refusedWith || undefined);
    const peer = new RTCPeerConnection();
    pc = peer;
    peer.addTransceiver('video', { direction: 'recvonly' });
    // Audio flows only when a browser presenter sends it; the camera has none.
    peer.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    const dc = peer.createDataChannel('status');
    dc.onmessage = (e) => onChannelMessage(e.data);
    peer.ontrack = (e) => {
      stream.addTrack(e.track);
      if (video.srcObject !== stream) video.srcObject = stream;
      if (e.track.kind === 'audio') {
        e.track.onunmute = () => { unmuteBtn.hidden = !video.muted; };
      } else {
        video.play().catch(() => {});
        markFirstFrame();
      }
    };
    peer.onicecandidate = (e) => { if (e.candidate) send({ id: 'onIceCandidate', candidate: e.candidate }); };
    peer.onconnectionstatechange = () => {
      if (peer !== pc) return;
      if (peer.connectionState === 'connected') { mark('connected'); setState('live'); }
      if (peer.connectionState === 'failed') { setState('offline', 'Connection lost'); retryViewer(1000); }
    };
    const offer = await peer.createOffer();
    if (peer !== pc) return;
    await peer.setLocalDescription(offer);
    if (peer !== pc) return;
    send({ id: 'viewer', sdpOffer: offer.sdp });
    mark('offerSent');
  }

  // Time from page load to the first decoded picture, for diagnostics and benchmarks.
  let firstFrameMs = null;
  function markFirstFrame() {
    const done = () => { if (firstFrameMs === null) { firstFrameMs = performance.now(); mark('firstFrame'); } };
    if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(done);
    else video.addEventListener('playing', done, { once: true });
  }

  function onChannelMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === 'status' && typeof msg.viewers === 'number') {
      viewersEl.textContent = msg.viewers + ' watching';
    } else if (msg.type === 'text' && typeof msg.text === 'string') {
      messageEl.textContent = msg.text;
      texts.push(msg.text);
    }
  }

  async function onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    received.push(msg.id);
    switch (msg.id) {
      case 'viewerResponse':
        if (msg.response === 'accepted' && pc) {
          mark('answer');
          refusedWith = null;
          viewerId = typeof msg.viewerId === 'number' ? msg.viewerId : null;
          await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdpAnswer });
        } else {
          closePeer();
          refusedWith = msg.message || 'Rejected';
          setState('offline', refusedWith);
          retryViewer(3000);
        }
        break;
      case 'iceCandidate':
        if (pc) pc.addIceCandidate(msg.candidate).catch((e) => console.warn('candidate', e));
        break;
      case 'stopCommunication':
        closePeer();
        video.srcObject = null;
        setState('offline', 'Camera offline');
        retryViewer(3000);
        break;
      case 'presenterAvailable':
        if (!pc || pc.connectionState !== 'connected') startViewer();
        break;
      case 'error':
        console.warn('edgecam:', msg.message);
        break;
      default:
        console.log('edgecam: unknown message', msg.id);
    }
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/one2many';
    ws = new WebSocket(url);
    ws.onopen = () => {
      mark('wsOpen');
      wsBackoff = 500;
      for (const m of outbox) ws.send(JSON.stringify(m));
      outbox = [];
      if (!pc) startViewer();
    };
    ws.onmessage = onMessage;
    ws.onclose = () => {
      closePeer();
      outbox = [];
      clearTimeout(retryTimer);
      setState('offline', 'Camera unreachable; reconnecting…');
      setTimeout(connect, wsBackoff);
      wsBackoff = Math.min(wsBackoff * 2, 5000);
    };
  }

  // Stats panel: what this browser measures (getStats) beside what the camera measures
  // from this viewer's RTCP reports (/api/status viewer_links). Sampled only while shown.
  let stats = {};
  let lastBytes = null;
  async function sampleStats() {
    const next = {};
    const peer = pc;
    if (peer) {
      (await peer.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          next.resolution = r.frameWidth ? r.frameWidth + 'x' + r.frameHeight : '–';
          next.fps = r.framesPerSecond || 0;
          next.framesDecoded = r.framesDecoded || 0;
          next.packetsLost = r.packetsLost || 0;
          next.jitterMs = (r.jitter || 0) * 1000;
          if (lastBytes && r.timestamp > lastBytes.t) {
            next.bitrateKbps = ((r.bytesReceived - lastBytes.bytes) * 8) / (r.timestamp - lastBytes.t);
          }
          lastBytes = { bytes: r.bytesReceived || 0, t: r.timestamp };
        }
        if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' && r.currentRoundTripTime !== undefined) {
          next.rttMs = r.currentRoundTripTime * 1000;
        }
      });
    }
    try {
      const s = await (await fetch('/api/status')).json();
      next.viewers = s.viewers;
      next.encoder = s.encoder;
      next.encoderKbps = s.bitrate_bps / 1000;
      const link = (s.viewer_links || []).find((l) => l.id === viewerId);
      if (link) {
        next.cameraRttMs = link.rtt_ms;
        next.cameraLoss = link.fraction_lost;
        next.cameraLost = link.packets_lost;
        next.cameraKbps = link.send_bitrate_bps / 1000;
      }
    } catch { /* the daemon is restarting; the page reconnects by itself */ }
    stats = next;
    renderStats();
  }
  function renderStats() {
    const num = (v, digits, unit) => (typeof v === 'number' ? v.toFixed(digits) + unit : '–');
    const rows = [
      ['Resolution', stats.resolution || '–'],
      ['Frame rate', num(stats.fps, 0, ' fps')],
      ['Received', num(stats.bitrateKbps, 0, ' kbit/s')],
      ['Lost packets', num(stats.packetsLost, 0, '')],
      ['Jitter', num(stats.jitterMs, 1, ' ms')],
      ['Round trip', num(stats.rttMs, 1, ' ms')],
      ['Camera: round trip', num(stats.cameraRttMs, 1, ' ms')],
      ['Camera: loss', typeof stats.cameraLoss === 'number' ? (stats.cameraLoss * 100).toFixed(1) + ' % (' + stats.cameraLost + ')' : '–'],
      ['Camera: sending', num(stats.cameraKbps, 0, ' kbit/s')],
      ['Viewers', num(stats.viewers, 0, '')],
      ['Encoder', (stats.encoder || '–') + (stats.encoderKbps ? ', ' + stats.encoderKbps.toFixed(0) + ' kbit/s' : '')],
    ];
    statsEl.replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      const td = document.createElement('td');
      th.textContent = k;
      td.textContent = v;
      tr.append(th, td);
      return tr;
    }));
  }
  let statsTimer = null;
  function showStats(on) {
    statsEl.hidden = !on;
    clearInterval(statsTimer);
    lastBytes = null;
    if (on) { sampleStats(); statsTimer = setInterval(sampleStats, 1000); }
    try { localStorage.setItem('edgecam.stats', on ? '1' : ''); } catch { /* private mode */ }
  }
  statsBtn.onclick = () => showStats(statsEl.hidden);
  try { if (localStorage.getItem('edgecam.stats')) showStats(true); } catch { /* private mode */ }

  // For diagnostics and automated tests.
  window.edgecam = { get pc() { return pc; }, get ws() { return ws; }, get firstFrameMs() { return firstFrameMs; }, get viewerId() { return viewerId; }, get stats() { return stats; }, timings, texts, received };
  // A rejected settings file on the boot partition is shown until it is fixed.
  fetch('/api/status').then((r) => r.json()).then((s) => {
    if (s.config_error) {
      const banner = document.createElement('div');
      banner.id = 'config-error';
      banner.className = 'config-error';
      banner.textContent = 'Settings file rejected, running with the previous settings: ' + s.config_error;
      document.body.prepend(banner);
    }
  }).catch(() => {});
  setState('connecting');
  connect();
  startViewer();
})();
