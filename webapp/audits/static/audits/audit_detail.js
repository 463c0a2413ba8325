// Audit page: poll the progress endpoint until the audit is final, then reload once to show results.
(function () {
  const chartData = document.getElementById("chart-data");
  if (chartData && window.Plotly) {
    const fig = JSON.parse(chartData.textContent);
    Plotly.newPlot("chart", fig.data, fig.layout, {responsive: true, displaylogo: false});
  }
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
    stateEl.textContent = p.state_label;
    stateEl.className = "state state-" + p.state;
    stateEl.dataset.state = p.state;
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
})();
