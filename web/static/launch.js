// The launch form: once the version a run starts from is typed (or pre-filled), ask
// /api/run-defaults/{kind}?from=VERSION for the defaults at that version's width, and
// write, beside each setting that follows the model's width, the value the run will use
// when the setting is left empty. Text goes in as text.
(function () {
  "use strict";
  var form = document.getElementById("launch-form");
  if (!form) return;
  var kind = form.querySelector('input[name="kind"]').value;
  // The config field naming a single version: base, policy or version.
  var from = form.querySelector('input[type="text"][list^="l-"]');
  if (!from) return;
  var asked = "";

  function show(resolved, plain) {
    Object.keys(resolved.stage).forEach(function (name) {
      if (plain[name] !== null || resolved.stage[name] === null) return;
      var span = form.querySelector('[data-default="stage.' + name + '"]');
      if (!span) return;
      span.textContent = "Default: " + resolved.stage[name] + " for " + resolved.from +
        " (n_embd " + resolved.n_embd + "), from the model's width.";
    });
  }

  function reset() {
    form.querySelectorAll("[data-default]").forEach(function (span) {
      if (span.dataset.plain) span.textContent = span.dataset.plain;
    });
  }

  function ask() {
    var reference = from.value.trim();
    if (reference === asked) return;
    asked = reference;
    reset();
    if (!reference) return;
    var url = "/api/run-defaults/" + encodeURIComponent(kind) + "?from=" + encodeURIComponent(reference);
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (defaults) {
        if (from.value.trim() === reference && defaults.resolved) show(defaults.resolved, defaults.stage);
      })
      .catch(function () { /* an unknown version: the form says so when it is sent */ });
  }

  form.querySelectorAll("[data-default]").forEach(function (span) { span.dataset.plain = span.textContent; });
  from.addEventListener("change", ask);
  from.addEventListener("blur", ask);
  ask();
})();
