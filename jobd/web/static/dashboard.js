// jobd's dashboard: charts (uPlot) fed by the run page's live stream, the log's scroll, and
// progress's time left counting down.
(function () {
  "use strict";
  const charts = {};

  function sizeText(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function formatter(unit) {
    if (unit === "bytes") return (u, vals) => vals.map((v) => (v == null ? "" : sizeText(v)));
    if (unit === "ratio") return (u, vals) => vals.map((v) => (v == null ? "" : Math.round(v * 100) + "%"));
    return (u, vals) => vals.map((v) => (v == null ? "" : v.toFixed(2)));
  }

  function chartFor(metric) {
    const el = document.getElementById("chart-" + metric.name);
    if (!el || typeof uPlot === "undefined") return null;
    if (!charts[metric.name]) {
      const opts = {
        width: el.clientWidth || 420, height: 160, legend: { show: false },
        scales: { y: { range: (u, min, max) => [0, Math.max(max, metric.unit === "ratio" ? 1 : 0.1)] } },
        axes: [{}, { values: formatter(metric.unit), size: 80 }],
        series: [{}, { label: metric.name, stroke: "#2271b1", fill: "rgba(34,113,177,.12)" }],
      };
      charts[metric.name] = { plot: new uPlot(opts, [[], []], el), xs: [], ys: [] };
      el.dataset.points = "0";
    }
    return charts[metric.name];
  }

  function add(doc) {
    for (const metric of doc.metrics || []) {
      if (metric.status !== "ok" || !metric.series.length) continue;
      const chart = chartFor(metric);
      if (!chart) continue;
      const s = metric.series[0];
      for (let i = 0; i < s.timestamps.length; i++) {
        const t = s.timestamps[i];
        if (chart.xs.length && t <= chart.xs[chart.xs.length - 1]) continue;
        chart.xs.push(t); chart.ys.push(s.values[i]);
      }
      chart.plot.setData([chart.xs, chart.ys]);
      document.getElementById("chart-" + metric.name).dataset.points = String(chart.xs.length);
    }
  }

  // as render.py's duration filter writes it
  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const pad = (n) => String(n).padStart(2, "0");
    if (s >= 86400) return Math.floor(s / 86400) + "d " + pad(Math.floor((s % 86400) / 3600)) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    return s + "s";
  }

  // A run's time left counts down, and its current phase's time up, between the server's
  // pushes: each counts from when its element arrived (the server's figure was as of then).
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll(".eta[data-left], .grows[data-seconds]")) {
      if (!el.dataset.seen) el.dataset.seen = String(now);
      const elapsed = (now - Number(el.dataset.seen)) / 1000;
      if (el.dataset.left !== undefined) {
        el.textContent = duration(Number(el.dataset.left) - elapsed) + " left";
      } else {
        el.textContent = duration(Number(el.dataset.seconds) + elapsed) + " so far";
      }
    }
  }

  function atBottom(log) { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }

  document.addEventListener("DOMContentLoaded", () => {
    tick();
    setInterval(tick, 1000);
    const initial = document.getElementById("metrics-initial");
    if (initial) add(JSON.parse(initial.textContent));
    const log = document.getElementById("log");
    if (log) {
      log.scrollTop = log.scrollHeight;
      let follow = true;
      log.addEventListener("scroll", () => { follow = atBottom(log); });
      document.body.addEventListener("htmx:sseMessage", (e) => {
        if (e.detail.type === "log" && follow) log.scrollTop = log.scrollHeight;
      });
      for (const button of document.querySelectorAll("[data-jump]")) {
        button.addEventListener("click", () => {
          log.scrollTop = button.dataset.jump === "top" ? 0 : log.scrollHeight;
          follow = button.dataset.jump !== "top";
        });
      }
    }
    // htmx's SSE extension dispatches only the events a swap names: read "metrics" ourselves
    document.body.addEventListener("htmx:sseOpen", (e) => {
      const source = e.detail.source;
      if (!source || source.jobdMetrics) return;
      source.jobdMetrics = true;
      source.addEventListener("metrics", (m) => add(JSON.parse(m.data)));
    });
  });
})();
