/* The connection check page (server/sidecar/templates/check.html): runs
 * Bondline.probe() with the link's token and shows the server's verdict. */
(function () {
  'use strict';
  var token = decodeURIComponent(location.pathname.split('/').pop() || '');
  var start = document.getElementById('check-start'), again = document.getElementById('check-again');
  var progress = document.getElementById('check-progress'), result = document.getElementById('check-result');
  var LABELS = { rtt_median_ms: 'Round trip (median)', rtt_p95_ms: 'Round trip (95th percentile)',
    loss_up: 'Data lost on the way to us', loss_down: 'Data lost on the way to you',
    freeze_ms_up: 'Video freezes (your picture)', freeze_ms_down: 'Video freezes (picture you receive)',
    audio_gap_up: 'Sound gaps (your sound)', audio_gap_down: 'Sound gaps (sound you receive)' };

  var ASPECTS = { delay: 'Delay', loss: 'Lost data', freezes: 'Video freezes', sound: 'Sound gaps' };

  function fmt(key, v) {
    if (v === null || v === undefined) return 'not measured';
    if (key.indexOf('loss') === 0 || key.indexOf('audio_gap') === 0) return (v * 100).toFixed(1) + ' %';
    return Math.round(v) + ' ms';
  }

  function show(res) {
    var v = res.verdict;
    progress.textContent = '';
    result.hidden = false;
    var words = document.getElementById('check-words'), tips = document.getElementById('check-tips');
    var box = document.getElementById('check-tips-box'), figs = document.getElementById('check-figures');
    tips.textContent = ''; figs.textContent = '';
    if (!v) {
      words.textContent = 'The check could not finish: ' + (res.error || 'unknown reason') + '.';
      words.className = 'check-words check-failed';
      box.hidden = true;
      return;
    }
    words.textContent = v.words;
    words.className = 'check-words check-' + v.level;
    // Say what was not measured, by name: a missing figure is never shown as fine.
    var missing = document.getElementById('check-missing');
    missing.textContent = '';
    missing.hidden = !(v.missing && v.missing.length);
    if (!missing.hidden) {
      missing.textContent = 'Not measured: ' + v.missing.map(function (k) { return LABELS[k] || k; })
        .join('; ') + '.';
    }
    var grades = document.getElementById('check-grades');
    grades.textContent = '';
    Object.keys(ASPECTS).forEach(function (k) {
      if (!v.grades || !v.grades[k]) return;
      var li = document.createElement('li');
      li.textContent = ASPECTS[k] + ': ' + v.grades[k];
      li.className = 'check-grade check-grade-' + v.grades[k].replace(' ', '-');
      grades.appendChild(li);
    });
    (v.tips || []).forEach(function (t) { var li = document.createElement('li'); li.textContent = t; tips.appendChild(li); });
    box.hidden = !(v.tips && v.tips.length);
    Object.keys(LABELS).forEach(function (k) {
      var dt = document.createElement('dt'), dd = document.createElement('dd');
      dt.textContent = LABELS[k]; dd.textContent = fmt(k, v.figures ? v.figures[k] : null);
      figs.appendChild(dt); figs.appendChild(dd);
    });
  }

  function run() {
    start.disabled = true; again.disabled = true; result.hidden = true;
    progress.textContent = 'Connecting…';
    var probe = window.Bondline.probe({ token: token, onUpdate: function (s) {
      var secs = Math.round((s.elapsedMs || 0) / 1000), total = Math.round((s.durationMs || 0) / 1000);
      progress.textContent = 'Checking… ' + secs + ' of ' + total + ' seconds';
    } });
    window.bondlineCheck = probe;
    probe.done.then(function (res) {
      window.bondlineCheckResult = res;
      show(res);
      start.hidden = true; again.disabled = false;
      document.getElementById('check-words').focus();
    });
  }

  start.addEventListener('click', run);
  again.addEventListener('click', run);
})();
