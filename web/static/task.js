// Task pages: measure the time spent on the task while the page is visible, and send
// it with the form (hidden field time_spent_ms). Without this script the server
// estimates it from when the page was rendered.
(function () {
  'use strict';
  var forms = document.querySelectorAll('form[data-timed]');
  if (!forms.length) return;
  var active = 0;
  var since = document.visibilityState === 'hidden' ? null : performance.now();
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') {
      if (since !== null) { active += performance.now() - since; since = null; }
    } else if (since === null) {
      since = performance.now();
    }
  });
  function spent() {
    return Math.round(active + (since === null ? 0 : performance.now() - since));
  }
  Array.prototype.forEach.call(forms, function (form) {
    form.addEventListener('submit', function () {
      var field = form.querySelector('input[name="time_spent_ms"]');
      if (field) field.value = String(spent());
    });
  });
})();
