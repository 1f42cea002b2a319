/*! Bondline browser plugin: streams a WebRTC call's connection quality.
 *
 * One call starts it:  Bondline.start({server: "https://bondline.example", token: "blp_..."});
 * It wraps window.RTCPeerConnection so every connection the page makes is
 * watched (or use Bondline.attach(pc)), reads getStats() every interval,
 * turns cumulative counters into per-interval figures and streams them as
 * bondline.sample/1 over a WebSocket. It sends numbers only: no media, no
 * names, no SDP, no IP addresses. docs/integrate-browser.md is the manual.
 *
 * Plain JavaScript, no build step, no dependencies. Nothing here may throw
 * into the host page: every entry point is guarded.
 */
(function (global) {
  'use strict';

  var VERSION = '1';
  var SCHEMA = 'bondline.sample/1';
  var FATAL_CONNECTION = { 4401: 1, 4403: 1 };
  var FATAL_BATCH = { 4400: 1, 4413: 1, 4415: 1, 4422: 1 };

  function warn() {
    try { global.console && global.console.warn.apply(global.console, ['[bondline]'].concat([].slice.call(arguments))); }
    catch (e) { /* console itself failed: nothing left to tell */ }
  }
  function guard(fn, fallback) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { warn('internal error', e); return fallback; }
    };
  }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
  function round(v, digits) {
    if (v === null) return null;
    var f = Math.pow(10, digits);
    return Math.round(v * f) / f;
  }
  function put(obj, key, value) { if (value !== null && value !== undefined) obj[key] = value; }

  // ---------------------------------------------------------------------
  // Delta logic. One StatsReducer per RTCPeerConnection. Counters are keyed
  // on the stats object id; a monotone counter that went down means the
  // stream restarted, and then the current values are the interval's.
  // A stats object seen for the first time counts from zero only when the
  // connection was watched from its creation (countFromZero); otherwise its
  // first report is only the baseline, as its history predates us.
  // ---------------------------------------------------------------------
  var INBOUND_COUNTERS = ['packetsReceived', 'packetsLost', 'retransmittedPacketsReceived', 'framesDecoded',
    'framesDropped', 'framesReceived', 'freezeCount', 'pauseCount', 'concealedSamples', 'silentConcealedSamples',
    'totalSamplesReceived', 'concealmentEvents', 'nackCount', 'pliCount', 'firCount'];
  var OUTBOUND_COUNTERS = ['packetsSent', 'framesEncoded', 'framesSent', 'nackCount', 'pliCount', 'firCount'];
  var QL_REASONS = { none: 1, cpu: 1, bandwidth: 1, other: 1 };
  var CANDIDATE_TYPES = { host: 1, srflx: 1, prflx: 1, relay: 1 };
  var RTP_TYPES = { 'inbound-rtp': 1, 'outbound-rtp': 1, 'remote-inbound-rtp': 1, 'remote-outbound-rtp': 1 };

  function StatsReducer(countFromZero) {
    this.prev = {};
    this.countFromZero = !!countFromZero;
    this.polls = 0;
    this.lastTs = null;
    // Inbound audio stats ids that have had packets: the sample in which one
    // first does is its playout start (playoutStart), whose concealment is the
    // jitter buffer filling, not a dropout. Kept across polls, unlike prev.
    this.playing = {};
  }

  StatsReducer.prototype._delta = function (id, cur, name, reset) {
    var c = num(cur[name]);
    if (c === null) return null;
    var before = this.prev[id];
    var p = before ? num(before[name]) : null;
    // New object (or a counter that just appeared): it started from zero
    // after the previous poll. The baseline poll never gets here.
    if (p === null || reset) return c;
    return c - p;
  };

  StatsReducer.prototype._isReset = function (id, cur, names) {
    var before = this.prev[id];
    if (!before) return false;
    for (var i = 0; i < names.length; i++) {
      var c = num(cur[names[i]]);
      var p = num(before[names[i]]);
      if (c !== null && p !== null && c < p) return true;
    }
    return false;
  };

  // Seconds elapsed for this stats object, from its own timestamps.
  StatsReducer.prototype._dt = function (id, cur, reset, fallbackMs) {
    var before = this.prev[id];
    if (before && !reset && num(before.timestamp) !== null && num(cur.timestamp) !== null) {
      var dt = cur.timestamp - before.timestamp;
      if (dt > 0) return dt;
    }
    return fallbackMs;
  };

  StatsReducer.prototype._bitrate = function (id, cur, name, reset, dtMs) {
    var bytes = this._delta(id, cur, name, reset);
    return bytes === null || !(dtMs > 0) ? null : round(bytes * 8 / dtMs, 1); // bytes/ms*8 = kbit/s
  };

  // Interval mean of an RTT from (total, count) counters, else the latest
  // value. When the count did not grow, no RTT was measured in the interval:
  // the latest value is an old measurement repeated, so the interval has
  // none (null), and a median counts each measurement once.
  StatsReducer.prototype._rtt = function (id, cur, totalName, countName, latestName) {
    var before = this.prev[id];
    var t = num(cur[totalName]);
    var n = num(cur[countName]);
    if (before && t !== null && n !== null && num(before[totalName]) !== null && num(before[countName]) !== null) {
      var dn = n - before[countName];
      var dtot = t - before[totalName];
      if (dn > 0 && dtot >= 0) return round(dtot / dn * 1000, 1);
      if (dn === 0) return null;
    }
    var latest = num(cur[latestName]);
    return latest === null ? null : round(latest * 1000, 1);
  };

  StatsReducer.prototype.reduce = function (report, intervalMs) {
    var byId = {};
    var list = [];
    report.forEach(function (s) { byId[s.id] = s; list.push(s); });
    var remoteInbound = {};
    var remoteOutbound = {};
    list.forEach(function (s) {
      if (s.type === 'remote-inbound-rtp' && s.localId) remoteInbound[s.localId] = s;
      if (s.type === 'remote-outbound-rtp' && s.localId) remoteOutbound[s.localId] = s;
    });
    this._carryOver(list, byId);
    var self = this;
    var streams = [];
    var baseline = !this.countFromZero && this.polls === 0;
    list.forEach(function (s) {
      if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') return;
      var kind = s.kind || s.mediaType;
      if (kind !== 'audio' && kind !== 'video') return;
      var f = baseline ? null : (s.type === 'inbound-rtp' ? self._inbound(s, kind, remoteOutbound[s.id], intervalMs)
        : self._outbound(s, kind, remoteInbound[s.id], intervalMs));
      if (s.type === 'inbound-rtp' && kind === 'audio' && !self.playing[s.id] && num(s.packetsReceived) > 0) {
        // On the baseline poll the stream was already playing before we watched.
        self.playing[s.id] = true;
        if (f) f.playoutStart = true;
      }
      if (f) streams.push(f);
    });
    var connection = this._connection(list, byId);
    // The report's own time (when the browser read its counters): a sample's
    // window is from one report's time to the next, not from when the timer
    // fired, which a busy page delays by tens of milliseconds.
    var ts = null;
    list.forEach(function (s) { var v = num(s.timestamp); if (v !== null && (ts === null || v > ts)) ts = v; });
    var prevTs = this.lastTs;
    this.lastTs = ts;
    // Remember this report for the next interval. Objects that disappeared
    // are forgotten, so an id reused later counts as a new stream.
    var next = {};
    list.forEach(function (s) { next[s.id] = s; });
    this.prev = next;
    this.polls += 1;
    return { streams: streams, connection: connection, baseline: baseline, ts: ts, prevTs: prevTs };
  };

  // Renegotiation can rename an RTP stats object (Chromium's ids embed the
  // transport's, which changes when a bundled transceiver is removed) while
  // its counters carry on. A new id whose type, kind and SSRC match one that
  // just vanished is that object: continue from it, or its whole history
  // would be counted again. A genuinely new stream that reuses an SSRC has
  // lower counters, which the reset check then catches.
  StatsReducer.prototype._carryOver = function (list, byId) {
    var gone = {};
    for (var id in this.prev) {
      var p = this.prev[id];
      if (!byId[id] && RTP_TYPES[p.type] && num(p.ssrc) !== null) gone[p.type + '/' + (p.kind || '') + '/' + p.ssrc] = p;
    }
    for (var i = 0; i < list.length; i++) {
      var s = list[i];
      if (this.prev[s.id] || !RTP_TYPES[s.type] || num(s.ssrc) === null) continue;
      var key = s.type + '/' + (s.kind || '') + '/' + s.ssrc;
      if (gone[key]) {
        this.prev[s.id] = gone[key];
        if (this.playing[gone[key].id]) this.playing[s.id] = true;
        delete gone[key];
      }
    }
  };

  StatsReducer.prototype._inbound = function (s, kind, remote, intervalMs) {
    var reset = this._isReset(s.id, s, ['packetsReceived', 'bytesReceived', 'framesDecoded', 'totalSamplesReceived']);
    var dt = this._dt(s.id, s, reset, intervalMs);
    var f = { kind: kind, direction: 'inbound' };
    put(f, 'ssrc', num(s.ssrc));
    var d = {};
    for (var i = 0; i < INBOUND_COUNTERS.length; i++) {
      var name = INBOUND_COUNTERS[i];
      var v = this._delta(s.id, s, name, reset);
      if (v !== null && name !== 'packetsLost' && v < 0) v = 0;
      d[name] = v;
      put(f, name, v);
    }
    if (d.packetsReceived !== null && d.packetsLost !== null) {
      // Video packetsReceived includes retransmissions (RTX) and padding:
      // count only first transmissions or loss is understated several-fold.
      var fresh = Math.max(d.packetsReceived - (d.retransmittedPacketsReceived || 0), 0);
      var lost = Math.max(d.packetsLost, 0);
      if (lost + fresh > 0) f.lossFraction = round(Math.min(lost / (lost + fresh), 1), 4);
    }
    put(f, 'jitterMs', num(s.jitter) === null ? null : round(s.jitter * 1000, 1));
    put(f, 'bitrateKbps', this._bitrate(s.id, s, 'bytesReceived', reset, dt));
    if (kind === 'video') {
      var fps = num(s.framesPerSecond);
      if (fps === null && d.framesDecoded !== null && dt > 0) fps = d.framesDecoded * 1000 / dt;
      put(f, 'framesPerSecond', round(fps, 1));
      var fr = this._delta(s.id, s, 'totalFreezesDuration', reset);
      put(f, 'totalFreezesDurationMs', fr === null ? null : round(Math.max(fr, 0) * 1000, 1));
      var pa = this._delta(s.id, s, 'totalPausesDuration', reset);
      put(f, 'totalPausesDurationMs', pa === null ? null : round(Math.max(pa, 0) * 1000, 1));
    } else {
      var level = num(s.audioLevel);
      // When the last audio packet arrived (the stats clock, epoch ms): where
      // an outage began, to the packet, whenever the poll falls after it.
      var lastRx = num(s.lastPacketReceivedTimestamp);
      if (lastRx !== null && lastRx > 0) f.lastPacketReceivedMs = round(lastRx, 1);
      if (level !== null && level >= 0 && level <= 1) f.audioLevel = round(level, 3);
    }
    if (remote) put(f, 'rttMs', this._rtt(remote.id, remote, 'totalRoundTripTime', 'roundTripTimeMeasurements',
      'roundTripTime'));
    return f;
  };

  StatsReducer.prototype._outbound = function (s, kind, remote, intervalMs) {
    var reset = this._isReset(s.id, s, ['packetsSent', 'bytesSent']);
    var dt = this._dt(s.id, s, reset, intervalMs);
    var f = { kind: kind, direction: 'outbound' };
    put(f, 'ssrc', num(s.ssrc));
    // Simulcast: one outbound stream per layer, named by its RTP stream id.
    if (typeof s.rid === 'string' && s.rid.length <= 16) f.rid = s.rid;
    for (var i = 0; i < OUTBOUND_COUNTERS.length; i++) {
      var v = this._delta(s.id, s, OUTBOUND_COUNTERS[i], reset);
      put(f, OUTBOUND_COUNTERS[i], v === null ? null : Math.max(v, 0));
    }
    put(f, 'bitrateKbps', this._bitrate(s.id, s, 'bytesSent', reset, dt));
    if (kind === 'video') {
      put(f, 'framesPerSecond', round(num(s.framesPerSecond), 1));
      if (QL_REASONS[s.qualityLimitationReason]) f.qualityLimitationReason = s.qualityLimitationReason;
    }
    if (remote) {
      // What the far end reports about this stream (RTCP receiver reports).
      put(f, 'rttMs', this._rtt(remote.id, remote, 'totalRoundTripTime', 'roundTripTimeMeasurements',
        'roundTripTime'));
      put(f, 'jitterMs', num(remote.jitter) === null ? null : round(remote.jitter * 1000, 1));
      put(f, 'packetsLost', this._delta(remote.id, remote, 'packetsLost', reset));
      var fl = num(remote.fractionLost);
      if (fl !== null && fl >= 0 && fl <= 1) f.lossFraction = round(fl, 4);
    }
    return f;
  };

  StatsReducer.prototype._connection = function (list, byId) {
    var pair = null;
    list.forEach(function (s) {
      if (s.type === 'transport' && s.selectedCandidatePairId && byId[s.selectedCandidatePairId]) {
        pair = byId[s.selectedCandidatePairId];
      }
    });
    if (!pair) {
      list.forEach(function (s) {
        if (!pair && s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s;
      });
    }
    if (!pair) return null;
    var c = {};
    var local = byId[pair.localCandidateId];
    var remote = byId[pair.remoteCandidateId];
    if (local) {
      if (CANDIDATE_TYPES[local.candidateType]) c.localCandidateType = local.candidateType;
      if (local.protocol === 'udp' || local.protocol === 'tcp') c.protocol = local.protocol;
      if (local.relayProtocol === 'udp' || local.relayProtocol === 'tcp' || local.relayProtocol === 'tls') {
        c.relayProtocol = local.relayProtocol;
      }
    }
    if (remote && CANDIDATE_TYPES[remote.candidateType]) c.remoteCandidateType = remote.candidateType;
    put(c, 'rttMs', this._rtt(pair.id, pair, 'totalRoundTripTime', 'responsesReceived', 'currentRoundTripTime'));
    var aob = num(pair.availableOutgoingBitrate);
    if (aob !== null) c.availableOutgoingBitrateKbps = round(aob / 1000, 1);
    c._bytes = (num(pair.bytesSent) || 0) + (num(pair.bytesReceived) || 0);
    return c;
  };

  // ---------------------------------------------------------------------
  // The quality badge: good / degraded / poor from one sample's figures.
  // Thresholds are documented in docs/integrate-browser.md ("The badge").
  // ---------------------------------------------------------------------
  var BADGE = {
    degraded: { loss: 0.02, rttMs: 300, jitterMs: 30, concealed: 0.02 },
    poor: { loss: 0.08, rttMs: 600, freezeMs: 500, concealed: 0.10 }
  };

  function summarise(sample) {
    var inb = sample.streams.filter(function (s) { return s.direction === 'inbound'; });
    var lost = 0, fresh = 0, concealed = 0, total = 0, freeze = 0, jitter = null;
    inb.forEach(function (s) {
      if (typeof s.packetsLost === 'number' && typeof s.packetsReceived === 'number') {
        lost += Math.max(s.packetsLost, 0);
        fresh += Math.max(s.packetsReceived - (s.retransmittedPacketsReceived || 0), 0);
      }
      // A stream's playout start conceals while its jitter buffer fills (as the server's headline rule).
      if (s.kind === 'audio' && typeof s.concealedSamples === 'number' && !s.playoutStart) {
        concealed += s.concealedSamples;
        total += s.totalSamplesReceived || 0;
      }
      if (typeof s.totalFreezesDurationMs === 'number') freeze += s.totalFreezesDurationMs;
      if (typeof s.jitterMs === 'number') jitter = Math.max(jitter || 0, s.jitterMs);
    });
    var rtt = sample.connection && typeof sample.connection.rttMs === 'number' ? sample.connection.rttMs : null;
    if (rtt === null) {
      sample.streams.forEach(function (s) { if (typeof s.rttMs === 'number') rtt = Math.max(rtt || 0, s.rttMs); });
    }
    return {
      streams: inb.length,
      loss: lost + fresh > 0 ? lost / (lost + fresh) : null,
      rttMs: rtt,
      jitterMs: jitter,
      freezeMs: freeze,
      concealed: total > 0 ? Math.min(concealed / total, 1) : (concealed > 0 ? 1 : null)
    };
  }

  function classify(sample) {
    var m = summarise(sample);
    if (!m.streams) return 'idle';
    var p = BADGE.poor, d = BADGE.degraded;
    if ((m.loss !== null && m.loss >= p.loss) || (m.rttMs !== null && m.rttMs >= p.rttMs) ||
        m.freezeMs >= p.freezeMs || (m.concealed !== null && m.concealed >= p.concealed)) return 'poor';
    if ((m.loss !== null && m.loss >= d.loss) || (m.rttMs !== null && m.rttMs >= d.rttMs) ||
        (m.jitterMs !== null && m.jitterMs >= d.jitterMs) || (m.concealed !== null && m.concealed >= d.concealed)) {
      return 'degraded';
    }
    return 'good';
  }

  // The badge shows the worst state of the last few intervals, so a single
  // bad second stays visible long enough to be seen.
  function Badge(target, windowSize) {
    this.states = [];
    this.windowSize = windowSize || 3;
    this.state = 'idle';
    this.el = null;
    if (!target || typeof document === 'undefined') return;
    var el = document.createElement('div');
    el.className = 'bondline-badge';
    el.setAttribute('role', 'status');
    el.setAttribute('aria-live', 'polite');
    el.style.cssText = 'font:600 12px/1.2 system-ui,sans-serif;padding:4px 8px;border-radius:12px;color:#fff;' +
      'display:inline-flex;align-items:center;gap:6px;background:#5a6470;z-index:2147483647;';
    if (target === true) {
      el.style.position = 'fixed';
      el.style.right = '12px';
      el.style.bottom = '12px';
      (document.body || document.documentElement).appendChild(el);
    } else if (target.appendChild) {
      target.appendChild(el);
    }
    this.el = el;
    this.render();
  }
  var BADGE_LOOK = {
    idle: ['#5a6470', 'Connection: waiting'],
    good: ['#1e7b3a', 'Connection: good'],
    degraded: ['#a35f00', 'Connection: degraded'],
    poor: ['#b3261e', 'Connection: poor'],
    // Never "good" while nothing reaches the server: the badge says so instead.
    refused: ['#5a6470', 'Bondline: not recording (server refused)'],
    unsent: ['#5a6470', 'Bondline: not reaching the server']
  };
  // Samples waiting this long on a closed link mean nothing is being delivered.
  var UNSENT_AFTER_MS = 5000;
  var RANK = { idle: 0, good: 1, degraded: 2, poor: 3 };
  Badge.prototype.update = function (state) {
    this.states.push(state);
    if (this.states.length > this.windowSize) this.states.shift();
    var worst = 'idle';
    this.states.forEach(function (s) { if (RANK[s] > RANK[worst]) worst = s; });
    this.state = worst;
    this.render();
  };
  // What the badge shows: the connection's state, unless delivery has failed.
  Badge.prototype.shown = function () { return this.delivery || this.state; };
  Badge.prototype.setDelivery = function (delivery) {
    if (delivery === this.delivery) return;
    this.delivery = delivery;
    this.render();
  };
  Badge.prototype.render = function () {
    if (!this.el) return;
    var shown = this.shown();
    var look = BADGE_LOOK[shown];
    this.el.style.background = look[0];
    this.el.textContent = look[1];
    this.el.setAttribute('data-state', shown);
  };
  Badge.prototype.remove = function () {
    if (this.el && this.el.parentNode) this.el.parentNode.removeChild(this.el);
    this.el = null;
  };

  // ---------------------------------------------------------------------
  // Link: the WebSocket uplink (same protocol and rules as plugin/uplink.py).
  // An item leaves the queue only when its batch is acknowledged (the server
  // acks after commit); unacknowledged items are resent after a reconnect;
  // the server stores each (participant, seq) once, so resends are harmless.
  // ---------------------------------------------------------------------
  function httpBase(server) {
    var base = String(server).replace(/\/+$/, '');
    return base.replace(/^ws(s?):\/\//, 'http$1://');
  }

  function Link(opts) {
    var base = httpBase(opts.server);
    this.httpUrl = base + '/v1/telemetry';
    this.wsUrl = base.replace(/^http(s?):\/\//, 'ws$1://') + '/v1/telemetry';
    this.token = opts.token;
    this.maxQueue = opts.maxQueue || 3600;
    this.batchMax = opts.batchMax || 60;
    this.maxInflight = 4;
    this.backoffMs = opts.backoffMs || 500;
    this.backoffMaxMs = opts.backoffMaxMs || 30000;
    this.pending = [];
    this.inflight = {};
    this.nextBatch = 1;
    this.nextSeq = null;
    this.ws = null;
    this.connected = false;
    this.failed = null;
    this.stopped = false;
    this.failures = 0;
    this.timer = null;
    this.lastError = null;
    this.serverBatchMax = 500;
    this.downSince = Date.now();
    this.stats = { submitted: 0, acked: 0, dropped: 0, rejected: 0, resent: 0, batches: 0, bytesSent: 0,
      connects: 0, lastSeq: null, beacons: 0 };
  }

  Link.prototype.outstanding = function () {
    var n = this.pending.length;
    for (var id in this.inflight) n += this.inflight[id].length;
    return n;
  };

  Link.prototype.add = function (item) {
    if (this.outstanding() >= this.maxQueue) {
      // Offline too long: drop the oldest waiting sample, keep the newest.
      var victim = -1;
      for (var i = 0; i < this.pending.length; i++) { if (this.pending[i].k === 's') { victim = i; break; } }
      if (victim < 0 && this.pending.length) victim = 0;
      this.stats.dropped += 1;
      if (victim < 0) return;
      this.pending.splice(victim, 1);
    }
    this.pending.push(item);
    this.stats.submitted += 1;
    this.pump();
  };

  /** null while samples are delivered; 'refused' or 'unsent' when they are not. */
  Link.prototype.delivery = function () {
    if (this.failed) return 'refused';
    if (!this.connected && this.downSince !== null && Date.now() - this.downSince >= UNSENT_AFTER_MS &&
        this.outstanding() > 0) return 'unsent';
    return null;
  };

  Link.prototype.sample = function (body) {
    if (this.nextSeq !== null) body.seq = this.nextSeq++;
    this.add({ k: 's', b: body, iso: false });
  };

  Link.prototype.event = function (body) { this.add({ k: 'e', b: body, iso: false }); };

  Link.prototype.connect = function () {
    if (this.stopped || this.failed || this.ws || typeof WebSocket === 'undefined') return;
    var self = this;
    var ws;
    try { ws = new WebSocket(this.wsUrl); } catch (e) { this._closed(1006, String(e)); return; }
    this.ws = ws;
    this.lastError = null;
    ws.onopen = guard(function () { ws.send(JSON.stringify({ type: 'auth', token: self.token })); });
    ws.onmessage = guard(function (ev) { self._message(ev.data); });
    ws.onclose = guard(function (ev) { if (self.ws === ws) { self.ws = null; self._closed(ev.code, ev.reason); } });
  };

  Link.prototype._message = function (data) {
    var msg;
    try { msg = JSON.parse(data); } catch (e) { return; }
    if (msg.type === 'welcome') {
      this.connected = true;
      this.downSince = null;
      this.failures = 0;
      this.stats.connects += 1;
      this.stats.lastSeq = msg.lastSeq;
      if (typeof msg.maxBatchSamples === 'number') this.serverBatchMax = msg.maxBatchSamples;
      // Continue after the last stored seq, so a reloaded page never reuses one.
      var next = typeof msg.lastSeq === 'number' ? msg.lastSeq + 1 : 0;
      if (this.nextSeq === null || next > this.nextSeq) this.nextSeq = next;
      for (var i = 0; i < this.pending.length; i++) {
        var it = this.pending[i];
        if (it.k === 's' && typeof it.b.seq !== 'number') it.b.seq = this.nextSeq++;
      }
      this.pump();
    } else if (msg.type === 'ack') {
      var items = this.inflight[msg.batch];
      if (items) {
        delete this.inflight[msg.batch];
        this.stats.acked += items.length;
      }
      this.pump();
    } else if (msg.type === 'error') {
      this.lastError = { code: msg.code, reason: msg.reason };
    }
  };

  Link.prototype._closed = function (code, reason) {
    if (this.connected || this.downSince === null) this.downSince = Date.now();
    this.connected = false;
    if (this.lastError) { code = this.lastError.code; reason = this.lastError.reason; }
    if (FATAL_CONNECTION[code]) {
      this.failed = code + ': ' + reason;
      // 4403 is the server refusing this page's origin (reason says what to set); 4401 the token.
      warn(code === 4403 ? 'the Bondline server refused this page (' + this.failed + '); telemetry stopped'
        : 'the server refused the ingest token (' + this.failed + '); telemetry stopped');
      return;
    }
    var ids = Object.keys(this.inflight).map(Number).sort(function (a, b) { return a - b; });
    if (FATAL_BATCH[code] && ids.length) {
      var bad = this.inflight[ids[0]];
      delete this.inflight[ids[0]];
      ids.shift();
      if (bad.length === 1) {
        this.stats.rejected += 1;
        warn('the server refused a sample (' + code + ': ' + reason + '); dropped');
      } else {
        // Resend them one at a time so only the bad one is lost.
        bad.forEach(function (it) { it.iso = true; });
        this.pending = bad.concat(this.pending);
      }
    }
    var back = [];
    for (var i = 0; i < ids.length; i++) back = back.concat(this.inflight[ids[i]]);
    this.inflight = {};
    this.stats.resent += back.length;
    this.pending = back.concat(this.pending);
    if (this.stopped) return;
    var delay;
    if (FATAL_BATCH[code]) {
      delay = 50;
    } else {
      this.failures += 1;
      var ceiling = Math.min(this.backoffMaxMs, this.backoffMs * Math.pow(2, this.failures - 1));
      delay = ceiling / 2 + Math.random() * ceiling / 2;
    }
    var self = this;
    this.timer = setTimeout(guard(function () { self.timer = null; self.connect(); }), delay);
  };

  Link.prototype._take = function () {
    var chosen = [], keep = [], samples = 0, events = 0;
    var limit = Math.min(this.batchMax, this.serverBatchMax);
    var i = 0;
    for (; i < this.pending.length; i++) {
      var it = this.pending[i];
      if (it.k === 's' && typeof it.b.seq !== 'number') { keep.push(it); continue; }
      if (it.iso && chosen.length) break;
      if (it.k === 'e' && events >= 200) break;
      chosen.push(it);
      if (it.k === 'e') events += 1; else samples += 1;
      if (it.iso || samples >= limit) { i += 1; break; }
    }
    this.pending = keep.concat(this.pending.slice(i));
    return chosen;
  };

  Link.prototype.message = function (items, batchId, withToken) {
    var msg = { type: 'samples', schema: SCHEMA, batch: batchId, samples: [], events: [] };
    if (withToken) msg.token = this.token;
    items.forEach(function (it) { (it.k === 's' ? msg.samples : msg.events).push(it.b); });
    return JSON.stringify(msg);
  };

  Link.prototype.pump = function () {
    if (!this.connected || !this.ws || this.ws.readyState !== 1) return;
    // A slow network: let the socket drain before queueing more on it.
    while (Object.keys(this.inflight).length < this.maxInflight && this.ws.bufferedAmount < 65536) {
      var items = this._take();
      if (!items.length) break;
      var id = this.nextBatch++;
      var text = this.message(items, id, false);
      this.inflight[id] = items;
      this.stats.batches += 1;
      this.stats.bytesSent += text.length;
      this.ws.send(text);
    }
    if (this.stopped && !this.outstanding()) this.ws.close(1000, 'collector stopped');
  };

  // Page is going away: post what is numbered and not yet acknowledged.
  // Duplicates of batches already committed are ignored by the server.
  Link.prototype.beacon = function (only) {
    if (this.failed || typeof navigator === 'undefined' || !navigator.sendBeacon) return 0;
    var items = [];
    if (only) {
      // Just these samples (the last interval, read after the page began to go).
      items = only.filter(function (b) { return typeof b.seq === 'number'; }).map(function (b) { return { k: 's', b: b }; });
    } else {
      for (var id in this.inflight) items = items.concat(this.inflight[id]);
      items = items.concat(this.pending).filter(function (it) { return it.k === 'e' || typeof it.b.seq === 'number'; });
    }
    var sent = 0;
    var chunk = 20;
    for (var i = 0; i < items.length; i += chunk) {
      var body = this.message(items.slice(i, i + chunk), null, true);
      // text/plain keeps a cross-origin beacon free of a CORS preflight.
      if (navigator.sendBeacon(this.httpUrl, new Blob([body], { type: 'text/plain;charset=UTF-8' }))) {
        sent += Math.min(chunk, items.length - i);
        this.stats.beacons += 1;
      }
    }
    return sent;
  };

  Link.prototype.stop = function (timeoutMs) {
    var self = this;
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    return new Promise(function (resolve) {
      var deadline = Date.now() + timeoutMs;
      (function check() {
        if (!self.outstanding() || !self.ws || self.failed || Date.now() >= deadline) {
          if (self.outstanding() && !self.failed) self.beacon();
          if (self.ws) { try { self.ws.close(1000, 'collector stopped'); } catch (e) { /* already closing */ } }
          self.ws = null;
          resolve(self.outstanding() === 0);
          return;
        }
        self.pump();
        setTimeout(check, 50);
      })();
    });
  };

  // ---------------------------------------------------------------------
  // Collector: one participant's telemetry, from any number of connections.
  // ---------------------------------------------------------------------
  var FAR_ENDS = { sfu: 1, peer: 1 };
  var FAR_END_KEY = '__bondlineFarEnd';
  var CONN_STATES = { 'new': 1, connecting: 1, connected: 1, disconnected: 1, failed: 1, closed: 1 };
  var ICE_STATES = { 'new': 1, checking: 1, connected: 1, completed: 1, disconnected: 1, failed: 1, closed: 1 };
  var now = function () { return Date.now(); };
  var clock = function () { return typeof performance !== 'undefined' ? performance.now() : Date.now(); };

  function Collector(opts) {
    if (!opts || typeof opts.server !== 'string' || typeof opts.token !== 'string') {
      throw new Error('Bondline.start needs {server: "<url>", token: "<participant token>"}');
    }
    this.intervalMs = Math.max(250, Math.min(60000, Number(opts.intervalMs) || 1000));
    this.link = new Link(opts);
    this.watched = [];
    this.pcCount = 0;
    // Who is at the other end of a connection by default: "peer" (the other
    // participant) or "sfu" (a media server). Bondline.label(pc, ...) overrides it per connection.
    this.farEnd = FAR_ENDS[opts.farEnd] ? opts.farEnd : 'peer';
    this.missed = 0;
    this.missedAfterMedia = 0;
    this.instance = Math.random().toString(36).slice(2, 10) + now().toString(36);
    this.eventCount = 0;
    this.lastTick = now();
    this.busy = false;
    this.queue = Promise.resolve();
    this.lastSample = null;
    this.onSample = typeof opts.onSample === 'function' ? opts.onSample : null;
    this.badge = new Badge(opts.badge === undefined ? false : opts.badge, 3);
    this.cost = { ticks: 0, getStatsMs: 0, workMs: 0, sampleBytes: 0, samples: 0 };
    var self = this;
    this.timer = setInterval(guard(function () { self.tick(); }), this.intervalMs);
    // The page is going away. getStats answers asynchronously and a page
    // that is hidden runs no more tasks, so the last read starts at
    // beforeunload (the old page lives on until the next one arrives) and
    // again at pagehide if none is under way; pagehide posts what is queued
    // at once, and a last sample that arrives after it is posted alone.
    this.leaving = false;
    this.onLeave = guard(function (ev) {
      if (ev.type === 'pageshow') { self.leaving = false; return; } // back from the back-forward cache
      if (ev.type === 'pagehide') { self.leaving = true; self.link.beacon(); }
      if (self.lastLeave && now() - self.lastLeave < 2000) return;
      self.lastLeave = now();
      self.tick(true).then(guard(function (sample) { if (sample && self.leaving) self.link.beacon([sample]); }));
    });
    if (global.addEventListener) {
      global.addEventListener('beforeunload', this.onLeave);
      global.addEventListener('pagehide', this.onLeave);
      global.addEventListener('pageshow', this.onLeave);
    }
    this.link.connect();
  }

  Collector.prototype.event = function (kind, data) {
    var body = { key: this.instance + '.' + (++this.eventCount), kind: kind, tMs: now() };
    for (var k in data) body[k] = data[k];
    this.link.event(body);
  };

  Collector.prototype.find = function (pc) {
    for (var i = 0; i < this.watched.length; i++) if (this.watched[i].pc === pc) return this.watched[i];
    return null;
  };

  Collector.prototype.attach = function (pc, fromCreation, farEnd) {
    if (!pc || typeof pc.getStats !== 'function') return false;
    var known = this.find(pc);
    if (known) {
      if (FAR_ENDS[farEnd]) known.farEnd = farEnd;
      return true;
    }
    var self = this;
    var w = { pc: pc, n: ++this.pcCount, reducer: new StatsReducer(fromCreation), closed: false, conn: null, ice: null,
      farEnd: FAR_ENDS[farEnd] ? farEnd : (FAR_ENDS[pc[FAR_END_KEY]] ? pc[FAR_END_KEY] : this.farEnd),
      primed: null };
    if (!fromCreation) {
      // Poll now: what the connection counted before we watched is the
      // baseline, and every stream that appears after it counts from zero,
      // so media that starts before the first tick is reported too.
      w.primed = pc.getStats().then(guard(function (r) { w.reducer.reduce(r, self.intervalMs); }), function () { })
        .then(function () { w.primed = null; });
    }
    w.onConn = guard(function () {
      var st = pc.connectionState;
      if (st === w.conn) return;
      w.conn = st;
      self.event('connection.state', { pc: w.n, state: st });
      if (st === 'closed') w.closed = true;
    });
    w.onIce = guard(function () {
      var st = pc.iceConnectionState;
      if (st === w.ice) return;
      w.ice = st;
      self.event('ice.state', { pc: w.n, state: st });
    });
    pc.addEventListener('connectionstatechange', w.onConn);
    pc.addEventListener('iceconnectionstatechange', w.onIce);
    // close() fires no state event and its counters are gone afterwards:
    // read them once more first (getStats is asked before the connection
    // closes, so the last partial interval is still counted).
    var nativeClose = pc.close;
    if (typeof nativeClose === 'function') {
      w.closeHook = function () {
        try {
          if (!w.closed && !self.stopped) { self.tick(true); w.closed = true; w.finalPolled = true; }
        } catch (e) { warn('final poll failed', e); }
        return nativeClose.apply(pc, arguments);
      };
      try { pc.close = w.closeHook; } catch (e) { w.closeHook = null; }
    }
    this.watched.push(w);
    this.event('pc.open', { pc: w.n, watchedFromStart: !!fromCreation, farEnd: w.farEnd });
    return true;
  };

  // A connection the constructor wrapper never saw (an SDK kept its own
  // reference to RTCPeerConnection, or made it before start()) shows up when
  // the page negotiates on it. Watch it from now on, and say so: a connection
  // that already carried media has lost its history before this moment.
  Collector.prototype.adopt = function (pc) {
    if (isOwn(pc) || this.find(pc) || pc.connectionState === 'closed' || pc.signalingState === 'closed') return;
    var fresh = pc.connectionState === 'new' && pc.iceConnectionState === 'new';
    this.missed += 1;
    if (!fresh) this.missedAfterMedia += 1;
    warn('a connection was made without the RTCPeerConnection wrapper (a library kept its own reference, or it ' +
      'was made before Bondline.start); watching it from now on' + (fresh ? ', before any media' :
        ', its figures before now are missing') + '. Load bondline.js first: docs/integrate-browser.md');
    this.attach(pc, fresh);
    var w = this.find(pc);
    if (w) this.event('pc.missed', { pc: w.n, beforeMedia: fresh });
  };

  Collector.prototype._forget = function (w) {
    try {
      w.pc.removeEventListener('connectionstatechange', w.onConn);
      w.pc.removeEventListener('iceconnectionstatechange', w.onIce);
      if (w.closeHook && w.pc.close === w.closeHook) delete w.pc.close;
    } catch (e) { /* the connection object is gone */ }
    this.watched = this.watched.filter(function (x) { return x !== w; });
  };

  // One poll of every watched connection. Returns a promise for tests; the
  // interval timer ignores it. ``now`` polls even while a poll is under way
  // (stop, close, pagehide): getStats is asked at once, and the reductions
  // run in the order the polls were asked, so no counter is read twice.
  Collector.prototype.tick = function (now_) {
    if (this.stopped || (this.busy && !now_)) return Promise.resolve(null);
    var live = this.watched.filter(function (w) { return !w.closed || !w.finalPolled; });
    var startMs = this.lastTick;
    var t = now();
    this.lastTick = t;
    if (!live.length) return Promise.resolve(null);
    this.busy = true;
    var self = this;
    var t0 = clock();
    var asked = live.map(function (w) {
      if (w.pc.signalingState === 'closed' || w.pc.connectionState === 'closed') w.closed = true;
      if (w.closed) w.finalPolled = true;
      var stats = w.primed ? w.primed.then(function () { return w.pc.getStats(); }) : w.pc.getStats();
      return stats.then(function (r) { return [w, r]; }, function () { return [w, null]; });
    });
    var run = this.queue.then(function () { return Promise.all(asked); }).then(guard(function (results) {
      var t1 = clock();
      self.cost.getStatsMs += t1 - t0;
      var sample = self._emit(results, startMs, Math.max(50, t - startMs));
      self.cost.workMs += clock() - t1;
      self.cost.ticks += 1;
      return sample;
    }, null));
    this.queue = run.then(function () { self.busy = false; }, function () { self.busy = false; });
    return run;
  };

  Collector.prototype._emit = function (results, startMs, intervalMs) {
    var streams = [];
    var best = null, bestW = null, open = 0, any = false, window_ = null;
    for (var i = 0; i < results.length; i++) {
      var w = results[i][0], report = results[i][1];
      if (!w.closed) open += 1;
      if (w.closed && w.finalPolled) this._forget(w);
      if (!report) continue;
      var r = w.reducer.reduce(report, intervalMs);
      if (r.baseline) continue;
      any = true;
      // Which connection and who is at its far end: through an SFU a participant
      // has several connections, each a different leg of the call.
      for (var j = 0; j < r.streams.length; j++) { r.streams[j].pc = w.n; r.streams[j].farEnd = w.farEnd; }
      // Epoch-ms report times, when they are (a clock within a minute of ours).
      if (!window_ && r.prevTs !== null && r.ts > r.prevTs && Math.abs(r.ts - now()) < 60000) {
        window_ = [r.prevTs, r.ts - r.prevTs];
      }
      streams = streams.concat(r.streams);
      if (r.connection && (!best || r.connection._bytes > best._bytes)) { best = r.connection; bestW = w; }
    }
    if (!any) return null;
    if (window_) { startMs = window_[0]; intervalMs = window_[1]; }
    var sample = { startMs: Math.round(startMs), intervalMs: Math.round(intervalMs), source: 'browser',
      streams: streams.slice(0, 64) };
    var conn = best || {};
    delete conn._bytes;
    var ref = bestW || results[0][0];
    if (CONN_STATES[ref.pc.connectionState]) conn.state = ref.pc.connectionState;
    if (ICE_STATES[ref.pc.iceConnectionState]) conn.iceState = ref.pc.iceConnectionState;
    conn.connections = open;
    sample.connection = conn;
    var state = classify(sample);
    this.badge.update(state);
    this.link.sample(sample);
    this.badge.setDelivery(this.link.delivery());
    this.lastSample = sample;
    this.cost.samples += 1;
    this.cost.sampleBytes += JSON.stringify(sample).length;
    if (this.onSample) { try { this.onSample(sample, this.badge.shown()); } catch (e) { warn('onSample threw', e); } }
    return sample;
  };

  Collector.prototype.status = function () {
    var s = this.link.stats;
    return {
      connected: this.link.connected,
      failed: this.link.failed,
      queued: this.link.outstanding(),
      nextSeq: this.link.nextSeq,
      submitted: s.submitted, acked: s.acked, dropped: s.dropped, rejected: s.rejected, resent: s.resent,
      connects: s.connects, beacons: s.beacons, bytesSent: s.bytesSent,
      connections: this.watched.length,
      watching: this.watched.map(function (w) { return { pc: w.n, farEnd: w.farEnd, closed: w.closed }; }),
      missed: this.missed,
      missedAfterMedia: this.missedAfterMedia,
      badge: this.badge.shown(),
      delivery: this.link.delivery(),
      lastSample: this.lastSample,
      cost: { ticks: this.cost.ticks, getStatsMs: this.cost.getStatsMs, workMs: this.cost.workMs,
        samples: this.cost.samples, sampleBytes: this.cost.sampleBytes }
    };
  };

  Collector.prototype.stop = function (timeoutMs) {
    if (this.stopped) return this.link.stop(typeof timeoutMs === 'number' ? timeoutMs : 3000);
    clearInterval(this.timer);
    if (global.removeEventListener) {
      global.removeEventListener('beforeunload', this.onLeave);
      global.removeEventListener('pagehide', this.onLeave);
      global.removeEventListener('pageshow', this.onLeave);
    }
    var self = this;
    // One more poll: the partial interval since the last tick is sent too
    // (after any poll still under way, e.g. the one a close() asked for).
    var last = this.tick(true);
    this.stopped = true;
    return last.then(function () { return self.queue; }).then(function () {
      self.watched.slice().forEach(function (w) { self._forget(w); });
      self.badge.remove();
      return self.link.stop(typeof timeoutMs === 'number' ? timeoutMs : 3000);
    });
  };

  function handle(c) {
    return {
      attach: guard(function (pc, farEnd) { return c.attach(pc, false, farEnd); }, false),
      label: guard(function (pc, farEnd) { return labelOn(c, pc, farEnd); }, false),
      stop: guard(function (t) { return c.stop(t); }, Promise.resolve(false)),
      status: guard(function () { return c.status(); }, null)
    };
  }

  // ---------------------------------------------------------------------
  // Wrapping window.RTCPeerConnection (the rtcstats approach): every
  // connection the page creates after start() is watched from its birth.
  // ---------------------------------------------------------------------
  var NativePC = global.RTCPeerConnection;
  // Bondline's own connections (the sidecar probe's) are never the platform's call.
  var OWN = typeof WeakSet === 'function' ? new WeakSet() : null;
  function isOwn(pc) { return !!(OWN && OWN.has(pc)); }
  var current = null;
  var Wrapped = null;
  var Inner = null;
  var patched = {};
  // Methods every connection calls while it negotiates: a connection made
  // outside the wrapper is found through them (prototype methods are shared
  // by all connections, however they were constructed).
  var NEGOTIATION = ['createOffer', 'createAnswer', 'setLocalDescription', 'setRemoteDescription', 'addIceCandidate',
    'addTrack', 'addTransceiver'];

  function labelOn(c, pc, farEnd) {
    if (!FAR_ENDS[farEnd] || !pc) return false;
    // Labelled before the wrapper saw it (or with no collector yet): remembered on the object.
    try { pc[FAR_END_KEY] = farEnd; } catch (e) { /* frozen object: the collector's label still holds */ }
    var w = c ? c.find(pc) : null;
    if (w) w.farEnd = farEnd;
    return true;
  }

  function wrap() {
    if (!NativePC || Wrapped) return;
    // Wrap whatever RTCPeerConnection is now: adapter.js (or another shim)
    // loaded before start() replaced the native one, and its fixes must stay.
    var inner = Inner = global.RTCPeerConnection || NativePC;
    // A shim loaded after start() may hold on to this function after stop():
    // it keeps constructing through what it wrapped (never through null).
    Wrapped = function RTCPeerConnection() {
      // new.target keeps subclasses of RTCPeerConnection working.
      var pc = Reflect.construct(inner, arguments, new.target || inner);
      if (current) { try { current.attach(pc, true); } catch (e) { warn('attach failed', e); } }
      return pc;
    };
    Wrapped.prototype = Inner.prototype;
    try { Object.setPrototypeOf(Wrapped, Inner); } catch (e) { /* statics stay reachable on Inner */ }
    global.RTCPeerConnection = Wrapped;
    if (global.webkitRTCPeerConnection === NativePC || global.webkitRTCPeerConnection === Inner) {
      global.webkitRTCPeerConnection = Wrapped;
    }
    var proto = NativePC.prototype;
    NEGOTIATION.forEach(function (name) {
      var original = proto[name];
      if (typeof original !== 'function') return;
      patched[name] = original;
      proto[name] = function () {
        if (current) { try { current.adopt(this); } catch (e) { warn('adopt failed', e); } }
        return original.apply(this, arguments);
      };
    });
  }

  function unwrap() {
    if (!Wrapped) return;
    if (global.RTCPeerConnection === Wrapped) global.RTCPeerConnection = Inner;
    if (global.webkitRTCPeerConnection === Wrapped) global.webkitRTCPeerConnection = Inner;
    var proto = NativePC.prototype;
    for (var name in patched) proto[name] = patched[name];
    patched = {};
    Wrapped = null;
    Inner = null;
  }

  var Bondline = {
    version: VERSION,
    /** Start collecting for this page's participant; wraps RTCPeerConnection unless {wrap: false}. */
    start: guard(function (opts) {
      if (current) return handle(current);
      current = new Collector(opts);
      if (!opts || opts.wrap !== false) wrap();
      return handle(current);
    }, null),
    /** Watch a connection created before start() or outside the wrapper; farEnd "sfu" | "peer" optional. */
    attach: guard(function (pc, farEnd) { return current ? current.attach(pc, false, farEnd) : false; }, false),
    /** Say who is at the far end of a connection: "sfu" (a media server) or "peer" (the other participant). */
    label: guard(function (pc, farEnd) { return labelOn(current, pc, farEnd); }, false),
    /** Stop polling, flush what is queued (resolves true when all was acknowledged). */
    stop: guard(function (timeoutMs) {
      unwrap();
      var c = current;
      current = null;
      return c ? c.stop(timeoutMs) : Promise.resolve(true);
    }, Promise.resolve(false)),
    status: guard(function () { return current ? current.status() : null; }, null),
    /** An independent collector (no wrapping), e.g. for two participants on one test page. */
    create: guard(function (opts) { return handle(new Collector(opts)); }, null),
    /** Mark a connection as Bondline's own (the probe's): never watched as the platform's call. */
    _own: function (pc) { if (OWN && pc) OWN.add(pc); return pc; },
    _internal: { StatsReducer: StatsReducer, Collector: Collector, classify: classify, summarise: summarise, Badge: Badge, Link: Link,
      thresholds: BADGE }
  };

  if (!global.Bondline) global.Bondline = Bondline;

  // The snippet's external-script form starts from its own tag, so a page
  // whose Content-Security-Policy forbids inline scripts needs none:
  // <script src="https://bondline.example/plugin/bondline.js" data-bondline-token="blp_..."></script>
  // (data-bondline-server defaults to where the script came from; data-bondline-badge="on" shows the badge).
  try {
    var tag = typeof document !== 'undefined' ? document.currentScript : null;
    var startToken = tag && tag.getAttribute('data-bondline-token');
    if (startToken) {
      var startServer = tag.getAttribute('data-bondline-server') || new URL(tag.src, global.location.href).origin;
      global.Bondline.start({ server: startServer, token: startToken,
        badge: tag.getAttribute('data-bondline-badge') === 'on' });
    }
  } catch (e) { warn('could not start from the script tag', e); }
})(typeof window !== 'undefined' ? window : this);
