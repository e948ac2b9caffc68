// The live view. Every text from the server is set with textContent (never innerHTML), so an
// event title holding markup is shown as text. The token lives in this page's memory only:
// no cookie, no storage, sent as an Authorization header that another site cannot set.
"use strict";

let token = "";
let reconnectDelay = 500;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
}

function setStatus(text, className) {
  const status = document.getElementById("ack-status");
  status.textContent = text;
  status.className = className || "dim";
}

function renderEscalations(view) {
  const body = document.getElementById("escalations");
  const rows = [];
  for (const e of view.escalations) {
    const tr = el("tr");
    tr.dataset.incident = String(e.incident_id);
    if (e.acknowledged_by !== null) tr.className = "done";
    tr.append(
      el("td", "#" + e.incident_id),
      el("td", e.priority, e.priority),
      el("td", "L" + e.level + " " + e.level_name),
      el("td", e.age),
      el("td", e.next, e.next === "due" || e.next === "exhausted" ? "due" : ""),
    );
    if (e.acknowledged_by !== null) {
      tr.append(el("td", "\u2713 " + e.acknowledged_by + " " + clock(e.acknowledged_at), "acked"));
    } else {
      tr.append(el("td", "unacknowledged", "unacked"));
    }
    tr.append(el("td", e.title, "title"));
    const action = el("td");
    if (view.ack && e.acknowledged_by === null) {
      const button = el("button", "ack", "ack");
      button.type = "button";
      button.dataset.incident = String(e.incident_id);
      button.addEventListener("click", () => acknowledge(e.incident_id));
      action.append(button);
    }
    tr.append(action);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const open = view.escalations.filter((e) => e.acknowledged_by === null).length;
  document.getElementById("escalation-counts").textContent =
    open + " open \u00b7 " + (view.escalations.length - open) + " acknowledged" +
    (view.escalations_total > view.escalations.length ? " (" + view.escalations_total + " in all)" : "");
  document.getElementById("no-escalations").hidden = view.escalations.length > 0;
}

function renderFeed(view) {
  const rows = view.feed.map((f) => {
    const tr = el("tr", undefined, f.event_type === "undecodable" ? "undecodable" : "");
    tr.dataset.seq = String(f.seq);
    tr.append(
      el("td", clock(f.at)),
      el("td", f.event_type),
      el("td", f.incident_id === null ? "" : "#" + f.incident_id),
      el("td", f.priority || "", f.priority || ""),
      el("td", f.title, "title"),
      el("td", f.error || f.summary, "summary"),
      el("td", f.place || "", "dim"),
    );
    return tr;
  });
  document.getElementById("feed").replaceChildren(...rows);
  document.getElementById("feed-total").textContent = view.feed_total + " events";
}

function renderMetrics(view) {
  const m = view.metrics;
  const rows = m.per_type.map((t) => {
    const tr = el("tr");
    tr.dataset.type = t.event_type;
    tr.append(el("td", t.event_type), el("td", t.count, "num"), el("td", t.rate_per_sec.toFixed(1), "num"));
    return tr;
  });
  document.getElementById("per-type").replaceChildren(...rows);
  const totals = [
    ["events", "events", m.total_events],
    ["rate", "events/s", m.events_per_sec.toFixed(1)],
    ["dead-lettered", "dead-lettered", m.dead_lettered],
    ["opened", "escalations opened", m.escalations_opened],
    ["raised", "raised", m.escalations_raised],
    ["acknowledged", "acknowledged", m.acknowledged],
    ["resolved", "resolved", m.resolved],
    ["ack-p50", "ack p50", m.time_to_acknowledge_p50 || "\u2014"],
    ["resolve-p50", "resolve p50", m.time_to_resolve_p50 || "\u2014"],
  ];
  const items = [];
  for (const [key, name, value] of totals) {
    const dd = el("dd", value);
    dd.id = "metric-" + key;
    items.push(el("dt", name), dd);
  }
  document.getElementById("totals").replaceChildren(...items);
}

function render(view) {
  const connection = document.getElementById("connection");
  connection.textContent = view.paused ? "paused" : view.connection;
  connection.className = "badge " + view.connection;
  document.getElementById("source").textContent =
    (view.demo ? "demo \u00b7 " : "") + view.topic + (view.lag === null ? "" : " \u00b7 lag " + view.lag);
  document.getElementById("team").textContent = view.team || "";
  document.getElementById("ack-controls").hidden = !view.ack;
  renderEscalations(view);
  renderMetrics(view);
  renderFeed(view);
}

async function acknowledge(incident) {
  if (!token) {
    setStatus("enter an operator token to acknowledge", "unacked");
    return;
  }
  setStatus("acknowledging #" + incident + " \u2026");
  try {
    const response = await fetch("/api/ack", {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify({ incident_id: incident }),
    });
    const text = (await response.text()).trim();
    if (response.status === 202) {
      setStatus("acknowledgement of #" + incident + " sent", "acked");
    } else {
      setStatus("refused (" + response.status + "): " + text, "unacked");
    }
  } catch (error) {
    setStatus("acknowledgement failed: " + error, "unacked");
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/ws");
  socket.addEventListener("open", () => { reconnectDelay = 500; });
  socket.addEventListener("message", (message) => {
    try {
      render(JSON.parse(message.data));
    } catch (error) {
      setStatus("bad update: " + error, "unacked");
    }
  });
  socket.addEventListener("close", () => {
    const connection = document.getElementById("connection");
    connection.textContent = "offline (reconnecting)";
    connection.className = "badge offline";
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token").addEventListener("input", (event) => {
    token = event.target.value.trim();
  });
  connect();
});
