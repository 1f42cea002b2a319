// The report pages' "Print" button (a file, not inline: the CSP forbids inline script).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button.print").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
});
