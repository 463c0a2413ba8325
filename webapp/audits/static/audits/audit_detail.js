// Audit page: draw the dashboard charts from #chart-data, wire the filters and the factor
// heat maps' clicks; poll the progress endpoint until the audit is final, then reload once.
(function () {
  drawCharts();
  wireFilters();
  const box = document.getElementById("progress");
  if (!box || box.dataset.final === "1") return;
  const stateEl = document.getElementById("state");
  function render(p) {
    p.stages.forEach(function (s) {
      const el = box.querySelector('[data-stage="' + s.key + '"]');
      if (!el) return;
      el.querySelector(".count").textContent = s.done + " / " + s.total;
      const bar = el.querySelector("progress");
      bar.max = s.total || 1; bar.value = s.done;
      el.querySelector(".detail").textContent = s.detail || "";
    });
    const disk = document.getElementById("disk-use");
    if (disk && p.disk_use_text) disk.textContent = p.disk_use_text;
    stateEl.textContent = p.state_label;
    stateEl.className = "state state-" + p.state;
    stateEl.dataset.state = p.state;
    const stalled = document.getElementById("stalled");
    if (stalled) {
      stalled.hidden = !p.stalled;
      document.getElementById("stalled-text").textContent = p.stalled_message || "";
    }
    if (p.error) {
      document.getElementById("error").hidden = false;
      document.getElementById("error-text").textContent = p.error;
    }
  }
  function poll() {
    fetch(box.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (p) {
        render(p);
        if (p.final) { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);

  function drawCharts() {
    const data = document.getElementById("chart-data");
    if (!data || !window.Plotly) return;
    const figures = JSON.parse(data.textContent);
    document.querySelectorAll("[data-figure]").forEach(function (div) {
      const fig = figures[div.dataset.figure];
      if (!fig) return;
      Plotly.newPlot(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
      if (div.dataset.pairsUrl) linkCells(div);
    });
  }

  // A click on a factor-effect cell opens the page of that cell's image pairs; customdata is
  // [group, factor, level, variant, ...] (webapp/audits/charts.py factor_heatmap).
  function linkCells(div) {
    div.classList.add("clickable");
    div.on("plotly_click", function (event) {
      const point = event.points && event.points[0];
      if (!point || !point.customdata) return;
      const query = "&group=" + encodeURIComponent(point.customdata[0]) +
        "&variant=" + encodeURIComponent(point.customdata[3]);
      window.location.href = div.dataset.pairsUrl + query;
    });
  }

  function wireFilters() {
    const form = document.getElementById("filters");
    if (!form) return;
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.submit(); });
    });
  }
})();
