// Training curves drawn with uPlot (web/static/vendor/uplot, loaded from here), as W&B and
// MLflow users expect them: values under the cursor in the legend, steps on the x axis, a
// log scale for y, exponential smoothing with the raw curve left faint, and a single
// point drawn as a point.
//
// The run page (#run-live): its metrics from /api/runs/{id}/metrics, a metric's train/ and
// val/ series overlaid in one chart (and a stage's one training loss, loss/sft, with
// val/loss); while the run is queued or running, every 2 s its status, metrics and new
// log lines, and a reload once it has ended (to show its version or error).
// The compare page (#compare-curves): one chart per metric, one series per version, from
// the page's data-curves.
// Without script the server's SVG charts stay; with it they are hidden, not removed.
// Each drawn chart says in data-points how many points its (raw) series drew.
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  var UPLOT = "/static/vendor/uplot/uPlot.iife.min.js";
  var STYLES = ["/static/vendor/uplot/uPlot.min.css", "/static/analytics.css"];
  // Text at 12 px; ticks and grid at least 3:1 against the white plot.
  var FONT = "12px system-ui, sans-serif";
  var TEXT = "#1d2330", AXIS = "#5a6170", GRID = "#8d929c";
  var WIDTH = 440, HEIGHT = 220;
  // Series with at most this many points are drawn with their points marked.
  var FEW_POINTS = 60;
  var STEP_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

  var settings = { smoothing: 0, log: false };
  var view = null; // { box, specs, plots: [{ spec, plot }] }

  function tick(v) {
    if (v == null) return "—";
    if (v === 0 || !isFinite(v)) return String(v);
    var e = Math.floor(Math.log10(Math.abs(v)));
    if (e < -3 || e >= 5) return v.toExponential(2).replace("e+", "e");
    return v.toFixed(Math.max(0, 2 - e));
  }

  function loadUplot() {
    STYLES.forEach(function (href) {
      if (document.querySelector("link[href='" + href + "']")) return;
      var link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      document.head.appendChild(link);
    });
    if (window.uPlot) return Promise.resolve();
    return new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = UPLOT;
      script.onload = resolve;
      script.onerror = function () { reject(new Error("could not load " + UPLOT)); };
      document.head.appendChild(script);
    });
  }

  // Exponential moving average over a series' own points (nulls are other series'
  // steps), debiased like W&B's and TensorBoard's so that the start is not pulled to 0.
  function smooth(values, weight) {
    var last = 0, n = 0;
    return values.map(function (v) {
      if (v == null) return null;
      n += 1;
      last = last * weight + (1 - weight) * v;
      return last / (1 - Math.pow(weight, n));
    });
  }

  // The series on one x axis: the union of their steps, null where a series has no value
  // (uPlot wants aligned columns). On a log scale values that are not positive are left out.
  function align(series) {
    var steps = {};
    series.forEach(function (s) { s.steps.forEach(function (x) { steps[x] = true; }); });
    var xs = Object.keys(steps).map(Number).sort(function (a, b) { return a - b; });
    var at = {};
    xs.forEach(function (x, i) { at[x] = i; });
    var columns = series.map(function (s) {
      var column = xs.map(function () { return null; });
      s.steps.forEach(function (x, i) {
        var v = s.values[i];
        if (typeof v === "number" && isFinite(v) && !(settings.log && v <= 0)) column[at[x]] = v;
      });
      return column;
    });
    return { xs: xs, columns: columns };
  }

  function count(column) {
    return column.reduce(function (n, v) { return v == null ? n : n + 1; }, 0);
  }

  // uPlot's data and series options for a chart: per series the raw column, and with
  // smoothing the smoothed one over it (the raw faint, out of the legend).
  function plotted(spec) {
    var aligned = align(spec.series);
    var data = [aligned.xs], series = [{ label: "step", value: function (u, v) { return v == null ? "—" : String(v); } }];
    spec.series.forEach(function (s, i) {
      var color = s.color || PALETTE[i % PALETTE.length];
      var column = aligned.columns[i];
      var points = { show: count(column) <= FEW_POINTS, size: 7, fill: color };
      var value = function (u, v) { return tick(v); };
      if (settings.smoothing > 0) {
        data.push(column);
        series.push({ label: s.label + " (raw)", stroke: color + "44", width: 1, spanGaps: true,
          points: { show: false }, value: value, class: "raw" });
        data.push(smooth(column, settings.smoothing));
        series.push({ label: s.label, stroke: color, width: 2, spanGaps: true, points: points, value: value });
      } else {
        data.push(column);
        series.push({ label: s.label, stroke: color, width: 2, spanGaps: true, points: points, value: value });
      }
    });
    return { data: data, series: series };
  }

  // Points of the raw series inside the x range shown.
  function drawnPoints(u) {
    var n = 0, xs = u.data[0];
    u.series.forEach(function (s, si) {
      if (si === 0 || (settings.smoothing > 0 && s.class !== "raw")) return;
      u.data[si].forEach(function (v, i) {
        if (v != null && xs[i] >= u.scales.x.min && xs[i] <= u.scales.x.max) n += 1;
      });
    });
    return n;
  }

  // Away from the cursor the legend shows each series' latest value, not "—".
  function showLatest(u) {
    if (u.legend.idx != null) return;
    var cells = u.root.querySelectorAll(".u-legend .u-value");
    u.series.forEach(function (s, si) {
      var column = u.data[si], i = column.length - 1;
      while (i >= 0 && column[i] == null) i -= 1;
      if (cells[si] && i >= 0) cells[si].textContent = si === 0 ? String(column[i]) : tick(column[i]);
    });
  }

  function yRange(u, min, max) {
    if (min == null || max == null) return settings.log ? [1, 10] : [0, 1];
    if (settings.log) return min === max ? [min / 2, max * 2] : uPlot.rangeLog(min, max, 10, true);
    if (min === max) {
      var pad = min === 0 ? 1 : Math.abs(min) * 0.1;
      return [min - pad, max + pad];
    }
    return uPlot.rangeNum(min, max, 0.1, true);
  }

  function options(spec, figure, series, width) {
    return {
      width: width,
      height: HEIGHT,
      series: series,
      scales: {
        x: { time: false, range: function (u, min, max) { return min === max ? [min - 1, max + 1] : [min, max]; } },
        y: { distr: settings.log ? 3 : 1, log: 10, range: yRange },
      },
      axes: [
        { label: "step", font: FONT, labelFont: FONT, labelSize: 20, stroke: TEXT, incrs: STEP_INCREMENTS,
          grid: { stroke: GRID, width: 0.5 }, ticks: { stroke: AXIS } },
        { font: FONT, stroke: TEXT, size: 64, grid: { stroke: GRID, width: 0.5 }, ticks: { stroke: AXIS },
          // A log axis leaves some splits unlabelled (null).
          values: function (u, splits) { return splits.map(function (v) { return v == null ? "" : tick(v); }); } },
      ],
      cursor: { focus: { prox: 16 } },
      legend: { live: true },
      hooks: {
        draw: [function (u) { figure.dataset.points = String(drawnPoints(u)); }],
        setLegend: [showLatest],
      },
    };
  }

  function describe(spec) {
    var latest = spec.series.map(function (s) {
      var v = s.values[s.values.length - 1];
      return s.label + " " + (s.values.length ? tick(v) + " at step " + s.steps[s.steps.length - 1] : "none");
    });
    return spec.name + " by step; latest: " + latest.join(", ");
  }

  // An element of class `className` (if any) holding `text` (if any), as text.
  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function chart(box, spec) {
    var figure = make("figure", "chart uplot-chart");
    figure.dataset.metric = spec.name;
    figure.appendChild(make("figcaption", null, spec.name));
    box.appendChild(figure);
    var width = Math.max(240, Math.min(WIDTH, box.clientWidth - 16));
    var p = plotted(spec);
    var plot = new uPlot(options(spec, figure, p.series, width), p.data, figure);
    var canvas = plot.root.querySelector("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", describe(spec));
    return { spec: spec, plot: plot, figure: figure };
  }

  function controls(onChange) {
    var bar = make("div", "chart-controls");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Chart settings");
    var smoothing = make("label", null, "Smoothing ");
    var range = document.createElement("input");
    range.type = "range"; range.min = "0"; range.max = "0.99"; range.step = "0.01"; range.value = "0";
    range.id = "chart-smoothing";
    var shown = make("output", null, "off");
    shown.htmlFor = "chart-smoothing";
    smoothing.appendChild(range);
    smoothing.appendChild(shown);
    var log = document.createElement("label");
    var box = document.createElement("input");
    box.type = "checkbox"; box.id = "chart-log";
    log.appendChild(box);
    log.appendChild(document.createTextNode(" Log scale (y)"));
    range.addEventListener("input", function () {
      settings.smoothing = Number(range.value);
      shown.textContent = settings.smoothing > 0 ? range.value : "off";
      onChange();
    });
    box.addEventListener("change", function () { settings.log = box.checked; onChange(); });
    bar.appendChild(smoothing);
    bar.appendChild(log);
    return bar;
  }

  // Draws `sections` ([{ name, specs }]) into `box`, replacing what it drew before.
  function draw(box, sections) {
    if (view) view.plots.forEach(function (d) { d.plot.destroy(); });
    box.replaceChildren();
    var plots = [];
    sections.forEach(function (section) {
      var holder = box;
      if (section.name) {
        holder = make("section", "chart-group");
        holder.dataset.group = section.name;
        holder.appendChild(make("h3", null, section.name));
        box.appendChild(holder);
      }
      var charts = make("div", "charts");
      holder.appendChild(charts);
      section.specs.forEach(function (spec) { plots.push(chart(charts, spec)); });
    });
    view = { box: box, sections: sections, plots: plots };
  }

  function signature(sections) {
    return JSON.stringify(sections.map(function (s) {
      return [s.name, s.specs.map(function (c) { return [c.name, c.series.map(function (x) { return x.label; })]; })];
    }));
  }

  // New data for the charts drawn: in place where the same charts and series remain (the
  // cursor and zoom stay), else drawn again.
  function update(box, sections) {
    if (!view || signature(view.sections) !== signature(sections)) { draw(box, sections); return; }
    view.sections = sections;
    var specs = [];
    sections.forEach(function (s) { specs = specs.concat(s.specs); });
    view.plots.forEach(function (d, i) {
      d.spec = specs[i];
      d.plot.setData(plotted(specs[i]).data);
      d.plot.root.querySelector("canvas").setAttribute("aria-label", describe(specs[i]));
    });
  }

  // A fresh area for the drawn charts at the top of `fallback`, whose server-drawn
  // children are hidden.
  function canvasArea(fallback) {
    Array.prototype.forEach.call(fallback.children, function (child) { child.hidden = true; });
    var area = make("div", "uplot-area");
    var box = document.createElement("div");
    area.appendChild(controls(function () { if (view) draw(box, view.sections); }));
    area.appendChild(box);
    fallback.prepend(area);
    return box;
  }

  // The run page's charts: a metric's train/X and val/X (or test/X, eval/X) overlaid as
  // X, and the stage's one loss/* training loss with val/loss; each other series alone,
  // in a section named by its prefix.
  function runSections(all) {
    var losses = all.filter(function (s) { return s.name.indexOf("loss/") === 0; });
    var hasValLoss = all.some(function (s) { return s.name === "val/loss"; });
    var key = function (name) {
      var m = /^(train|val|test|eval)\/(.+)$/.exec(name);
      if (m) return m[2];
      if (hasValLoss && losses.length === 1 && name === losses[0].name) return "loss";
      return name;
    };
    var byKey = {};
    all.forEach(function (s) {
      var k = key(s.name);
      (byKey[k] = byKey[k] || []).push({ label: s.name, steps: s.steps, values: s.values });
    });
    var sections = {};
    Object.keys(byKey).sort().forEach(function (k) {
      var series = byKey[k];
      var overlaid = series.length > 1;
      var name = overlaid ? k : series[0].label;
      var slash = name.indexOf("/");
      var section = overlaid ? "train and validation" : slash >= 0 ? name.slice(0, slash) : "other";
      (sections[section] = sections[section] || []).push({ name: name, series: series });
    });
    return Object.keys(sections).sort(function (a, b) {
      return (a === "train and validation" ? -1 : b === "train and validation" ? 1 : a < b ? -1 : 1);
    }).map(function (name) { return { name: name, specs: sections[name] }; });
  }

  function getJson(path) {
    return fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(path + ": " + r.status); return r.json(); });
  }

  function appendLogs(lines, state) {
    var log = document.getElementById("run-log");
    if (!log || lines.length === 0) return;
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    lines.forEach(function (l) {
      var span = document.createElement("span");
      span.dataset.logId = l.id;
      span.textContent = l.at.replace("T", " ").slice(0, 19) + "  " + l.line + "\n";
      log.appendChild(span);
      state.lastLog = Math.max(state.lastLog, l.id);
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

  function runPage(live) {
    var id = live.dataset.runId;
    var fallback = document.getElementById("run-charts");
    var state = { lastLog: Number(live.dataset.lastLogId || 0), box: null };
    function show(metrics) {
      if (metrics.length === 0) return;
      if (!state.box) state.box = canvasArea(fallback);
      update(state.box, runSections(metrics));
    }
    // Polling does not wait for uPlot: status and logs go on even if it fails to load.
    var ready = loadUplot();
    function poll() {
      Promise.all([
        getJson("/api/runs/" + id),
        getJson("/api/runs/" + id + "/metrics"),
        getJson("/api/runs/" + id + "/logs?after=" + state.lastLog + "&limit=1000"),
      ]).then(function (got) {
        showStatus(got[0]);
        ready.then(function () { show(got[1]); });
        appendLogs(got[2], state);
        var ended = ["succeeded", "failed", "cancelled"].indexOf(got[0].status) >= 0;
        if (ended) window.location.reload();
        else window.setTimeout(poll, 2000);
      }).catch(function () { window.setTimeout(poll, 10000); });
    }
    ready.then(function () { return getJson("/api/runs/" + id + "/metrics"); }).then(show);
    if (live.dataset.active === "true") window.setTimeout(poll, 2000);
  }

  function comparePage(curves) {
    var specs = JSON.parse(curves.dataset.curves);
    if (specs.length === 0) return;
    loadUplot().then(function () { draw(canvasArea(curves), [{ name: null, specs: specs }]); });
  }

  var live = document.getElementById("run-live");
  var curves = document.getElementById("compare-curves");
  if (live && document.getElementById("run-charts")) runPage(live);
  else if (curves && curves.dataset.curves) comparePage(curves);
})();
