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

// Annotators' fast answers. The task's first field has the focus when the page opens
// (the form's data-focus-first names it); Ctrl+Enter (⌘+Enter) sends a form that has
// one submit button; and on an A/B comparison one key votes, as in Chatbot Arena:
// a, b, t (tie), x (both bad), read outside text fields only.
(function () {
  'use strict';
  var forms = Array.prototype.slice.call(document.querySelectorAll('form[data-timed]'));
  if (!forms.length) return;

  // After every deferred script has run (the ranking script may reorder the cards),
  // and only when the annotator has not put the focus somewhere already.
  document.addEventListener('DOMContentLoaded', function () {
    var form = forms[0];
    var selector = form.getAttribute('data-focus-first');
    var first = selector ? form.querySelector(selector) : null;
    if (first && (document.activeElement === document.body || !document.activeElement)) {
      first.focus({ preventScroll: true });
    }
  });

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  var voteKeys = { a: 'vote-a', b: 'vote-b', t: 'vote-tie', x: 'vote-both-bad' };
  var voted = false;
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.altKey) {
      var form = (e.target.closest && e.target.closest('form[data-timed]')) || forms[0];
      var buttons = form.querySelectorAll('button[type="submit"]');
      if (buttons.length !== 1) return;
      e.preventDefault();
      // requestSubmit runs the form's own checks (the ranking's), as a click would.
      if (form.requestSubmit) form.requestSubmit(buttons[0]); else buttons[0].click();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || typing(e.target)) return;
    var id = voteKeys[e.key.toLowerCase()];
    var button = id ? document.getElementById(id) : null;
    if (!button || voted) return;
    e.preventDefault();
    voted = true;
    button.click();
  });
})();

// The lease's end in the reader's own time zone; the page says it in UTC without this.
(function () {
  'use strict';
  var format = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', timeZoneName: 'short'
  });
  Array.prototype.forEach.call(document.querySelectorAll('time.lease-until[datetime]'), function (el) {
    var when = new Date(el.getAttribute('datetime'));
    if (isNaN(when.getTime())) return;
    el.title = el.textContent;
    el.textContent = format.format(when);
  });
})();
