/*! Bondline probe: an active check of this browser's path to the Bondline sidecar.
 *
 *   var probe = Bondline.probe({server: "https://bondline.example", token: "blp_...", durationMs: 60000});
 *   probe.done.then(function (result) { ... });   // or probe.stop()
 *
 * Opens a small second peer connection to the server's sidecar (through the
 * /v1/probe WebSocket) alongside the real call, and measures from content:
 * - sends a 160x120 canvas stream stamped with frame number and send time,
 *   and a WebAudio pilot whose 20 ms blocks say their sequence number;
 * - reads the sidecar's stamped frames (requestVideoFrameCallback + canvas)
 *   and its pilot (Web Audio), so lost, late and frozen frames and audio
 *   gaps are counted exactly, not estimated;
 * - pings over an unordered, unreliable data channel for round trip, loss
 *   in each direction and clock offset.
 * What this browser receives is reported as bondline.sample/1 samples with
 * source "probe" over the probe socket; the sidecar stores what it receives.
 * The codes are the same as media/barcode.py and media/pilot.py; the method
 * is docs/probe.md. Extends the global Bondline object of bondline.js (and
 * creates it when this file is loaded alone). Sends numbers only.
 */
(function (global) {
  'use strict';
  var Bondline = global.Bondline || (global.Bondline = {});

  // -- shared constants (media/barcode.py, media/pilot.py, media/probe/*) --
  var CELL = 16, W = 160, H = 120, COLS = 10, ROWS = 7, CAL = [0, 3, 1, 2], LEVELS = [40, 98, 156, 214];
  var BG = 127, PAYLOAD = 12, USED = CAL.length + PAYLOAD * 4;
  var RATE = 48000, BLOCK = 960, WIN = 480, BASES = [600, 2400, 4200], STEP = 100, DIGITS = 16, PERIOD = 3840;
  var AMP = 0.22, PEAK_RATIO = 4, BLOCK_MS = 20;
  var PROBE_SEQ_BASE = 281474976710656; // 2^48
  var PING_BYTES = 160;
  var DEFAULTS = { fps: 5, ptime_ms: 60, ping_hz: 5, interval_ms: 1000, late_ms: 200, video: true, audio: true };

  function wallMs() { return performance.timeOrigin + performance.now(); }
  function warn() { try { console.warn.apply(console, ['[bondline-probe]'].concat([].slice.call(arguments))); } catch (e) { /* */ } }

  function crc16(bytes, n) {
    var crc = 0xFFFF;
    for (var i = 0; i < n; i++) {
      crc ^= bytes[i] << 8;
      for (var b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xFFFF : (crc << 1) & 0xFFFF;
    }
    return crc;
  }

  // ---------------------------------------------------------------- stamp --
  function stampBytes(frame, sendMs, run) {
    var b = new Uint8Array(PAYLOAD), v = new DataView(b.buffer);
    v.setUint32(0, frame >>> 0); v.setUint32(4, sendMs % 4294967296 >>> 0); v.setUint16(8, run & 0xFFFF);
    v.setUint16(10, crc16(b, 10));
    return b;
  }

  function paintStamp(ctx, frame, sendMs, run) {
    var b = stampBytes(frame, sendMs, run), syms = CAL.slice();
    for (var i = 0; i < PAYLOAD; i++) syms.push((b[i] >> 6) & 3, (b[i] >> 4) & 3, (b[i] >> 2) & 3, b[i] & 3);
    ctx.fillStyle = 'rgb(' + BG + ',' + BG + ',' + BG + ')';
    ctx.fillRect(0, 0, W, H);
    for (var c = 0; c < USED; c++) {
      var g = LEVELS[syms[c]];
      ctx.fillStyle = 'rgb(' + g + ',' + g + ',' + g + ')';
      ctx.fillRect((c % COLS) * CELL, Math.floor(c / COLS) * CELL, CELL, CELL);
    }
  }

  function readStamp(px) { // px: RGBA of a W x H image
    var means = new Float64Array(USED);
    for (var c = 0; c < USED; c++) {
      var x0 = (c % COLS) * CELL + 4, y0 = Math.floor(c / COLS) * CELL + 4, sum = 0;
      for (var y = y0; y < y0 + 8; y++) {
        for (var x = x0; x < x0 + 8; x++) {
          var o = (y * W + x) * 4;
          sum += 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2];
        }
      }
      means[c] = sum / 64;
    }
    var lv = [means[0], means[2], means[3], means[1]];
    for (var k = 1; k < 4; k++) if (lv[k] - lv[k - 1] <= 12) return null;
    var th = [(lv[0] + lv[1]) / 2, (lv[1] + lv[2]) / 2, (lv[2] + lv[3]) / 2];
    var bytes = new Uint8Array(PAYLOAD);
    for (var i = 0; i < PAYLOAD * 4; i++) {
      var m = means[CAL.length + i], s = m < th[0] ? 0 : m < th[1] ? 1 : m < th[2] ? 2 : 3;
      bytes[i >> 2] |= s << (6 - 2 * (i & 3));
    }
    var v = new DataView(bytes.buffer);
    if (crc16(bytes, 10) !== v.getUint16(10)) return null;
    return { frame: v.getUint32(0), sendMs: v.getUint32(4), run: v.getUint16(8) };
  }

  function unwrapMs(low32, ref) {
    var span = 4294967296, base = ref - (ref % span), best = null;
    [base - span + low32, base + low32, base + span + low32].forEach(function (c) {
      if (best === null || Math.abs(c - ref) < Math.abs(best - ref)) best = c;
    });
    return best;
  }

  // ---------------------------------------------------------------- pilot --
  function digits(seq) { var s = ((seq % PERIOD) + PERIOD) % PERIOD; return [s % 16, Math.floor(s / 16) % 16, Math.floor(s / 256)]; }

  var DFT = null;
  function dft() {
    if (DFT) return DFT;
    DFT = { cos: [], sin: [] };
    for (var b = 0; b < 3; b++) {
      for (var d = 0; d < DIGITS; d++) {
        var f = BASES[b] + STEP * d, c = new Float32Array(WIN), s = new Float32Array(WIN);
        for (var n = 0; n < WIN; n++) { c[n] = Math.cos(2 * Math.PI * f * n / RATE); s[n] = Math.sin(2 * Math.PI * f * n / RATE); }
        DFT.cos.push(c); DFT.sin.push(s);
      }
    }
    return DFT;
  }

  // The sequence number (mod PERIOD) of the window at buf[off..off+WIN), or -1.
  function readWindow(buf, off) {
    var t = dft(), energy = 0, n, seq = 0, sumTop = 0;
    for (n = 0; n < WIN; n++) energy += buf[off + n] * buf[off + n];
    for (var b = 0; b < 3; b++) {
      var top = -1, second = -1, best = 0;
      for (var d = 0; d < DIGITS; d++) {
        var c = t.cos[b * DIGITS + d], s = t.sin[b * DIGITS + d], re = 0, im = 0;
        for (n = 0; n < WIN; n++) { var x = buf[off + n]; re += x * c[n]; im += x * s[n]; }
        var p = re * re + im * im;
        if (p > top) { second = top; top = p; best = d; } else if (p > second) second = p;
      }
      if (!(top > PEAK_RATIO * second)) return -1;
      sumTop += top;
      seq += best * Math.pow(DIGITS, b);
    }
    if (!(sumTop > 0.5 * energy * WIN / 2) || seq >= PERIOD) return -1;
    return seq;
  }

  // Generates the pilot with three oscillators whose frequencies change every block.
  function PilotSender(ctx) {
    this.ctx = ctx;
    this.dest = ctx.createMediaStreamDestination();
    var gain = ctx.createGain();
    gain.gain.value = AMP;
    gain.connect(this.dest);
    this.osc = [0, 1, 2].map(function (b) {
      var o = ctx.createOscillator();
      o.frequency.value = BASES[b];
      o.connect(gain);
      return o;
    });
    this.seq = 0;
    this.t = ctx.currentTime + 0.2;
    var self = this;
    this.osc.forEach(function (o) { o.start(self.t); });
    this.schedule();
    this.timer = setInterval(function () { self.schedule(); }, 250);
  }
  PilotSender.prototype.schedule = function () {
    var horizon = this.ctx.currentTime + 2.0;
    while (this.t < horizon) {
      var d = digits(this.seq);
      for (var b = 0; b < 3; b++) this.osc[b].frequency.setValueAtTime(BASES[b] + STEP * d[b], this.t);
      this.seq++;
      this.t += BLOCK / RATE;
    }
  };
  PilotSender.prototype.stop = function () { clearInterval(this.timer); this.osc.forEach(function (o) { try { o.stop(); } catch (e) { /* */ } }); };

  // Reads the pilot from played-out audio: blocks heard, gaps between them.
  function PilotReader() {
    this.buf = new Float32Array(RATE * 2);
    this.len = 0; this.offset = null; this.seq0 = null; this.last = null; this.first = null;
    this.heard = 0; this.unreadable = 0; this.badRun = 0; this.resyncs = 0;
    this.iv = { expected: 0, heard: 0, missing: 0, unreadable: 0, dropoutsStarted: 0 };
    this.dropouts = []; this.pending = null;
  }
  PilotReader.prototype.push = function (data) {
    if (this.len + data.length > this.buf.length) {
      var drop = this.len - RATE; // keep the newest second
      this.buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.pos = Math.max(0, (this.pos || 0) - drop);
    }
    this.buf.set(data, this.len);
    this.len += data.length;
    if (this.offset === null) this.align(); else this.judge();
  };
  PilotReader.prototype.align = function () {
    if (this.len < 26 * BLOCK) return;
    var base = this.len - 26 * BLOCK, scores = [], bestScore = -1;
    for (var off = 0; off < BLOCK; off += 40) {
      var score = 0, prev = -1;
      for (var k = 0; k < 25; k++) {
        var s = readWindow(this.buf, base + off + k * BLOCK + (BLOCK - WIN) / 2);
        if (s >= 0) { score++; if (prev >= 0 && (s - prev + PERIOD) % PERIOD === 1) score++; }
        prev = s;
      }
      scores.push(score);
      if (score > bestScore) bestScore = score;
    }
    if (bestScore < 25) return;
    // Many offsets read every block (a window mostly in one block still reads it): take
    // the middle of that run, which may wrap past the block's end, as media/pilot.py does,
    // so the windows sit centred and survive a decoder's shift after a loss.
    var n = scores.length, bestLen = 0, bestMid = Math.floor(n / 2);
    for (var i = 0; i < n; i++) {
      if (scores[i] !== bestScore || scores[(i + n - 1) % n] === bestScore) continue;
      var len = 1;
      while (len < n && scores[(i + len) % n] === bestScore) len++;
      if (len > bestLen) { bestLen = len; bestMid = (i + Math.floor((len - 1) / 2)) % n; }
    }
    var bestOff = bestMid * 40;
    this.offset = (base + bestOff) % BLOCK;
    this.pos = base + bestOff; // start of the next block to judge
    this.badRun = 0;
    this.judge();
  };
  PilotReader.prototype.judge = function () {
    while (this.pos + BLOCK <= this.len) {
      var s = readWindow(this.buf, this.pos + (BLOCK - WIN) / 2);
      this.pos += BLOCK;
      if (s < 0) {
        this.reject();
        this.unreadable++; this.iv.unreadable++; this.badRun++;
        if (this.badRun >= 25) { this.offset = null; this.resyncs++; return; }
        continue;
      }
      this.badRun = 0;
      var ref = this.pending !== null ? this.pending + 1 : this.last === null ? s : this.last + 1;
      var full = s + PERIOD * Math.round((ref - s) / PERIOD);
      if (this.last !== null && full === this.last + 1) { this.reject(); this.accept(full); continue; }
      if (this.last !== null && full <= this.last) { this.reject(); continue; } // replayed (concealment repeats audio)
      // A jump forward (or the first block) is believed only when the next block counts on
      // from it: concealment during an outage can read as a stray number (one tone shifted),
      // which taken at its word would swallow the real blocks up to it as "replayed".
      if (this.pending !== null && full === this.pending + 1) { this.accept(this.pending); this.pending = null; this.accept(full); continue; }
      this.reject();
      this.pending = full;
    }
  };
  // An unconfirmed block is one that could not be read.
  PilotReader.prototype.reject = function () {
    if (this.pending === null) return;
    this.pending = null; this.unreadable++; this.iv.unreadable++;
  };
  PilotReader.prototype.accept = function (full) {
    if (this.last === null) { this.first = full; this.last = full - 1; }
    var gap = full - this.last - 1;
    if (gap > 0) {
      this.iv.missing += gap;
      this.iv.dropoutsStarted++;
      this.dropouts.push({ blocks: gap, endMs: wallMs() });
    }
    this.iv.expected += gap + 1; this.iv.heard++; this.heard++;
    this.last = full;
  };
  PilotReader.prototype.take = function () { var iv = this.iv; iv.dropouts = this.dropouts; this.dropouts = []; this.iv = { expected: 0, heard: 0, missing: 0, unreadable: 0, dropoutsStarted: 0 }; return iv; };
  PilotReader.prototype.account = function () {
    var blocks = this.last === null ? 0 : this.last - this.first + 1;
    return { blocks: blocks, heard: this.heard, missing: blocks - this.heard, unreadable: this.unreadable,
      late: 0, gapMs: (blocks - this.heard) * BLOCK_MS, resyncs: this.resyncs, synced: this.offset !== null };
  };

  // ---------------------------------------------------------------- video meter --
  function VideoMeter(lateMs) {
    this.lateMs = lateMs; this.run = null; this.first = null; this.highest = null;
    this.received = 0; this.lost = 0; this.late = 0; this.corrupt = 0; this.freezes = 0; this.freezeMs = 0; this.unread = 0;
    this.durations = []; this.lastT = null; this.minTransit = null; this.lastTransit = null; this.jitter = 0;
    this.iv = this.fresh();
  }
  VideoMeter.prototype.fresh = function () { return { received: 0, lost: 0, late: 0, corrupt: 0, freezes: [], }; };
  // t: when the frame was shown (freezes); tRecv: when it arrived (transit), if known.
  // unread: frames the browser presented since the last callback without one of their
  // own (a busy page); they were shown, so they are not lost, only not read.
  VideoMeter.prototype.frame = function (st, t, tRecv, unread) {
    if (!st) { this.corrupt++; this.iv.corrupt++; return; }
    if (this.run === null) this.run = st.run; else if (st.run !== this.run) return;
    if (this.highest !== null && st.frame <= this.highest) return;
    var gap = this.highest === null ? 0 : st.frame - this.highest - 1;
    var shown = Math.min(gap, Math.max(0, unread || 0));
    if (this.highest === null) this.first = st.frame;
    this.highest = st.frame;
    gap -= shown; this.unread += shown; this.received += shown; this.iv.received += shown;
    this.lost += gap; this.iv.lost += gap; this.received++; this.iv.received++;
    if (this.lastT !== null) { // W3C webrtc-stats freeze rule (media/freeze.py)
      var d = t - this.lastT, n = this.durations.length;
      var avg = n ? this.durations.reduce(function (a, b) { return a + b; }, 0) / n : 0;
      if (n >= 5 && d >= Math.max(3 * avg, avg + 150)) {
        this.freezes++; this.freezeMs += d; this.iv.freezes.push({ startMs: this.lastT, endMs: t, missing: gap });
      } else { this.durations.push(d); if (n >= 30) this.durations.shift(); }
    }
    this.lastT = t;
    var at = typeof tRecv === 'number' ? tRecv : t;
    var transit = at - unwrapMs(st.sendMs, Math.round(at));
    this.minTransit = this.minTransit === null ? transit : Math.min(this.minTransit, transit);
    if (transit - this.minTransit > this.lateMs) { this.late++; this.iv.late++; }
    if (this.lastTransit !== null) this.jitter += (Math.abs(transit - this.lastTransit) - this.jitter) / 16;
    this.lastTransit = transit;
  };
  VideoMeter.prototype.take = function () { var iv = this.iv; this.iv = this.fresh(); return iv; };
  VideoMeter.prototype.account = function (sent) {
    var out = { sent: sent, received: this.received, lost: this.lost, late: this.late, corrupt: this.corrupt,
      unread: this.unread, freezes: this.freezes, freezeMs: Math.round(this.freezeMs * 10) / 10 };
    if (typeof sent === 'number' && this.first !== null) {
      out.missedAtStart = this.first; out.missedAtEnd = Math.max(0, sent - 1 - this.highest);
      out.accounted = this.received + this.lost + out.missedAtStart + out.missedAtEnd === sent;
    }
    return out;
  };

  // ---------------------------------------------------------------- pings --
  function PingMeter() {
    this.next = 0; this.sentAt = {}; this.echo = null; this.sent = 0; this.received = 0; this.lost = 0;
    this.first = null; this.highest = null; this.rtts = []; this.offsets = []; this.offset = null; this.offsetErr = null;
    this.iv = { sent: 0, received: 0, lost: 0, rtt: [] };
  }
  PingMeter.prototype.make = function () {
    var buf = new ArrayBuffer(PING_BYTES), v = new DataView(buf), seq = this.next++, wall = wallMs();
    new Uint8Array(buf).set([66, 76, 80, 49]); // "BLP1"
    v.setUint32(4, seq, true); v.setFloat64(8, wall, true);
    v.setUint32(16, this.echo ? this.echo[0] : 0xFFFFFFFF, true); v.setFloat64(20, this.echo ? this.echo[1] : 0, true);
    this.sentAt[seq] = [performance.now(), wall];
    delete this.sentAt[seq - 4096];
    this.sent++; this.iv.sent++;
    return buf;
  };
  PingMeter.prototype.receive = function (buf) {
    var t4m = performance.now(), t4 = wallMs();
    if (!(buf instanceof ArrayBuffer) || buf.byteLength !== PING_BYTES) return;
    var v = new DataView(buf), seq = v.getUint32(4, true), t3 = v.getFloat64(8, true);
    var es = v.getUint32(16, true), t2 = v.getFloat64(20, true);
    if (this.highest === null) { this.first = this.highest = seq; }
    else if (seq > this.highest) { this.lost += seq - this.highest - 1; this.iv.lost += seq - this.highest - 1; this.highest = seq; }
    else { this.lost--; this.iv.lost--; }
    this.received++; this.iv.received++;
    this.echo = [seq, t4];
    var s = this.sentAt[es];
    if (es === 0xFFFFFFFF || !s) return;
    delete this.sentAt[es];
    var rtt = (t4m - s[0]) - Math.max(t3 - t2, 0);
    if (rtt < 0) return;
    this.iv.rtt.push(rtt); this.rtts.push(rtt);
    this.offsets.push([rtt, ((t2 - s[1]) + (t3 - t4)) / 2]);
    if (this.offsets.length > 64) this.offsets.shift();
    var best = this.offsets.reduce(function (a, b) { return b[0] < a[0] ? b : a; });
    this.offsetErr = best[0] / 2; this.offset = best[1];
  };
  PingMeter.prototype.take = function () { var iv = this.iv; this.iv = { sent: 0, received: 0, lost: 0, rtt: [] }; return iv; };
  function quantile(xs, q) { if (!xs.length) return null; var s = xs.slice().sort(function (a, b) { return a - b; }); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; }
  PingMeter.prototype.account = function () {
    var out = { sent: this.sent, received: this.received, lost: this.lost, rtts: this.rtts.length };
    if (this.highest !== null) out.lossFraction = this.lost / Math.max(1, this.highest - this.first + 1);
    if (this.rtts.length) { out.rttMedianMs = quantile(this.rtts, 0.5); out.rttP95Ms = quantile(this.rtts, 0.95); out.rttP99Ms = quantile(this.rtts, 0.99); }
    if (this.offset !== null) { out.clockOffsetMs = this.offset; out.clockOffsetErrorMs = this.offsetErr; }
    return out;
  };

  Bondline._probeInternal = { paintStamp: paintStamp, readStamp: readStamp, readWindow: readWindow, digits: digits,
    crc16: crc16, PilotSender: PilotSender, PilotReader: PilotReader, VideoMeter: VideoMeter, PingMeter: PingMeter, DEFAULTS: DEFAULTS,
    W: W, H: H, BLOCK: BLOCK, WIN: WIN, PROBE_SEQ_BASE: PROBE_SEQ_BASE, warn: warn, wallMs: wallMs };
})(typeof window !== 'undefined' ? window : this);

(function (global) {
  'use strict';
  var Bondline = global.Bondline, I = Bondline._probeInternal, warn = I.warn, wallMs = I.wallMs;

  // bondline.js may have wrapped RTCPeerConnection to watch the platform's
  // calls; the probe's own connection must not be reported as one of them.
  var capturedPC = global.RTCPeerConnection;
  function nativePC() {
    var PC = global.RTCPeerConnection, parent = PC && Object.getPrototypeOf(PC);
    if (typeof parent === 'function' && parent.prototype === PC.prototype) return parent;
    return capturedPC || PC;
  }

  function wsUrl(server) {
    var base = String(server || global.location.origin).replace(/\/+$/, '');
    return base.replace(/^http/, 'ws') + '/v1/probe';
  }

  function Probe(opts) {
    this.opts = opts || {};
    this.profile = {};
    for (var k in I.DEFAULTS) this.profile[k] = I.DEFAULTS[k];
    var given = this.opts.profile || {};
    for (var g in given) this.profile[g] = given[g];
    this.state = 'starting'; this.mode = null; this.run = null; this.batch = 0; this.timers = [];
    this.framesSent = 0; this.vmeter = new I.VideoMeter(this.profile.late_ms); this.reader = new I.PilotReader();
    this.pings = new I.PingMeter(); this.stampRun = Math.floor(Math.random() * 65536); this.events = [];
    this.rtpPrev = {}; this.last = null; this.verdict = null; this.sidecar = null; this.error = null;
    var self = this;
    this.done = new Promise(function (resolve) { self.resolve = resolve; });
    this.waiters = {};
    this.start().catch(function (e) { self.fail(e && e.message ? e.message : String(e)); });
  }

  Probe.prototype.expect = function (type, ms) {
    var self = this;
    return new Promise(function (resolve, reject) {
      var t = setTimeout(function () { reject(new Error('no ' + type + ' from the server in time')); }, ms);
      self.waiters[type] = function (m) { clearTimeout(t); resolve(m); };
      self.waiters.error = function (m) { clearTimeout(t); reject(new Error(m.reason || 'refused')); };
    });
  };

  Probe.prototype.onMessage = function (ev) {
    var m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (m.type === 'summary') { this.sidecar = m.summary; if (m.verdict) this.verdict = m.verdict; }
    if (m.type === 'error') this.error = m.reason;
    var w = this.waiters[m.type];
    if (w) { delete this.waiters[m.type]; w(m); }
  };

  Probe.prototype.start = async function () {
    var self = this, o = this.opts, prof = this.profile;
    if (!o.token) throw new Error('Bondline.probe needs {token}');
    var ws = this.ws = new WebSocket(wsUrl(o.server));
    ws.onmessage = function (e) { self.onMessage(e); };
    ws.onclose = function (e) {
      self.closeCode = e.code;
      if (self.state !== 'stopping' && self.state !== 'done') self.fail(self.error || ('probe socket closed (' + e.code + ')'));
    };
    await new Promise(function (resolve, reject) { ws.onopen = resolve; ws.onerror = function () { reject(new Error('cannot reach the Bondline server')); }; });
    var welcome = this.expect('welcome', 10000);
    ws.send(JSON.stringify({ type: 'auth', token: o.token }));
    welcome = await welcome;
    this.mode = welcome.mode;
    this.durationMs = o.durationMs || (this.mode === 'check' ? welcome.checkDurationS * 1000 : 0);

    // Outgoing media: the stamped canvas and the pilot.
    var canvas = this.canvas = document.createElement('canvas');
    canvas.width = I.W; canvas.height = I.H;
    this.ctx2d = canvas.getContext('2d');
    I.paintStamp(this.ctx2d, 0, wallMs(), this.stampRun);
    var vstream = canvas.captureStream(0), vtrack = this.vtrack = vstream.getVideoTracks()[0];
    try { vtrack.contentHint = 'text'; } catch (e) { /* keeps resolution where supported */ }
    var actx = this.actx = new (global.AudioContext || global.webkitAudioContext)({ sampleRate: 48000 });
    try { await actx.resume(); } catch (e) { warn('audio context', e); }
    this.pilot = new I.PilotSender(actx);
    var atrack = this.pilot.dest.stream.getAudioTracks()[0];

    var PC = nativePC();
    // opts.iceServers / opts.iceTransportPolicy ('relay') override the server's: a page can
    // force the probe through its own TURN relay (the tests' impairment relay does).
    var pcConfig = { iceServers: o.iceServers || welcome.iceServers || [], bundlePolicy: 'max-bundle' };
    if (o.iceTransportPolicy) pcConfig.iceTransportPolicy = o.iceTransportPolicy;
    var pc = this.pc = new PC(pcConfig);
    // Its negotiation goes through the patched prototype too: say it is ours.
    if (typeof Bondline._own === 'function') Bondline._own(pc);
    if (prof.video) {
      var tv = pc.addTransceiver(vtrack, { direction: 'sendrecv', sendEncodings: [{ maxBitrate: 250000 }] });
      this.prefer(tv, 'video', 'video/vp8');
    }
    if (prof.audio) {
      var ta = pc.addTransceiver(atrack, { direction: 'sendrecv' });
      this.prefer(ta, 'audio', 'audio/opus');
    }
    var ch = this.channel = pc.createDataChannel('bondline-ping', { ordered: false, maxRetransmits: 0 });
    ch.binaryType = 'arraybuffer';
    ch.onmessage = function (e) { self.pings.receive(e.data); };
    pc.ontrack = function (e) { if (e.track.kind === 'video') self.readVideo(e.track); else self.readAudio(e.track); };
    await pc.setLocalDescription(await pc.createOffer());
    await this.gathered(3000);
    var answer = this.expect('answer', 15000);
    ws.send(JSON.stringify({ type: 'offer', sdp: pc.localDescription.sdp, profile: prof, agent: 'browser',
      resume: o.resume || null }));
    answer = await answer;
    this.run = answer.run;
    var connected = this.expect('connected', 30000);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    await connected;
    this.state = 'running';
    this.startedMs = wallMs();
    this.loops();
  };

  Probe.prototype.prefer = function (transceiver, kind, mime) {
    try {
      var caps = RTCRtpReceiver.getCapabilities(kind).codecs.filter(function (c) { return c.mimeType.toLowerCase() === mime; });
      if (caps.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(caps);
    } catch (e) { warn('codec preference', e); }
  };

  Probe.prototype.gathered = function (ms) {
    var pc = this.pc;
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise(function (resolve) {
      var t = setTimeout(resolve, ms);
      pc.addEventListener('icegatheringstatechange', function () {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
  };

  function hidden(el) {
    el.setAttribute('aria-hidden', 'true');
    el.style.cssText = 'position:fixed;left:0;top:0;width:2px;height:2px;opacity:0.01;pointer-events:none';
    (document.body || document.documentElement).appendChild(el);
    return el;
  }

  Probe.prototype.readVideo = function (track) {
    var self = this, vid = this.video = hidden(document.createElement('video'));
    vid.muted = true; vid.playsInline = true; vid.autoplay = true;
    vid.srcObject = new MediaStream([track]);
    var cv = document.createElement('canvas');
    cv.width = I.W; cv.height = I.H;
    var cx = cv.getContext('2d', { willReadFrequently: true });
    var presented = null;
    function read(shown, recv, unread) {
      if (self.state !== 'running') return;
      cx.drawImage(vid, 0, 0, I.W, I.H);
      self.vmeter.frame(I.readStamp(cx.getImageData(0, 0, I.W, I.H).data), shown, recv, unread);
    }
    if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
      var onFrame = function (now, meta) {
        var origin = performance.timeOrigin;
        // A busy page gets one callback for several presented frames: presentedFrames says how many.
        var unread = presented === null || !meta.presentedFrames ? 0 : meta.presentedFrames - presented - 1;
        if (meta.presentedFrames) presented = meta.presentedFrames;
        read(origin + (meta.presentationTime || now), meta.receiveTime ? origin + meta.receiveTime : undefined, unread);
        vid.requestVideoFrameCallback(onFrame);
      };
      vid.requestVideoFrameCallback(onFrame);
    } else {
      this.timers.push(setInterval(function () { read(wallMs()); }, 1000 / (2 * this.profile.fps)));
    }
    vid.play().catch(function (e) { warn('video play', e); });
  };

  // Reads the received pilot on the audio thread (AudioWorklet) and queues it to the
  // page: a busy page then reads it late but whole. A ScriptProcessor (main thread)
  // drops whatever arrives while the page is blocked for longer than its buffer,
  // which reads as audio gaps that were never on the network (docs/probe.md).
  Probe.prototype.readAudio = function (track) {
    var self = this, stream = new MediaStream([track]);
    // Chromium feeds remote WebRTC audio to Web Audio only while a media element plays it.
    var au = this.audioEl = hidden(document.createElement('audio'));
    au.muted = true; au.srcObject = stream;
    au.play().catch(function (e) { warn('audio play', e); });
    var actx = this.actx, src = actx.createMediaStreamSource(stream), mute = actx.createGain();
    mute.gain.value = 0;
    mute.connect(actx.destination);
    function push(data) { if (self.state === 'running') self.reader.push(data); }
    function scriptProcessor() {
      var sp = actx.createScriptProcessor(2048, 1, 1);
      src.connect(sp); sp.connect(mute);
      sp.onaudioprocess = function (e) { push(e.inputBuffer.getChannelData(0)); };
      self.processor = sp;
    }
    if (!actx.audioWorklet || typeof AudioWorkletNode === 'undefined') { scriptProcessor(); return; }
    var url = String(self.opts.server || global.location.origin).replace(/\/+$/, '') + '/plugin/bondline-pilot-tap.js';
    actx.audioWorklet.addModule(url).then(function () {
      var node = new AudioWorkletNode(actx, 'bondline-pilot-tap', { numberOfInputs: 1, numberOfOutputs: 1,
        channelCount: 1, channelCountMode: 'explicit' });
      node.port.onmessage = function (e) { push(e.data); };
      src.connect(node); node.connect(mute);
      self.tap = node;
    }).catch(function (e) { warn('audio worklet', e); scriptProcessor(); });
  };

  Probe.prototype.loops = function () {
    var self = this, prof = this.profile;
    if (prof.video) {
      var t0 = performance.now(), period = 1000 / prof.fps;
      var tick = function () {
        if (self.state !== 'running') return;
        I.paintStamp(self.ctx2d, self.framesSent, wallMs(), self.stampRun);
        if (self.vtrack.requestFrame) self.vtrack.requestFrame();
        self.framesSent++;
        self.timers.push(setTimeout(tick, Math.max(0, t0 + self.framesSent * period - performance.now())));
      };
      tick();
    }
    this.timers.push(setInterval(function () {
      if (self.channel.readyState === 'open') { try { self.channel.send(self.pings.make()); } catch (e) { /* closing */ } }
    }, 1000 / prof.ping_hz));
    var step = prof.interval_ms, first = (Math.floor(wallMs() / step) + 1) * step;
    this.timers.push(setTimeout(function () {
      self.vmeter.take(); self.reader.take(); self.pings.take(); self.rtp(); // warm-up is not reported
      self.ivStart = first;
      self.timers.push(setInterval(function () { self.interval(false); }, step));
    }, first - wallMs()));
    if (this.durationMs) this.timers.push(setTimeout(function () { self.stop(); }, this.durationMs));
  };

  // Interval deltas of RTP packets received/lost per kind, from getStats.
  Probe.prototype.rtp = function () {
    var self = this;
    return this.pc.getStats().then(function (report) {
      var out = {};
      report.forEach(function (s) {
        if (s.type !== 'inbound-rtp') return;
        var prev = self.rtpPrev[s.id] || { r: 0, l: 0 }, rx = (s.packetsReceived || 0) - (s.retransmittedPacketsReceived || 0);
        out[s.kind] = { received: Math.max(0, rx - prev.r), lost: (s.packetsLost || 0) - prev.l };
        self.rtpPrev[s.id] = { r: rx, l: s.packetsLost || 0 };
      });
      return out;
    }).catch(function () { return {}; });
  };

  function r2(x) { return x === null || x === undefined || !isFinite(x) ? null : Math.round(x * 100) / 100; }
  function compact(o) { var out = {}; for (var k in o) if (o[k] !== null && o[k] !== undefined) out[k] = o[k]; return out; }

  Probe.prototype.interval = async function (final) {
    // Once stopping, the final interval (whose start is not a whole second) covers the
    // rest: a periodic one firing while it awaits getStats would report from that start.
    if (!final && this.state !== 'running') return;
    var start = this.ivStart;
    if (start === undefined) return;
    var end = final ? Math.round(wallMs()) : start + this.profile.interval_ms;
    this.ivStart = end;
    var length = Math.min(end - start, this.profile.interval_ms);
    if (length < 50) return;
    var v = this.vmeter.take(), a = this.reader.take(), p = this.pings.take(), rtp = await this.rtp(), secs = length / 1000;
    var streams = [];
    if (this.profile.video) {
      streams.push(compact({ kind: 'video', direction: 'inbound', id: 'probe-video-inbound',
        framesReceived: v.received, framesDecoded: v.received + v.corrupt, framesPerSecond: r2(v.received / secs),
        freezeCount: v.freezes.length, totalFreezesDurationMs: r2(v.freezes.reduce(function (t, f) { return t + f.endMs - f.startMs; }, 0)),
        framesLost: Math.max(0, v.lost), framesLate: v.late, framesCorrupt: v.corrupt, jitterMs: r2(this.vmeter.jitter),
        packetsReceived: rtp.video ? rtp.video.received : null, packetsLost: rtp.video ? rtp.video.lost : null }));
    }
    if (this.profile.audio) {
      var gap = a.expected - a.heard;
      streams.push(compact({ kind: 'audio', direction: 'inbound', id: 'probe-audio-inbound',
        totalSamplesReceived: a.expected * I.BLOCK, concealedSamples: gap * I.BLOCK, concealmentEvents: a.dropoutsStarted,
        audioGapMs: gap * 20, blocksMissing: a.missing, blocksUnreadable: a.unreadable, blocksLate: 0,
        packetsReceived: rtp.audio ? rtp.audio.received : null, packetsLost: rtp.audio ? rtp.audio.lost : null }));
    }
    var rtt = p.rtt.length ? p.rtt.slice().sort(function (x, y) { return x - y; })[Math.floor(p.rtt.length / 2)] : null;
    var sample = {
      schema: 'bondline.sample/1', seq: I.PROBE_SEQ_BASE + (start / 1000) * 4 + 1, startMs: start, intervalMs: length,
      source: 'probe', streams: streams,
      connection: compact({ state: this.pc.connectionState, iceState: this.pc.iceConnectionState, rttMs: r2(rtt) }),
      probe: compact({ side: 'participant', path: 'down', run: this.run, agent: 'browser', pingsSent: p.sent,
        pingsReceived: p.received, pingsLost: Math.max(0, p.lost),
        rttMinMs: p.rtt.length ? r2(Math.min.apply(null, p.rtt)) : null,
        rttMaxMs: p.rtt.length ? r2(Math.max.apply(null, p.rtt)) : null,
        clockOffsetMs: r2(this.pings.offset), clockOffsetErrorMs: r2(this.pings.offsetErr) })
    };
    var events = this.intervalEvents(v, a, p);
    this.last = { startMs: start, rttMs: r2(rtt), framesPerSecond: r2(v.received / secs), pingsLost: Math.max(0, p.lost),
      audioGapMs: (a.expected - a.heard) * 20, freezes: v.freezes.length };
    if (this.opts.onUpdate) { try { this.opts.onUpdate(this.status()); } catch (e) { warn('onUpdate', e); } }
    if (this.mode === 'probe' && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify({ type: 'report', batch: ++this.batch, samples: [sample], events: events }));
    }
  };

  Probe.prototype.intervalEvents = function (v, a, p) {
    var run = this.run, out = [];
    function ev(kind, t, end, severity, extra) {
      var e = { key: 'probe-' + run + '-participant-' + kind + '-' + Math.round(t), kind: 'probe.' + kind, tMs: Math.round(t),
        endMs: Math.max(Math.round(end), Math.round(t)), severity: r2(severity), side: 'participant', path: 'down', run: run };
      for (var k in extra || {}) e[k] = extra[k];
      out.push(e);
    }
    v.freezes.forEach(function (f) { ev('freeze', f.startMs, f.endMs, f.endMs - f.startMs, { framesMissing: f.missing }); });
    var minMs = this.profile.dropout_min_ms || 100;
    (a.dropouts || []).forEach(function (d) {
      if (d.blocks * 20 >= minMs) ev('audio_dropout', d.endMs - d.blocks * 20, d.endMs, d.blocks * 20, { blocks: d.blocks });
    });
    var lost = Math.max(0, p.lost), seen = p.received + lost;
    if (lost >= 3 && seen && lost / seen >= 0.1) ev('loss_burst', this.ivStart - this.profile.interval_ms, this.ivStart, lost / seen, {});
    return out;
  };

  // Frames the browser's encoder actually produced: a stamped frame it dropped
  // (CPU or rate control) never left this machine, which is not network loss.
  Probe.prototype.encoderCounts = function () {
    var self = this;
    return this.pc.getStats().then(function (report) {
      report.forEach(function (s) {
        if (s.type === 'outbound-rtp' && s.kind === 'video') {
          self.encoded = { framesEncoded: s.framesEncoded, keyFramesEncoded: s.keyFramesEncoded, framesSent: s.framesSent };
        }
        // What the browser itself did with what arrived: frames it decoded or dropped
        // (late for display, a busy machine) and audio it concealed or time-stretched.
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          self.decoded = { framesReceived: s.framesReceived, framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
            keyFramesDecoded: s.keyFramesDecoded, nackCount: s.nackCount, jitterBufferDelay: s.jitterBufferDelay,
            jitterBufferTargetDelay: s.jitterBufferTargetDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount };
        }
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          self.played = { concealedSamples: s.concealedSamples, totalSamplesReceived: s.totalSamplesReceived,
            insertedSamplesForDeceleration: s.insertedSamplesForDeceleration,
            removedSamplesForAcceleration: s.removedSamplesForAcceleration };
        }
      });
    }).catch(function () { /* stats are extra */ });
  };

  Probe.prototype.summary = function () {
    var sent = this.sidecar && this.sidecar.sent ? this.sidecar.sent.frames : undefined;
    return { side: 'participant', run: this.run, agent: 'browser',
      sent: { frames: this.framesSent, pings: this.pings.sent, audioBlocks: this.pilot ? this.pilot.seq : 0 },
      encoder: this.encoded || null, decoder: this.decoded || null, playout: this.played || null,
      video: this.vmeter.account(sent), audio: this.reader.account(), pings: this.pings.account() };
  };

  Probe.prototype.status = function () {
    return { state: this.state, mode: this.mode, run: this.run, elapsedMs: this.startedMs ? wallMs() - this.startedMs : 0,
      durationMs: this.durationMs, last: this.last, error: this.error };
  };

  Probe.prototype.teardown = function () {
    this.timers.forEach(function (t) { clearTimeout(t); clearInterval(t); });
    this.timers = [];
    var self = this;
    ['video', 'audioEl'].forEach(function (k) { if (self[k]) { try { self[k].srcObject = null; self[k].remove(); } catch (e) { /* */ } } });
    try { if (this.processor) this.processor.onaudioprocess = null; } catch (e) { /* */ }
    try { if (this.tap) { this.tap.port.onmessage = null; this.tap.disconnect(); } } catch (e) { /* */ }
    try { if (this.pilot) this.pilot.stop(); } catch (e) { /* */ }
    try { if (this.vtrack) this.vtrack.stop(); } catch (e) { /* */ }
    try { if (this.pc) this.pc.close(); } catch (e) { /* */ }
    try { if (this.actx) this.actx.close(); } catch (e) { /* */ }
  };

  Probe.prototype.stop = async function () {
    if (this.state === 'stopping' || this.state === 'done') return this.done;
    if (this.state !== 'running') { this.fail('stopped before the probe connected'); return this.done; }
    this.state = 'stopping';
    try {
      await this.interval(true);
      await this.encoderCounts();
      var reply = this.expect('summary', 8000);
      var mine = this.summary();
      this.ws.send(JSON.stringify({ type: 'bye', sent: mine.sent, summary: mine }));
      await reply;
    } catch (e) { this.error = e.message; }
    this.teardown();
    try { this.ws.close(1000); } catch (e) { /* */ }
    this.state = 'done';
    this.resolve(this.result());
    return this.done;
  };

  Probe.prototype.fail = function (reason) {
    if (this.state === 'done') return;
    this.error = this.error || reason;
    this.state = 'done';
    this.teardown();
    try { this.ws.close(1000); } catch (e) { /* */ }
    this.resolve(this.result());
  };

  Probe.prototype.result = function () {
    return { ok: !this.error, error: this.error, mode: this.mode, run: this.run, participant: this.summary(),
      sidecar: this.sidecar, verdict: this.verdict };
  };

  /** Run the probe; resolves `done` with both ends' summaries (and, on a check link, the verdict). */
  Bondline.probe = function (opts) {
    var p = new Probe(opts);
    return { done: p.done, stop: function () { return p.stop(); }, status: function () { return p.status(); } };
  };
})(typeof window !== 'undefined' ? window : this);
