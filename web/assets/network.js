// The network page: charts of the monitor's samples (uPlot, compiled into dagctl) and the alert list, polled
// every 2 s. window.dagctlCharts[metric] is the uPlot instance of each chart (the browser test reads it).
(function () {
  const box = document.getElementById("charts");
  if (!box || typeof uPlot === "undefined") return;
  const nodes = [...document.querySelectorAll("#node-list tr[data-node]")].map((r) => r.dataset.node);
  const windowSeconds = Number(box.dataset.window || 900);
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  const charts = {};
  window.dagctlCharts = charts;
  // metric -> time (s) -> node -> value
  const data = {};
  let since = new Date(Date.now() - windowSeconds * 1000).toISOString();

  for (const plot of box.querySelectorAll(".plot")) {
    const metric = plot.dataset.metric;
    data[metric] = new Map();
    charts[metric] = new uPlot(
      {
        width: Math.max(320, plot.clientWidth || 560),
        height: 180,
        scales: { x: { time: true } },
        axes: [{}, { size: 80 }],
        series: [{}, ...nodes.map((n, i) => ({ label: n, stroke: palette[i % palette.length], width: 1.5, spanGaps: true }))],
      },
      [[], ...nodes.map(() => [])],
      plot,
    );
  }

  function redraw(metric) {
    const byTime = data[metric];
    const times = [...byTime.keys()].sort((a, b) => a - b);
    const cut = Date.now() / 1000 - windowSeconds;
    const kept = times.filter((t) => t >= cut);
    const columns = [kept, ...nodes.map((n) => kept.map((t) => (byTime.get(t)[n] ?? null)))];
    charts[metric].setData(columns);
  }

  function showLatest(latest) {
    for (const [node, values] of Object.entries(latest)) {
      const row = document.querySelector(`#node-list tr[data-node="${CSS.escape(node)}"]`);
      if (!row) continue;
      for (const [metric, value] of Object.entries(values)) {
        const cell = row.querySelector(`.v-${metric}`);
        if (!cell) continue;
        cell.textContent = metric === "up" ? (value === 1 ? "yes" : "DOWN") : String(Math.round(value * 10) / 10);
      }
    }
  }

  async function poll() {
    try {
      const res = await fetch(`${box.dataset.seriesApi}?from=${encodeURIComponent(since)}&limit=100000`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (res.ok) {
        const body = await res.json();
        const latest = {};
        const touched = new Set();
        for (const s of body.samples) {
          if (!(s.metric in data)) {
            (latest[s.node] ||= {})[s.metric] = s.value;
            continue;
          }
          const t = Date.parse(s.at) / 1000;
          const row = data[s.metric].get(t) || {};
          row[s.node] = s.value;
          data[s.metric].set(t, row);
          (latest[s.node] ||= {})[s.metric] = s.value;
          touched.add(s.metric);
          if (s.at > since) since = s.at;
        }
        for (const metric of touched) redraw(metric);
        showLatest(latest);
      }
      const alerts = await fetch(box.dataset.alertsApi, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (alerts.ok) {
        const list = (await alerts.json()).alerts;
        const body = document.querySelector("#alert-list tbody");
        if (list.length) {
          body.replaceChildren(
            ...list.map((a) => {
              const tr = document.createElement("tr");
              for (const text of [a.last_at, a.node, a.level, String(a.count), a.pattern]) {
                const td = document.createElement("td");
                td.textContent = text;
                tr.appendChild(td);
              }
              tr.className = `alert-${a.level}`;
              return tr;
            }),
          );
        }
      }
    } catch (_) {
      // The next poll tries again.
    }
    setTimeout(poll, 2000);
  }
  poll();
})();
