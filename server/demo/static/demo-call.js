/* The demo call: two RTCPeerConnections in one page, one per participant,
 * each watched by its own Bondline collector with that participant's token.
 * Signalling is a direct hand-over of SDP and ICE candidates in this page.
 * The session is asked for only once the media is ready, so a call that
 * cannot start leaves nothing behind. */
(function () {
  'use strict';
  var cfg = JSON.parse(document.getElementById('demo-config').textContent);
  var statusEl = document.getElementById('demo-status');
  var form = document.getElementById('demo-start');
  var hangupButton = document.getElementById('demo-hangup');
  var roles = ['clinician', 'client'];
  var collectors = {};
  var pcs = {};
  var poller = null;
  var synthetic = null;
  var demo = { collectors: collectors, pcs: pcs, session: null, hangup: hangup };
  window.bondlineDemo = demo;

  function say(text) { statusEl.textContent = text; }

  function show(role, data) {
    var side = document.getElementById('side-' + role);
    if (!side || !data) return;
    var last = data.last || {};
    side.querySelectorAll('td[data-f]').forEach(function (td) {
      var f = td.getAttribute('data-f');
      var v;
      if (f === 'stored') v = String(data.stored);
      else if (f === 'lastSeq') v = data.lastSeq === null ? '–' : String(data.lastSeq);
      else if (f === 'bitrate') {
        v = (last.bitrate_in_kbps == null ? '–' : Math.round(last.bitrate_in_kbps)) + ' / ' +
            (last.bitrate_out_kbps == null ? '–' : Math.round(last.bitrate_out_kbps)) + ' kbit/s';
      } else if (last[f] == null) v = '–';
      else if (td.getAttribute('data-unit') === '%') v = (last[f] * 100).toFixed(1) + ' %';
      else if (td.getAttribute('data-unit') === 'ms') v = last[f].toFixed(1) + ' ms';
      else v = String(Math.round(last[f] * 10) / 10);
      td.textContent = v;
    });
  }

  function poll() {
    if (!demo.session) return;
    fetch('/demo/call/' + demo.session + '/telemetry', { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) return;
        roles.forEach(function (role) { show(role, d[role]); });
        var n = (d.clinician ? d.clinician.stored : 0) + (d.client ? d.client.stored : 0);
        if (n > 0 && pcs.clinician) say('In call: the server has stored ' + n + ' samples from the two sides.');
      })
      .catch(function () { /* the next poll tries again */ });
  }

  function hangup() {
    hangupButton.disabled = true;
    roles.forEach(function (role) {
      if (pcs[role]) pcs[role].close();
      pcs[role] = null;
    });
    if (synthetic) synthetic.stop();
    Promise.all(roles.map(function (role) { return collectors[role] ? collectors[role].stop(3000) : true; }))
      .then(function () {
        poll();
        clearInterval(poller);
        say('Call ended; every sample was flushed to the server.');
      });
  }

  // A moving test pattern with a clock, and a quiet tone: media that needs no device.
  function syntheticMedia() {
    var canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 240;
    var g = canvas.getContext('2d');
    var started = performance.now();
    var timer = setInterval(function () {
      var t = (performance.now() - started) / 1000;
      var bars = ['#0072b2', '#d55e00', '#007d5a', '#8e44ad', '#9a6700', '#a23b72', '#5d6d7e', '#17324d'];
      for (var i = 0; i < bars.length; i++) { g.fillStyle = bars[i]; g.fillRect(i * 40, 0, 40, 240); }
      g.fillStyle = '#ffffff';
      g.fillRect(0, 90, 320, 60);
      g.fillStyle = '#1b1f24';
      g.font = '600 28px system-ui, sans-serif';
      g.fillText('Bondline demo ' + t.toFixed(1) + ' s', 16, 130);
      g.fillRect(((t * 80) % 360) - 20, 200, 20, 30);
    }, 1000 / 15);
    var stream = canvas.captureStream(15);
    var audio = null;
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx) {
      audio = new Ctx();
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.frequency.value = 440;
      gain.gain.value = 0.05;
      osc.connect(gain);
      var dest = audio.createMediaStreamDestination();
      gain.connect(dest);
      osc.start();
      dest.stream.getAudioTracks().forEach(function (track) { stream.addTrack(track); });
    }
    return {
      stream: stream,
      stop: function () {
        clearInterval(timer);
        stream.getTracks().forEach(function (track) { track.stop(); });
        if (audio) audio.close();
      }
    };
  }

  async function media(source) {
    if (source === 'synthetic') {
      synthetic = syntheticMedia();
      return synthetic.stream;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('this browser offers no camera access here; choose the synthetic test pattern');
    }
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    } catch (e) {
      throw new Error('the camera or microphone could not be used (' + (e.name || e) +
        '); choose the synthetic test pattern instead');
    }
  }

  async function newSession() {
    var r = await fetch('/demo/call/sessions', {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': cfg.csrf }, body: '{}',
      cache: 'no-store', credentials: 'same-origin'
    });
    if (!r.ok) throw new Error('the server did not create a session (HTTP ' + r.status + ')');
    return r.json();
  }

  async function run(source) {
    say('Getting the media ready…');
    var stream = await media(source);
    var created = await newSession();
    demo.session = created.session;
    cfg.session = created.session;
    document.getElementById('demo-config').textContent = JSON.stringify(cfg);
    roles.forEach(function (role) {
      collectors[role] = Bondline.create({
        server: cfg.server, token: created.tokens[role], intervalMs: 1000,
        badge: document.getElementById('badge-' + role)
      });
      var pc = new RTCPeerConnection();
      pcs[role] = pc;
      collectors[role].attach(pc);
      stream.getTracks().forEach(function (track) { pc.addTrack(track.clone(), stream); });
      pc.ontrack = function (ev) {
        var video = document.getElementById('video-' + role);
        if (video.srcObject !== ev.streams[0]) video.srcObject = ev.streams[0];
      };
    });
    var a = pcs.clinician, b = pcs.client;
    a.onicecandidate = function (e) { if (e.candidate) b.addIceCandidate(e.candidate); };
    b.onicecandidate = function (e) { if (e.candidate) a.addIceCandidate(e.candidate); };
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    say('Call set up as demo session ' + created.number + '; waiting for the first samples…');
    poller = setInterval(poll, 1000);
    hangupButton.disabled = false;
  }

  hangupButton.addEventListener('click', hangup);
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var source = form.querySelector('input[name=source]:checked').value;
    form.querySelector('button').disabled = true;
    form.querySelectorAll('input').forEach(function (i) { i.disabled = true; });
    run(source).catch(function (e) {
      say('The demo call could not start: ' + (e && e.message ? e.message : e) + '. No session was created.');
      if (synthetic) { synthetic.stop(); synthetic = null; }
      form.querySelector('button').disabled = false;
      form.querySelectorAll('input').forEach(function (i) { i.disabled = false; });
    });
  });
})();
