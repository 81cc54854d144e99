// edgecam presenter: sends this browser's camera or screen to the appliance with the
// Kurento one2many "presenter" message; the appliance relays it to every viewer. A data
// channel carries text to all viewers and brings back the live viewer count.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const video = $('video'), overlay = $('overlay'), badge = $('state');
  const startBtn = $('start'), stopBtn = $('stop'), textIn = $('text'), sendBtn = $('send');
  let ws = null, pc = null, media = null, channel = null;

  function setState(state, text) {
    badge.className = 'badge ' + state;
    badge.textContent = state;
    overlay.hidden = state === 'live';
    if (text) $('message').textContent = text;
  }

  function controls(presenting) {
    startBtn.disabled = presenting;
    stopBtn.disabled = !presenting;
    textIn.disabled = sendBtn.disabled = !presenting;
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  async function getMedia() {
    const wantAudio = $('audio').checked;
    const screen = document.querySelector('input[name=source]:checked').value === 'screen';
    if (screen) return navigator.mediaDevices.getDisplayMedia({ video: true, audio: wantAudio });
    return navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: wantAudio });
  }

  async function start() {
    controls(true);
    setState('connecting', '');
    try {
      media = await getMedia();
    } catch (e) {
      setState('offline', 'No camera or screen: ' + e.message);
      controls(false);
      return;
    }
    video.srcObject = media;
    pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    channel = pc.createDataChannel('text');
    channel.onmessage = (e) => {
      try {
        const msg = JSON.parse(e.data);
        if (msg.type === 'status') $('viewers').textContent = msg.viewers + ' watching';
      } catch { /* not ours */ }
    };
    pc.onicecandidate = (e) => { if (e.candidate) send({ id: 'onIceCandidate', candidate: e.candidate }); };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === 'connected') setState('live', 'Presenting');
      if (pc && pc.connectionState === 'failed') stop('Connection lost');
    };
    media.getVideoTracks()[0].onended = () => stop('Capture ended');
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/one2many');
    ws.onmessage = onMessage;
    ws.onclose = () => { if (pc) stop('Connection to the camera lost'); };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (ws.readyState !== WebSocket.OPEN) await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
    send({ id: 'presenter', sdpOffer: offer.sdp });
  }

  async function onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    switch (msg.id) {
      case 'presenterResponse':
        if (msg.response === 'accepted') await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdpAnswer });
        else stop(msg.message || 'Rejected');
        break;
      case 'iceCandidate':
        if (pc) pc.addIceCandidate(msg.candidate).catch((e) => console.warn('candidate', e));
        break;
      case 'error':
        console.warn('edgecam:', msg.message);
        break;
      default:
        break; // viewer-side news such as presenterAvailable
    }
  }

  function stop(reason) {
    send({ id: 'stop' });
    if (pc) { pc.onconnectionstatechange = null; pc.close(); pc = null; }
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    if (media) { media.getTracks().forEach((t) => t.stop()); media = null; }
    channel = null;
    video.srcObject = null;
    setState('offline', typeof reason === 'string' ? reason : 'Stopped');
    $('viewers').textContent = '– watching';
    controls(false);
  }

  function sendText() {
    const text = textIn.value.trim();
    if (!text || !channel || channel.readyState !== 'open') return;
    channel.send(text);
    textIn.value = '';
  }

  startBtn.onclick = start;
  stopBtn.onclick = () => stop('Stopped');
  sendBtn.onclick = sendText;
  textIn.onkeydown = (e) => { if (e.key === 'Enter') sendText(); };
  window.edgecam = { start, stop, get pc() { return pc; }, get channel() { return channel; } };
  controls(false);
})();
