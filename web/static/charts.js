// A run's page, live: while the run is queued or running, every 2 s fetch its status,
// metrics and new log lines; redraw the charts (the geometry of
// web/src/routes/runs/chart.rs), append the lines, and reload the page once the run has
// ended (to show its version or error). No framework; text goes in as text.
(function () {
  "use strict";
  var live = document.getElementById("run-live");
  if (!live || live.dataset.active !== "true") return;
  var id = live.dataset.runId;
  var lastLog = Number(live.dataset.lastLogId || 0);
  var SVG = "http://www.w3.org/2000/svg";
  var W = 320, H = 160, LEFT = 56, RIGHT = 8, TOP = 8, BOTTOM = 22;
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  function tick(v) {
    if (v === 0 || !isFinite(v)) return "0";
    var e = Math.floor(Math.log10(Math.abs(v)));
    if (e < -3 || e >= 5) return v.toExponential(2).replace("e+", "e");
    return v.toFixed(Math.max(0, 2 - e));
  }

  function bounds(values) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) { lo = Math.min(lo, v); hi = Math.max(hi, v); });
    if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
    if (lo === hi) { var pad = lo === 0 ? 1 : Math.abs(lo) * 0.1; return [lo - pad, hi + pad]; }
    return [lo, hi];
  }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function figure(series) {
    var xs = bounds(series.steps), ys = bounds(series.values);
    var x = function (s) { return LEFT + (s - xs[0]) / (xs[1] - xs[0]) * (W - LEFT - RIGHT); };
    var y = function (v) { return H - BOTTOM - (v - ys[0]) / (ys[1] - ys[0]) * (H - TOP - BOTTOM); };
    var fig = document.createElement("figure");
    fig.className = "chart";
    fig.dataset.metric = series.name;
    var caption = document.createElement("figcaption");
    caption.textContent = series.name;
    fig.appendChild(caption);
    var svg = el("svg", { viewBox: "0 0 320 160", width: "320", height: "160", role: "img",
      "aria-label": series.name + " by step, from " + tick(ys[0]) + " to " + tick(ys[1]) });
    svg.appendChild(el("line", { x1: 56, y1: 8, x2: 56, y2: 138, "class": "axis" }));
    svg.appendChild(el("line", { x1: 56, y1: 138, x2: 312, y2: 138, "class": "axis" }));
    svg.appendChild(el("text", { x: 52, y: 14, "text-anchor": "end" }, tick(ys[1])));
    svg.appendChild(el("text", { x: 52, y: 138, "text-anchor": "end" }, tick(ys[0])));
    svg.appendChild(el("text", { x: 56, y: 154, "text-anchor": "start" }, tick(xs[0])));
    svg.appendChild(el("text", { x: 312, y: 154, "text-anchor": "end" }, tick(xs[1])));
    var points = series.steps.map(function (s, i) {
      return x(s).toFixed(1) + "," + y(series.values[i]).toFixed(1);
    }).join(" ");
    var line = el("polyline", { fill: "none", stroke: PALETTE[0], "stroke-width": "1.5", points: points });
    line.appendChild(el("title", {}, series.name));
    svg.appendChild(line);
    fig.appendChild(svg);
    return fig;
  }

  function drawCharts(all) {
    var box = document.getElementById("run-charts");
    if (!box || all.length === 0) return;
    var groups = {};
    all.forEach(function (s) {
      var slash = s.name.indexOf("/");
      var group = slash >= 0 ? s.name.slice(0, slash) : "other";
      (groups[group] = groups[group] || []).push(s);
    });
    box.replaceChildren();
    Object.keys(groups).sort().forEach(function (name) {
      var section = document.createElement("section");
      section.className = "chart-group";
      section.dataset.group = name;
      var h = document.createElement("h3");
      h.textContent = name;
      section.appendChild(h);
      var charts = document.createElement("div");
      charts.className = "charts";
      groups[name].forEach(function (s) { charts.appendChild(figure(s)); });
      section.appendChild(charts);
      box.appendChild(section);
    });
  }

  function appendLogs(lines) {
    var log = document.getElementById("run-log");
    if (!log || lines.length === 0) return;
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    lines.forEach(function (l) {
      var span = document.createElement("span");
      span.dataset.logId = l.id;
      span.textContent = l.at.replace("T", " ").slice(0, 19) + "  " + l.line + "\n";
      log.appendChild(span);
      lastLog = Math.max(lastLog, l.id);
    });
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  function showStatus(run) {
    var status = document.getElementById("run-status");
    status.textContent = run.status;
    status.className = "status status-" + run.status;
    var progress = document.getElementById("run-progress");
    progress.max = run.total_steps || 1;
    progress.value = run.step;
    document.getElementById("run-steps").textContent =
      run.total_steps ? "step " + run.step + " of " + run.total_steps : "step " + run.step;
    document.getElementById("run-eta").textContent =
      run.eta_seconds != null ? "· about " + duration(run.eta_seconds) + " left" : "";
  }

  function getJson(path) {
    return fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(path + ": " + r.status); return r.json(); });
  }

  function poll() {
    Promise.all([
      getJson("/api/runs/" + id),
      getJson("/api/runs/" + id + "/metrics"),
      getJson("/api/runs/" + id + "/logs?after=" + lastLog + "&limit=1000"),
    ]).then(function (got) {
      showStatus(got[0]);
      drawCharts(got[1]);
      appendLogs(got[2]);
      var ended = ["succeeded", "failed", "cancelled"].indexOf(got[0].status) >= 0;
      if (ended) window.location.reload();
      else window.setTimeout(poll, 2000);
    }).catch(function () { window.setTimeout(poll, 10000); });
  }

  window.setTimeout(poll, 2000);
})();
