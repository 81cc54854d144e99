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

  let ws = null;
  let pc = null;
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

  function retryViewer(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(startViewer, ms);
  }

  async function startViewer() {
    clearTimeout(retryTimer);
    closePeer();
    outbox = [];
    setState('connecting');
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
          await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdpAnswer });
        } else {
          closePeer();
          setState('offline', msg.message || 'Rejected');
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

  // For diagnostics and automated tests.
  window.edgecam = { get pc() { return pc; }, get ws() { return ws; }, get firstFrameMs() { return firstFrameMs; }, timings, texts, received };
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
