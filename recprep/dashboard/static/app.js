// The recprep dashboard: reads /api/jobs and /api/jobs/<namespace>/<name> (nothing else) every
// REFRESH ms and redraws in place (Plotly.react), without reloading the page.
"use strict";

const REFRESH = 2000;
let selected = null; // [namespace, name]

function fmt(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
function rate(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 1e6) return fmt(value / 1e6, 2) + "M rows/s";
  if (value >= 1e3) return fmt(value / 1e3, 1) + "k rows/s";
  return fmt(value) + " rows/s";
}
function seconds(value) {
  if (value === null || value === undefined) return "–";
  const s = Math.round(value);
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}
function dollars(value) { return value === null || value === undefined ? "–" : "$" + fmt(value, 4); }
function percent(value) { return value === null || value === undefined ? "–" : fmt(100 * value, 1) + "%"; }
function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (value >= 1000 && i < units.length - 1) { value /= 1000; i++; }
  return fmt(value, 1) + " " + units[i];
}
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function drawJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = document.createElement("tr");
    row.dataset.job = `${job.namespace}/${job.name}`;
    if (selected && selected[0] === job.namespace && selected[1] === job.name) row.className = "selected";
    cell(row, `${job.namespace}/${job.name}`);
    cell(row, job.phase);
    cell(row, percent(job.progress));
    cell(row, fmt(job.rows));
    cell(row, `${job.workers.cpu} / ${job.workers.isp}`);
    cell(row, dollars(job.costSoFar));
    cell(row, seconds(job.etaSeconds));
    row.addEventListener("click", () => { selected = [job.namespace, job.name]; refresh(); });
    body.appendChild(row);
  }
  if (!selected && jobs.length) selected = [jobs[0].namespace, jobs[0].name];
}

function card(container, label, value) {
  const div = document.createElement("div");
  div.className = "card";
  const l = document.createElement("div");
  l.className = "label";
  l.textContent = label;
  const v = document.createElement("div");
  v.className = "value";
  if (value instanceof Node) v.appendChild(value); else v.textContent = value;
  div.append(l, v);
  container.appendChild(div);
}

function drawFigures(doc) {
  const f = doc.figures;
  const box = document.getElementById("figures");
  box.replaceChildren();
  card(box, "phase", `${f.phase}${f.stage ? " (" + f.stage + ")" : ""}`);
  card(box, "progress", `${percent(f.progress)} · ${fmt(f.shardsDone)} / ${fmt(f.shardsTotal)} shards`);
  card(box, "ETA", seconds(f.etaSeconds));
  card(box, "deadline", f.deadlineSeconds === null ? "none" : `${seconds(f.deadlineSeconds)} (margin ${seconds(f.deadlineMarginSeconds)})`);
  card(box, "cost so far / projected", `${dollars(f.costSoFar)} / ${dollars(f.costProjected)}`);
  card(box, "energy so far / projected", `${fmt(f.energySoFarWh, 2)} / ${fmt(f.energyProjectedWh, 2)} Wh`);
  card(box, "demand / production", `${rate(f.demand)} / ${rate(f.production)}`);
  card(box, `forecast${f.quantile ? " p" + Math.round(100 * f.quantile) : ""}`, rate(f.forecast));
  card(box, "backlog", seconds(f.backlogSeconds));
  card(box, "trainers starved", percent(f.starvedShare));
  card(box, "ISP offload share", percent(f.offloadShare));
  card(box, "network bytes saved", bytes(f.networkBytesSaved));
  card(box, "policy", f.policy || "none");
  if (doc.links && doc.links.dask) {
    const a = document.createElement("a");
    a.href = doc.links.dask;
    a.textContent = "Dask dashboard";
    a.rel = "noopener";
    card(box, "tasks", a);
  }
  document.getElementById("message").textContent = f.message || "";
}

function times(doc) { return doc.series.t.map((t) => new Date((doc.start + t) * 1000)); }

const LAYOUT = { margin: { l: 55, r: 55, t: 30, b: 35 }, legend: { orientation: "h", y: -0.2 }, hovermode: "x unified" };
const CONFIG = { displaylogo: false, responsive: true };

function plot(id, traces, extra) {
  const el = document.getElementById(id);
  const layout = Object.assign({ title: { text: el.dataset.title, font: { size: 13 } } }, LAYOUT, extra || {});
  window.Plotly.react(el, traces, layout, CONFIG);
}

function markers(doc) {
  // each preemption notice as a vertical line on the time axis
  return (doc.preemptions || []).filter((p) => p.noticeTime).map((p) => ({
    type: "line", xref: "x", yref: "paper", x0: p.noticeTime, x1: p.noticeTime, y0: 0, y1: 1,
    line: { color: "#d62728", dash: "dot", width: 1 },
  }));
}

function drawCharts(doc) {
  const x = times(doc);
  const s = doc.series;
  plot("chart-demand", [
    { x, y: s.demand, name: "demand", mode: "lines", line: { color: "#1f77b4" } },
    // the band: from the measured demand up to the forecast at its quantile, where both exist
    { x, y: s.forecast.map((v, i) => (s.demand[i] === null ? null : v)), name: `forecast${doc.figures.quantile ? " p" + Math.round(100 * doc.figures.quantile) : ""}`, mode: "lines", fill: "tonexty", line: { color: "#9ecae1", dash: "dash" } },
    { x, y: s.production, name: "production", mode: "lines", line: { color: "#2ca02c" } },
  ], { yaxis: { title: { text: "rows/s" }, rangemode: "tozero" } });
  plot("chart-backlog", [
    { x, y: s.backlog, name: "backlog (s of training)", mode: "lines", line: { color: "#9467bd" } },
    { x, y: s.starved, name: "starved (0/1)", mode: "lines", yaxis: "y2", line: { color: "#d62728", shape: "hv" } },
  ], { yaxis: { title: { text: "seconds" }, rangemode: "tozero" }, yaxis2: { overlaying: "y", side: "right", range: [0, 1.05] } });
  plot("chart-workers", [
    { x, y: s.workers.cpu, name: "cpu", mode: "lines", stackgroup: "w", line: { shape: "hv", color: "#ff7f0e" } },
    { x, y: s.workers.isp, name: "isp", mode: "lines", stackgroup: "w", line: { shape: "hv", color: "#17becf" } },
    { x, y: s.pending.cpu.map((v, i) => v + s.pending.isp[i]), name: "pending", mode: "lines", line: { shape: "hv", color: "#7f7f7f", dash: "dot" } },
  ], { yaxis: { title: { text: "workers" }, rangemode: "tozero", dtick: 1 }, shapes: markers(doc) });
  plot("chart-desired", [
    { x, y: s.desired.cpu, name: "cpu desired", mode: "lines", line: { shape: "hv", color: "#ff7f0e", dash: "dash" } },
    { x, y: s.workers.cpu, name: "cpu actual", mode: "lines", line: { shape: "hv", color: "#ff7f0e" } },
    { x, y: s.desired.isp, name: "isp desired", mode: "lines", line: { shape: "hv", color: "#17becf", dash: "dash" } },
    { x, y: s.workers.isp, name: "isp actual", mode: "lines", line: { shape: "hv", color: "#17becf" } },
  ], { yaxis: { title: { text: "workers" }, rangemode: "tozero", dtick: 1 }, shapes: markers(doc) });
  plot("chart-cost", [
    { x, y: s.cost, name: "cost (USD)", mode: "lines", line: { color: "#8c564b" } },
    { x, y: s.energy, name: "energy (Wh)", mode: "lines", yaxis: "y2", line: { color: "#bcbd22" } },
  ], { yaxis: { title: { text: "USD" }, rangemode: "tozero" }, yaxis2: { title: { text: "Wh" }, overlaying: "y", side: "right", rangemode: "tozero" } });
}

function drawDecisions(doc) {
  const body = document.querySelector("#decisions tbody");
  body.replaceChildren();
  for (const d of doc.decisions) {
    const row = document.createElement("tr");
    cell(row, d.time || "");
    cell(row, d.pool || "");
    cell(row, `${d.from} → ${d.to}`);
    cell(row, d.reason || "", "reason");
    body.appendChild(row);
  }
  const pre = document.querySelector("#preemptions tbody");
  pre.replaceChildren();
  for (const p of doc.preemptions) {
    const row = document.createElement("tr");
    cell(row, p.noticeTime || "");
    cell(row, p.node || "");
    cell(row, p.reason || "");
    cell(row, (p.pods || []).length);
    cell(row, seconds(p.drainedSeconds));
    cell(row, seconds(p.replacedSeconds));
    pre.appendChild(row);
  }
}

async function refresh() {
  try {
    const { jobs } = await getJSON("/api/jobs");
    drawJobs(jobs);
    if (selected) {
      const doc = await getJSON(`/api/jobs/${encodeURIComponent(selected[0])}/${encodeURIComponent(selected[1])}`);
      document.getElementById("job").hidden = false;
      document.getElementById("job-title").textContent = `${doc.namespace}/${doc.name}`;
      drawFigures(doc);
      drawCharts(doc);
      drawDecisions(doc);
    }
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    document.getElementById("updated").textContent = "cannot read the API: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  setInterval(refresh, REFRESH);
});
