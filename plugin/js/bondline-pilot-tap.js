/* Bondline probe: hands the received pilot from the audio thread to the page
 * (AudioWorklet module loaded by bondline-probe.js; see docs/probe.md). */
registerProcessor('bondline-pilot-tap', class extends AudioWorkletProcessor {
  constructor() { super(); this.buf = new Float32Array(2048); this.n = 0; }
  process(inputs) {
    var ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    this.buf.set(ch, this.n); this.n += ch.length;
    if (this.n + 128 > this.buf.length) { this.port.postMessage(this.buf.slice(0, this.n)); this.n = 0; }
    return true;
  }
});
