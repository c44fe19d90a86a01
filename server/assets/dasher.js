// Dasher web console: progressive enhancement only (every page works without it).
// Charts: an element with class "chart" and data-* attributes:
//   data-x       comma-separated Unix seconds
//   data-series  "label|color|v1,v2,...;label|color|..." (one series per ';')
//   data-kind    "bars" or "line"
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function nums(s) {
    return s === "" ? [] : s.split(",").map(Number);
  }

  function draw(el) {
    if (typeof uPlot === "undefined" || el.dataset.drawn) return;
    var xs = nums(el.dataset.x || "");
    if (xs.length === 0) return;
    var data = [xs];
    var series = [{}];
    (el.dataset.series || "").split(";").forEach(function (part) {
      if (!part) return;
      var f = part.split("|");
      data.push(nums(f[2] || ""));
      var s = { label: f[0], stroke: f[1], width: 2 };
      if (el.dataset.kind === "bars") {
        s.fill = f[1];
        s.paths = uPlot.paths.bars({ size: [0.7, 40] });
      }
      series.push(s);
    });
    var width = Math.max(el.clientWidth || 0, 300);
    el.dataset.drawn = "1";
    new uPlot({ width: width, height: 200, series: series, scales: { x: { time: true } } }, data, el);
  }

  function init(root) {
    (root || document).querySelectorAll(".chart").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  // After htmx swapped in new content (e.g. the overview's periodic refresh).
  document.addEventListener("htmx:afterSettle", function () { init(document); });
})();
