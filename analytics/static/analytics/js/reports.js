/* Reports page: cohort charts (vendored Chart.js) and export jobs (create, poll, download).
 *
 * Data comes from the JSON block rendered with json_script (id "report-chart-data") and
 * from the small status endpoint of each export: no inline script, so the page works under
 * a Content-Security-Policy that allows only scripts served by the platform.
 */
(function () {
  "use strict";

  var BLUE = "#2f6fde", INK = "#102a43", GRID = "#e4e7eb", UP = "#2f855a", DOWN = "#c53030";
  var POLL_MS = 1000;

  // --- charts ----------------------------------------------------------------------------
  function chartData() {
    var node = document.getElementById("report-chart-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  function iqrChart(canvas, d) {
    var groups = d.groups.filter(function (g) { return g.p25 !== null && g.p75 !== null; });
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: groups.map(function (g) { return g.label; }),
        datasets: [
          { label: "25th to 75th percentile", data: groups.map(function (g) { return [g.p25, g.p75]; }),
            backgroundColor: "rgba(47, 111, 222, 0.45)", borderColor: BLUE, borderWidth: 1, grouped: false },
          { label: "Median", data: groups.map(function (g) { return g.median === null ? null : [g.median - 0.4, g.median + 0.4]; }),
            backgroundColor: INK, grouped: false, barPercentage: 0.9 }
        ]
      },
      options: {
        indexAxis: "y", animation: false, maintainAspectRatio: false,
        scales: { x: { min: 0, max: 100, title: { display: true, text: "Sleep score" }, grid: { color: GRID } },
                  y: { grid: { display: false } } },
        plugins: { tooltip: { callbacks: { label: function (item) {
          var g = groups[item.dataIndex];
          return item.datasetIndex === 0 ? "IQR " + g.p25 + " to " + g.p75 : "median " + g.median;
        } } } }
      }
    });
  }

  function deltaChart(canvas, d) {
    var groups = d.groups.filter(function (g) { return g.delta !== null; });
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: groups.map(function (g) { return g.label; }),
        datasets: [{ label: "Change of the mean score", data: groups.map(function (g) { return g.delta; }),
                     backgroundColor: groups.map(function (g) { return g.delta >= 0 ? UP : DOWN; }) }]
      },
      options: {
        indexAxis: "y", animation: false, maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { x: { title: { display: true, text: "Points against the previous period" }, grid: { color: GRID } },
                  y: { grid: { display: false } } }
      }
    });
  }

  function drawCharts() {
    if (typeof Chart === "undefined") return;
    var d = chartData();
    if (!d) return;
    var builders = { iqr: iqrChart, delta: deltaChart };
    document.querySelectorAll("canvas[data-report-chart]").forEach(function (canvas) {
      var build = builders[canvas.dataset.reportChart];
      if (build) build(canvas, d);
    });
  }

  // --- exports ---------------------------------------------------------------------------
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function setStatus(row, status) {
    var statusCell = row.querySelector("[data-export-status]");
    var fileCell = row.querySelector("[data-export-file]");
    statusCell.querySelector("progress").value = status.progress;
    statusCell.querySelector("span").textContent = status.status === "failed" && status.error
      ? "failed: " + status.error : status.status;
    if (status.download_url && !fileCell.querySelector("a")) {
      var link = document.createElement("a");
      link.href = status.download_url;
      link.setAttribute("download", "");
      link.textContent = "Download";
      fileCell.textContent = "";
      fileCell.appendChild(link);
    }
    row.dataset.state = status.status;
  }

  function poll(row) {
    var url = row.dataset.statusUrl;
    if (!url) return;
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
      .then(function (status) {
        setStatus(row, status);
        if (status.status === "pending" || status.status === "running") {
          window.setTimeout(function () { poll(row); }, POLL_MS);
        }
      })
      .catch(function () { window.setTimeout(function () { poll(row); }, POLL_MS * 3); });
  }

  function addRow(table, status, form) {
    var body = table.querySelector("tbody");
    var placeholder = body.querySelector(".empty-row");
    if (placeholder) placeholder.remove();
    var row = document.createElement("tr");
    row.dataset.export = status.uuid;
    row.dataset.statusUrl = status.status_url;
    var data = new FormData(form);
    row.appendChild(cell(new Date().toISOString().slice(0, 16).replace("T", " ")));
    row.appendChild(cell(status.format));
    row.appendChild(cell(data.get("start") + " to " + data.get("end")));
    row.appendChild(cell(String(data.get("group_by")).split(",").map(function (s) {
      return s === "department" ? "Department" : s.replace(/^attr:/, "");
    }).join(" then ")));
    var statusCell = document.createElement("td");
    statusCell.setAttribute("data-export-status", "");
    var progress = document.createElement("progress");
    progress.max = 100;
    progress.value = status.progress;
    statusCell.appendChild(progress);
    statusCell.appendChild(document.createTextNode(" "));
    statusCell.appendChild(document.createElement("span"));
    row.appendChild(statusCell);
    var fileCell = document.createElement("td");
    fileCell.setAttribute("data-export-file", "");
    row.appendChild(fileCell);
    body.insertBefore(row, body.firstChild);
    setStatus(row, status);
    return row;
  }

  function wireExportForm() {
    var form = document.querySelector("[data-export-form]");
    var table = document.querySelector("[data-exports-table]");
    var message = document.querySelector("[data-export-message]");
    if (!form || !table || !window.fetch) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(form);
      if (event.submitter && event.submitter.name) data.set(event.submitter.name, event.submitter.value);
      message.textContent = "Requesting the export…";
      fetch(form.action, {
        method: "POST", body: data, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": data.get("csrfmiddlewaretoken") }
      })
        .then(function (response) {
          return response.json().then(function (body) { return { ok: response.ok, body: body }; });
        })
        .then(function (result) {
          if (!result.ok) { message.textContent = "No export was created: " + result.body.detail; return; }
          message.textContent = result.body.format + " export requested; it is being prepared below.";
          poll(addRow(table, result.body, form));
        })
        .catch(function () { message.textContent = "The export could not be requested; please try again."; });
    });
    table.querySelectorAll("tr[data-status-url]").forEach(poll);
  }

  function start() {
    drawCharts();
    wireExportForm();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
