// edgecam settings: a form made from /api/settings (the keys, their kinds, the values in
// effect, the cameras found), saved with PUT of the changed keys only; the validator's
// message for a key appears beside its field. Board health from /api/status.
'use strict';
(() => {
  const form = document.getElementById('form');
  const result = document.getElementById('result');
  const health = document.getElementById('health');
  let values = {};

  const applied = {
    live: 'Applied.',
    pipeline: 'Applied: the camera restarted with the new settings (viewers stay connected).',
    audio: 'Applied: the microphone restarted.',
    next_start: 'Saved: used from the camera\'s next start.',
  };

  function input(field, value, cameras) {
    let el;
    if (field.key === 'camera.source') {
      el = document.createElement('select');
      const options = ['auto', 'test', 'libcamera', ...cameras.map(c => c.source)];
      if (!options.includes(value)) options.push(value);
      for (const o of options) {
        const opt = document.createElement('option');
        opt.value = o;
        const cam = cameras.find(c => c.source === o);
        opt.textContent = cam ? `${cam.name} (${o})` : o;
        el.appendChild(opt);
      }
      el.value = value;
    } else if (field.kind === 'bool') {
      el = document.createElement('input');
      el.type = 'checkbox';
      el.checked = !!value;
    } else {
      el = document.createElement('input');
      el.type = field.kind === 'password' ? 'password' : field.kind === 'number' ? 'number' : 'text';
      if (field.kind === 'password') {
        el.placeholder = value ? 'set (type a new one to change it)' : 'none';
        el.autocomplete = 'new-password';
      } else {
        el.value = value;
      }
    }
    el.id = field.key;
    el.name = field.key;
    return el;
  }

  function render(view) {
    values = view.values;
    form.textContent = '';
    for (const field of view.fields) {
      const row = document.createElement('label');
      row.className = 'row';
      const name = document.createElement('span');
      name.textContent = field.label;
      const error = document.createElement('span');
      error.className = 'field-error';
      error.id = 'error-' + field.key;
      row.append(name, input(field, view.values[field.key], view.cameras), error);
      if (field.kind === 'password') {
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.textContent = 'Remove';
        remove.hidden = !view.values[field.key];
        remove.onclick = () => save({ [field.key]: '' });
        row.appendChild(remove);
      }
      form.appendChild(row);
    }
    const sizes = view.cameras.flatMap(c => c.sizes.map(s => `${c.name}: ${s.width}×${s.height} @ ${s.fps.join(', ')} fps`));
    if (sizes.length) {
      const list = document.createElement('details');
      list.innerHTML = '<summary>Sizes and rates the cameras offer</summary>';
      const pre = document.createElement('pre');
      pre.textContent = sizes.join('\n');
      list.appendChild(pre);
      form.appendChild(list);
    }
    const last = view.last_change;
    if (last && last.ok === false) result.textContent = last.message;
  }

  function changed() {
    const out = {};
    for (const el of form.querySelectorAll('input, select')) {
      const key = el.name;
      if (el.type === 'checkbox') { if (el.checked !== values[key]) out[key] = el.checked; }
      else if (el.type === 'password') { if (el.value !== '') out[key] = el.value; }
      else if (el.type === 'number') { if (el.value !== String(values[key])) out[key] = el.value === '' ? '' : Number(el.value); }
      else if (el.value !== values[key]) out[key] = el.value;
    }
    return out;
  }

  async function save(changes) {
    for (const e of form.querySelectorAll('.field-error')) e.textContent = '';
    if (!Object.keys(changes).length) { result.textContent = 'Nothing changed.'; return; }
    result.textContent = 'Saving…';
    // Shaped like the settings file's sections: {"camera": {"width": 640}}.
    const body = {};
    for (const [key, value] of Object.entries(changes)) {
      const [section, name] = key.split('.');
      (body[section] = body[section] || {})[name] = value;
    }
    const r = await fetch('/api/settings', {
      method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    const answer = await r.json().catch(() => ({}));
    if (r.ok) {
      result.textContent = answer.applied ? applied[answer.applied] : 'Nothing changed.';
      await load();
      return;
    }
    if (answer.errors) {
      for (const [key, message] of Object.entries(answer.errors)) {
        const el = document.getElementById('error-' + key);
        if (el) el.textContent = message;
      }
      result.textContent = 'Not saved: see the messages beside the fields.';
    } else {
      result.textContent = 'Not saved: ' + (answer.error || r.status);
    }
  }

  function line(label, text, warn) {
    const p = document.createElement('div');
    if (warn) p.className = 'warn';
    p.textContent = `${label}: ${text}`;
    health.appendChild(p);
  }

  async function showHealth() {
    const r = await fetch('/api/status', { cache: 'no-store' });
    if (!r.ok) return;
    const s = await r.json();
    document.title = `${s.name} – settings`;
    const b = s.board;
    health.textContent = '';
    if (b.cpu_temp_c != null) line('CPU temperature', `${b.cpu_temp_c.toFixed(1)} °C`, b.cpu_temp_c >= 80);
    const t = b.throttling;
    if (t) {
      const what = c => Object.entries(c).filter(([, on]) => on).map(([k]) => k.replace(/_/g, ' ')).join(', ') || 'none';
      line('Now', what(t.now), Object.values(t.now).some(Boolean));
      line('Since boot', what(t.since_boot), Object.values(t.since_boot).some(Boolean));
    }
    if (b.load) line('Load', `${b.load.map(l => l.toFixed(2)).join(' ')} on ${b.cpus} CPUs`);
    if (b.memory_total_mib) line('Memory', `${b.memory_available_mib} MiB free of ${b.memory_total_mib} MiB`);
    if (b.uptime_s != null) line('Up', `${Math.floor(b.uptime_s / 3600)} h ${Math.floor(b.uptime_s / 60) % 60} min`);
    line('Encoder', s.encoder || '–');
    line('Reachable at', [s.network.mdns_name, ...s.network.addresses].join(' · '));
  }

  async function load() {
    const r = await fetch('/api/settings', { cache: 'no-store' });
    if (!r.ok) { result.textContent = 'Settings need the admin password.'; return; }
    render(await r.json());
  }

  form.onsubmit = (e) => { e.preventDefault(); save(changed()); };
  window.edgecamSettings = { save, load, changed };
  load();
  showHealth();
  setInterval(showHealth, 5000);
})();
