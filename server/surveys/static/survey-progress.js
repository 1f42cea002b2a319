/* Where the respondent is in a long form: a bar that stays at the top of
 * the screen and counts the questions answered. Without scripts the form
 * still says how many questions and parts it has. */
(function () {
  'use strict';
  var box = document.getElementById('progress');
  if (!box) return;
  var total = Number(box.getAttribute('data-total')) || 0;
  var bar = document.getElementById('progress-bar');
  var text = document.getElementById('progress-text');
  var form = box.parentNode.querySelector('form');
  if (!form || !total) return;
  function update() {
    var names = {};
    var inputs = form.querySelectorAll('input[type=radio]:checked');
    for (var i = 0; i < inputs.length; i++) names[inputs[i].name] = 1;
    var n = Object.keys(names).length;
    bar.value = n;
    text.textContent = n + ' of ' + total + ' answered';
  }
  box.hidden = false;
  form.addEventListener('change', update);
  update();
})();
