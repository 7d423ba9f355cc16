// Use over time, drawn with uPlot (static/vendor/): every element with data-chart and
// data-src gets the series from the API (the page's session cookie) and draws one chart
// per measure. data-chart says which: "workload" (per component: CPU, memory, GPU),
// "quota" (per cluster: used, borrowed, guaranteed, limit), "allocation" (a cluster's
// capacity, allocated, guaranteed). Empty series say so in words.
"use strict";
(() => {
  const COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];
  const ROLE = { used: "#2563eb", borrowed: "#d97706", guaranteed: "#059669", limit: "#dc2626",
                 capacity: "#6b7280", allocated: "#2563eb" };
  const DASH = { guaranteed: [6, 4], limit: [2, 3], capacity: [8, 4] };

  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
  const units = {
    cores: (v) => (v == null ? "-" : v >= 10000 ? compact.format(v) : `${+v.toFixed(v >= 10 ? 0 : 2)}`),
    bytes: (v) => {
      if (v == null) return "-";
      const steps = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < steps.length - 1) { v /= 1024; i++; }
      return `${+v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${steps[i]}`;
    },
    percent: (v) => (v == null ? "-" : `${Math.round(v)}%`),
    count: (v) => (v == null ? "-" : v >= 10000 ? compact.format(v) : `${+v.toFixed(1)}`),
  };
  const SUFFIX = { cores: " cores", bytes: "", percent: "", count: "" };
  // "1 core", "0.5 cores", "2 cores"
  const withUnit = (unit, v) => `${units[unit](v)}${unit === "cores" && v === 1 ? " core" : SUFFIX[unit]}`;

  // One chart: a title, a unit, x (Unix seconds) and series {label, values, color, dash}.
  function workloadCharts(data) {
    const comps = data.components.filter((c) => c.samples > 0);
    if (!comps.length) return { empty: "No samples yet: the cluster's agent sends them every few seconds while a component runs." };
    const measure = (title, key, unit) => ({
      title, unit,
      tables: comps.map((c) => [c.t, c[key]]),
      series: comps.map((c, i) => ({ label: c.name, color: COLORS[i % COLORS.length] })),
    });
    const charts = [measure("CPU (cores)", "cpu", "cores"), measure("Memory", "memory", "bytes")];
    const gpu = comps.some((c) => c.gpu_utilization.some((v) => v != null) || c.gpu_memory.some((v) => v != null));
    if (gpu) charts.push(measure("GPU utilisation", "gpu_utilization", "percent"), measure("GPU memory", "gpu_memory", "bytes"));
    return { charts, note: gpu ? "" : "No GPU measurements: no GPUs, or the cluster has no tool that reports them." };
  }

  function roles(t, values, names) {
    return {
      tables: names.filter((n) => values[n].some((v) => v != null)).map((n) => [t, values[n]]),
      series: names.filter((n) => values[n].some((v) => v != null))
        .map((n) => ({ label: n, color: ROLE[n], dash: DASH[n] })),
    };
  }

  const DIMS = [["gpu", "GPUs", "count"], ["cpu", "CPU (cores)", "cores"], ["memory", "Memory", "bytes"]];

  function quotaCharts(data) {
    const clusters = data.clusters.filter((c) => c.samples > 0);
    if (!clusters.length) return { empty: "No samples yet: quota use is recorded every minute while a cluster's agent reports." };
    const charts = [];
    for (const c of clusters) {
      for (const [key, title, unit] of DIMS) {
        charts.push({ title: `${c.cluster}: ${title}`, unit, ...roles(c.t, c[key], ["used", "borrowed", "guaranteed", "limit"]) });
      }
    }
    return { charts, note: "A missing limit line: unbounded (the project may borrow any idle capacity)." };
  }

  function allocationCharts(data) {
    if (!data.samples) return { empty: "No samples yet: allocation is recorded every minute while the cluster's agent reports." };
    return {
      charts: DIMS.map(([key, title, unit]) => ({ title, unit, ...roles(data.t, data[key], ["capacity", "allocated", "guaranteed"]) })),
    };
  }

  const BUILD = { workload: workloadCharts, quota: quotaCharts, allocation: allocationCharts };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function latest(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
  }

  function draw(box, chart) {
    const fig = el("figure", "chart");
    const fmt = units[chart.unit];
    const summary = chart.series.map((s, i) => `${s.label} ${withUnit(chart.unit, latest(chart.tables[i][1]))}`).join(", ");
    fig.setAttribute("role", "img");
    fig.setAttribute("aria-label", `${chart.title}, latest: ${summary}`);
    fig.append(el("figcaption", null, chart.title));
    const plot = el("div", "plot");
    fig.append(plot);
    box.append(fig);
    const data = uPlot.join(chart.tables);
    const width = Math.max(240, Math.floor(fig.clientWidth || 320));
    const opts = {
      width, height: 180,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      // Away from the cursor the legend shows the latest sample.
      hooks: {
        ready: [(u) => u.setLegend({ idx: u.data[0].length - 1 })],
        setCursor: [(u) => { if (u.cursor.idx == null) u.setLegend({ idx: u.data[0].length - 1 }); }],
      },
      axes: [
        { stroke: "#555", grid: { stroke: "#eee" }, space: 80 },  // times ("8:15pm") never run together
        { stroke: "#555", grid: { stroke: "#eee" }, size: 72, values: (u, ticks) => ticks.map(fmt) },
      ],
      series: [{}, ...chart.series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, dash: s.dash, spanGaps: false,
        value: (u, v) => (v == null ? "-" : withUnit(chart.unit, v)),
      }))],
    };
    if (chart.unit === "percent") opts.scales.y = { range: [0, 100] };
    else opts.scales.y = { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] };
    const u = new uPlot(opts, data, plot);
    const resize = new ResizeObserver(() => {
      const w = Math.max(240, Math.floor(fig.clientWidth));
      if (Math.abs(w - u.width) > 4) u.setSize({ width: w, height: 180 });
    });
    resize.observe(fig);
    return () => { resize.disconnect(); u.destroy(); };
  }

  // The range: the last N seconds up to now, or up to the end the page gives (a finished
  // workload's: until=... in data-src).
  const RANGES = [["1 hour", 3600], ["6 hours", 21600], ["24 hours", 86400], ["7 days", 604800]];
  const DEFAULT_RANGE = 21600;

  function rangePicker(box) {
    const label = el("label", "chart-range", "Show the last ");
    const select = el("select");
    for (const [text, seconds] of RANGES) {
      const option = el("option", null, text);
      option.value = String(seconds);
      option.selected = seconds === DEFAULT_RANGE;
      select.append(option);
    }
    select.addEventListener("change", () => load(box, Number(select.value)));
    label.append(select);
    box.before(label);
    return select;
  }

  function rangeUrl(src, seconds) {
    const url = new URL(src, location.origin);
    const until = url.searchParams.get("until");
    const end = until ? new Date(until) : new Date();
    url.searchParams.set("since", new Date(end.getTime() - seconds * 1000).toISOString());
    return url.pathname + url.search;
  }

  const drawn = new WeakMap();  // box -> what removes its charts

  async function load(box, seconds = DEFAULT_RANGE) {
    let data;
    try {
      const r = await fetch(rangeUrl(box.dataset.src, seconds),
                            { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
      if (!r.ok) throw new Error(`the server answered ${r.status}`);
      data = await r.json();
    } catch (err) {
      box.replaceChildren(el("p", "muted chart-status", `Could not load the samples: ${err.message}.`));
      return;
    }
    for (const remove of drawn.get(box) || []) remove();
    const built = BUILD[box.dataset.chart](data);
    const grid = el("div", "chart-grid");
    box.replaceChildren(grid);
    if (built.empty) {
      grid.replaceWith(el("p", "muted chart-empty", box.dataset.empty || built.empty));
      return;
    }
    drawn.set(box, built.charts.map((chart) => draw(grid, chart)));
    if (built.note) box.append(el("p", "hint", built.note));
  }

  function start() {
    if (typeof uPlot === "undefined") {
      for (const box of document.querySelectorAll("[data-chart]")) {
        const status = box.querySelector(".chart-status");
        if (status) status.textContent = "The charting library did not load.";
      }
      return;
    }
    for (const box of document.querySelectorAll("[data-chart][data-src]")) {
      const select = rangePicker(box);
      load(box);
      // A running workload's charts follow its new samples (data-refresh: seconds).
      const every = Number(box.dataset.refresh || 0);
      if (every > 0) {
        setInterval(() => { if (!document.hidden) load(box, Number(select.value)); }, every * 1000);
      }
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
