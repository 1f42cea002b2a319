/* The demo call: two RTCPeerConnections in one page, one per participant,
 * each watched by its own Bondline collector with that participant's token.
 * Signalling is a direct hand-over of SDP and ICE candidates in this page. */
(function () {
  'use strict';
  var cfg = JSON.parse(document.getElementById('demo-config').textContent);
  var statusEl = document.getElementById('demo-status');
  var roles = ['clinician', 'client'];
  var collectors = {};
  var pcs = {};
  var poller = null;

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
    fetch('/demo/call/' + cfg.session + '/telemetry', { cache: 'no-store' })
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
    roles.forEach(function (role) {
      if (pcs[role]) pcs[role].close();
      pcs[role] = null;
    });
    Promise.all(roles.map(function (role) { return collectors[role] ? collectors[role].stop(3000) : true; }))
      .then(function () {
        poll();
        clearInterval(poller);
        say('Call ended; every sample was flushed to the server.');
      });
  }

  async function run() {
    var media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    roles.forEach(function (role) {
      collectors[role] = Bondline.create({
        server: cfg.server, token: cfg.tokens[role], intervalMs: 1000,
        badge: document.getElementById('badge-' + role)
      });
      var pc = new RTCPeerConnection();
      pcs[role] = pc;
      collectors[role].attach(pc);
      media.getTracks().forEach(function (track) { pc.addTrack(track.clone(), media); });
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
    say('Call set up; waiting for the first samples…');
    poller = setInterval(poll, 1000);
    document.getElementById('demo-hangup').addEventListener('click', hangup);
  }

  window.bondlineDemo = { collectors: collectors, pcs: pcs, hangup: hangup };
  run().catch(function (e) { say('The demo call could not start: ' + e); });
})();
