// The eval page's A/B form asks for confirmation (confirm.js reads data-confirm) with the
// number of tasks it would make, from the form's values as they are when it is sent:
// the prompts asked about (at most the run's, data-prompts) times the pairs (one, or
// every other of the run's data-versions versions against A).
(function () {
  "use strict";
  var form = document.getElementById("ab-batch-form");
  if (!form) return;
  var total = Number(form.dataset.prompts), versions = Number(form.dataset.versions);
  function message() {
    var a = form.elements.a.value, b = form.elements.b.value;
    var pairs = b === "" ? versions - 1 : a === b ? 0 : 1;
    var prompts = Math.min(Number(form.elements.prompts.value) || 0, total);
    form.dataset.confirm = "Create up to " + pairs * prompts + " blind A/B tasks (" + prompts +
      " prompts × " + pairs + (pairs === 1 ? " pair" : " pairs") + ") for the annotators?";
  }
  form.addEventListener("input", message);
  form.addEventListener("change", message);
  message();
})();
