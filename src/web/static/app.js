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

  let ws = null;
  let pc = null;
  let retryTimer = null;
  let wsBackoff = 500;

  function setState(state, text) {
    badge.className = 'badge ' + state;
    badge.textContent = state;
    overlay.hidden = state === 'live';
    if (state !== 'live') overlay.textContent = text || (state === 'offline' ? 'Camera offline' : 'Connecting…');
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
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
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    setState('connecting');
    const peer = new RTCPeerConnection();
    pc = peer;
    peer.addTransceiver('video', { direction: 'recvonly' });
    const dc = peer.createDataChannel('status');
    dc.onmessage = (e) => onChannelMessage(e.data);
    peer.ontrack = (e) => {
      video.srcObject = e.streams[0] || new MediaStream([e.track]);
      video.play().catch(() => {});
    };
    peer.onicecandidate = (e) => { if (e.candidate) send({ id: 'onIceCandidate', candidate: e.candidate }); };
    peer.onconnectionstatechange = () => {
      if (peer !== pc) return;
      if (peer.connectionState === 'connected') setState('live');
      if (peer.connectionState === 'failed') { setState('offline', 'Connection lost'); retryViewer(1000); }
    };
    const offer = await peer.createOffer();
    await peer.setLocalDescription(offer);
    send({ id: 'viewer', sdpOffer: offer.sdp });
  }

  function onChannelMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === 'status' && typeof msg.viewers === 'number') {
      viewersEl.textContent = msg.viewers + ' watching';
    } else if (msg.type === 'text' && typeof msg.text === 'string') {
      messageEl.textContent = msg.text;
    }
  }

  async function onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    switch (msg.id) {
      case 'viewerResponse':
        if (msg.response === 'accepted' && pc) {
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
    ws.onopen = () => { wsBackoff = 500; startViewer(); };
    ws.onmessage = onMessage;
    ws.onclose = () => {
      closePeer();
      clearTimeout(retryTimer);
      setState('offline', 'Camera unreachable; reconnecting…');
      setTimeout(connect, wsBackoff);
      wsBackoff = Math.min(wsBackoff * 2, 5000);
    };
  }

  // For diagnostics and automated tests.
  window.edgecam = { get pc() { return pc; }, get ws() { return ws; } };
  setState('connecting');
  connect();
})();
