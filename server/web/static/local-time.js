/* Times in the reader's own zone. The server writes every time as
 * <time datetime="...Z">2026-05-04 14:05 UTC</time> (server/web/timefmt.py);
 * this rewrites the text in the browser's time zone and language, and keeps
 * the UTC value in the tooltip. Without scripts the UTC text stays. */
(function () {
  'use strict';
  var FORMATS = {
    datetime: { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit',
      minute: '2-digit', timeZoneName: 'short' },
    date: { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' },
    seconds: { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
      second: '2-digit', timeZoneName: 'short' }
  };
  function run() {
    var els = document.querySelectorAll('time[datetime][data-format]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var d = new Date(el.getAttribute('datetime'));
      var opts = FORMATS[el.getAttribute('data-format')];
      if (isNaN(d.getTime()) || !opts) continue;
      try {
        el.title = el.textContent.trim();
        el.textContent = new Intl.DateTimeFormat(undefined, opts).format(d);
        el.setAttribute('data-local', '1');
      } catch (e) { /* an old browser: the UTC text stays */ }
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', run);
  else run();
})();
