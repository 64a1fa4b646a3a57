// The run queue: while a listed run is queued or running, every 5 s fetch the same
// filtered list from /api/runs and update those rows' status and progress; stop when
// none is active. Text goes in as text.
(function () {
  "use strict";
  var table = document.getElementById("run-queue");
  if (!table || table.dataset.active !== "true") return;
  var query = table.dataset.query || "";
  var finished = ["succeeded", "failed", "cancelled"];

  function update(run) {
    var row = table.querySelector('tr[data-run-id="' + run.id + '"]');
    if (!row) return;
    row.dataset.status = run.status;
    var status = row.querySelector('[data-field="status"]');
    status.textContent = run.status;
    status.className = "status status-" + run.status;
    var progress = row.querySelector("progress");
    if (progress && run.total_steps) { progress.max = run.total_steps; progress.value = run.step; }
    var steps = row.querySelector('[data-field="steps"]');
    if (steps) steps.textContent = run.total_steps ? run.step + "/" + run.total_steps : (run.step > 0 ? "step " + run.step : "");
  }

  function poll() {
    fetch("/api/runs?" + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (runs) {
        runs.forEach(update);
        var active = table.querySelectorAll("tr[data-run-id]");
        var any = Array.prototype.some.call(active, function (row) {
          return finished.indexOf(row.dataset.status) < 0;
        });
        if (any) window.setTimeout(poll, 5000);
      })
      .catch(function () { window.setTimeout(poll, 15000); });
  }

  window.setTimeout(poll, 5000);
})();
