// The overview's and the usage page's charts: uPlot over the JSON columns of the
// box's data-src (/api/overview, /api/usage), refreshed every few seconds.
"use strict";
(function () {
  var box = document.getElementById("charts");
  if (!box || typeof uPlot === "undefined") return;
  var src = box.getAttribute("data-src");
  var every = parseInt(box.getAttribute("data-refresh-ms"), 10) || 5000;
  var colours = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];
  var charts = [];
  function fmt(v, unit) {
    if (v == null) return "–";
    if (unit === "ms") return v < 100 ? v.toFixed(2) + " ms" : v.toFixed(0) + " ms";
    if (unit === "%") return (100 * v).toFixed(1) + "%";
    return v.toFixed(3);
  }
  function make(el, cols) {
    var keys = el.getAttribute("data-chart").split(",");
    var unit = el.getAttribute("data-unit");
    // "sci": small amounts (GB-s, cost) labelled with 3 significant digits
    var floor = unit === "%" ? 1 : unit === "sci" ? 1e-9 : 0.001;
    var label = unit === "sci" ? function (v) { return v === 0 ? "0" : v.toPrecision(3); }
                               : function (v) { return +v.toFixed(3); };
    var series = [{}].concat(keys.map(function (k, i) {
      return { label: k, stroke: colours[i % colours.length], width: 1.5, spanGaps: false,
               points: { show: true, size: 4 },
               fill: keys.length === 1 ? colours[0] + "22" : undefined };
    }));
    var opts = { width: el.clientWidth || 420, height: 170, series: series,
                 legend: { show: keys.length > 1 }, cursor: { drag: { x: false, y: false } },
                 scales: { y: { range: function (u, min, max) { return [0, Math.max(max || 0, floor) * 1.1]; } } },
                 axes: [{}, { size: unit === "sci" ? 76 : 52, values: function (u, vals) { return vals.map(label); } }] };
    var u = new uPlot(opts, data(cols, keys), el);
    charts.push({ u: u, keys: keys, el: el });
  }
  function data(cols, keys) {
    return [cols.t].concat(keys.map(function (k) { return cols[k]; }));
  }
  function tiles(total) {
    document.querySelectorAll("[data-total]").forEach(function (el) {
      var k = el.getAttribute("data-total");
      var v = total[k];
      if (k === "count") el.textContent = v;
      else if (k === "rps") el.textContent = v.toFixed(3);
      else if (k === "p50" || k === "p99") el.textContent = fmt(v, "ms");
      else el.textContent = fmt(v, "%");
    });
  }
  function load(first) {
    fetch(src, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (body) {
        if (first) box.querySelectorAll(".chart").forEach(function (el) { make(el, body.series); });
        else charts.forEach(function (c) { c.u.setData(data(body.series, c.keys)); });
        tiles(body.total);
        box.setAttribute("data-loaded", String(Date.now()));
      })
      .catch(function () { box.setAttribute("data-error", "1"); })
      .finally(function () { setTimeout(function () { load(false); }, every); });
  }
  window.addEventListener("resize", function () {
    charts.forEach(function (c) { c.u.setSize({ width: c.el.clientWidth, height: 170 }); });
  });
  load(true);
})();
