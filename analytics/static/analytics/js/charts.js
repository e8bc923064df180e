/* Draws the dashboard's charts with the vendored Chart.js.
 *
 * Each <canvas data-chart="KIND" data-source="ID"> reads its data from the JSON block
 * <script type="application/json" id="ID"> that the page rendered with json_script, so no
 * inline script is needed (the Content-Security-Policy allows only this file).
 */
(function () {
  "use strict";
  if (typeof Chart === "undefined") return;

  var INK = "#243b53", BLUE = "#2f6fde", TEAL = "#1c9c8c", GRID = "#e4e7eb";
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  Chart.defaults.color = INK;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  function data(canvas) {
    var node = document.getElementById(canvas.dataset.source);
    return node ? JSON.parse(node.textContent) : null;
  }

  var builders = {
    histogram: function (d) {
      return {
        type: "bar",
        data: { labels: d.labels, datasets: [{ label: "Nights", data: d.values, backgroundColor: BLUE }] },
        options: {
          plugins: { legend: { display: false } },
          scales: { x: { title: { display: true, text: "Sleep score" }, grid: { display: false } },
                    y: { beginAtZero: true, title: { display: true, text: "Nights" }, grid: { color: GRID } } }
        }
      };
    },
    departments: function (d) {
      return {
        type: "bar",
        data: { labels: d.labels, datasets: [{ label: "Average score", data: d.values, backgroundColor: TEAL }] },
        options: {
          indexAxis: "y",
          plugins: { legend: { display: false } },
          scales: { x: { min: 0, max: 100, grid: { color: GRID } }, y: { grid: { display: false } } }
        }
      };
    },
    trend: function (d, canvas) {
      var s = d[canvas.dataset.series];
      return {
        type: "line",
        data: { labels: s.labels, datasets: [{ label: s.label, data: s.values, borderColor: BLUE,
                                               backgroundColor: BLUE, pointRadius: 2, spanGaps: false }] },
        options: {
          plugins: { legend: { display: false } },
          scales: { x: { ticks: { maxTicksLimit: 6 }, grid: { display: false } },
                    y: { suggestedMin: s.axis[0], suggestedMax: s.axis[1], grid: { color: GRID } } }
        }
      };
    },
    hypnogram: function (d) {
      var names = d.levels;
      return {
        type: "line",
        data: { labels: d.labels, datasets: [{ label: "Stage", data: d.values, stepped: "before",
                                               borderColor: INK, borderWidth: 1.5, pointRadius: 0,
                                               spanGaps: false }] },
        options: {
          plugins: { legend: { display: false },
                     tooltip: { callbacks: { label: function (c) { return names[String(c.parsed.y)] || ""; } } } },
          scales: {
            x: { ticks: { maxTicksLimit: 10, autoSkip: true }, grid: { display: false } },
            y: { min: 0.5, max: 5.5, afterBuildTicks: function (axis) {
                   axis.ticks = Object.keys(names).map(function (k) { return { value: Number(k) }; });
                 },
                 ticks: { callback: function (v) { return names[String(v)] || ""; } }, grid: { color: GRID } }
          }
        }
      };
    },
    recent: function (d) {
      return {
        type: "bar",
        data: { labels: d.labels, datasets: [
          { type: "bar", label: "Sleep score", data: d.score, backgroundColor: BLUE, yAxisID: "score" },
          { type: "line", label: "Hours asleep", data: d.tst_h, borderColor: TEAL, backgroundColor: TEAL,
            pointRadius: 2, yAxisID: "hours" }
        ] },
        options: {
          scales: {
            x: { ticks: { maxTicksLimit: 10 }, grid: { display: false } },
            score: { position: "left", min: 0, max: 100, title: { display: true, text: "Score" }, grid: { color: GRID } },
            hours: { position: "right", min: 0, suggestedMax: 10, title: { display: true, text: "Hours" },
                     grid: { display: false } }
          }
        }
      };
    }
  };

  function draw() {
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var build = builders[canvas.dataset.chart], d = data(canvas);
      if (!build || !d) return;
      new Chart(canvas, build(d, canvas));
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
