// The fleet page: polls the Leader's JSON API and redraws the tables. No framework, no build
// step; every value from an agent is set as text, never as markup.
"use strict";

const POLL_MS = 2000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "style-width") node.style.width = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function badge(word) {
  return el("span", { class: "badge " + word }, word);
}

function gib(bytes) {
  return (bytes / 2 ** 30).toFixed(1) + " GiB";
}

function memoryBar(availability) {
  if (!availability || availability.memory_total == null) return "–";
  const total = availability.memory_total;
  const free = availability.memory_free == null ? null : availability.memory_free;
  if (free == null) return el("span", { class: "bar-label" }, gib(total));
  const used = Math.max(0, Math.min(total, total - free));
  const percent = total > 0 ? Math.round((100 * used) / total) : 0;
  return el(
    "div",
    {},
    el("div", { class: "bar", title: percent + "% used" }, el("span", { "style-width": percent + "%" })),
    el("span", { class: "bar-label" }, gib(used) + " / " + gib(total) + " used"),
  );
}

function models(availability) {
  if (!availability) return "–";
  const loaded = new Set(availability.models_loaded || []);
  const names = availability.models_installed || [];
  if (!names.length) return "none";
  return names.map((name) => (loaded.has(name) ? name + " (loaded)" : name)).join(", ");
}

function hostRows(host) {
  const slots = host.slots.length ? host.slots : [null];
  const rows = [];
  slots.forEach((slot, index) => {
    const first = index === 0;
    const row = el("tr", {
      class: (first ? "host " : "slot ") + host.state,
      "data-hostname": host.hostname,
      "data-host-id": host.host_id == null ? "" : String(host.host_id),
    });
    if (first) {
      const span = String(slots.length);
      row.append(
        el("td", { class: "host-cell", rowspan: span },
          el("strong", {}, host.hostname),
          el("div", { class: "muted mono" }, (host.host_id == null ? "no host_id" : "host_id " + host.host_id) + " · " + host.mac)),
        el("td", { class: "state", rowspan: span }, badge(host.state), host.agent_state && host.state === "online" ? " " : null,
          host.agent_state && host.state === "online" ? badge(host.agent_state) : null),
        el("td", { rowspan: span }, badge(host.key_change_pending ? "pending" : host.status)),
        el("td", { class: "mono", rowspan: span }, host.last_seen || "never"),
        el("td", { rowspan: span }, host.heartbeats_heard + " heard" + (host.heartbeats_missed ? ", " + host.heartbeats_missed + " missed" : "")),
      );
    }
    if (slot === null) {
      row.append(el("td", { colspan: "6", class: "muted" }, "no GPU slot"));
    } else {
      const a = slot.availability;
      row.append(
        el("td", {}, String(slot.slot)),
        el("td", { class: "token" }, slot.token),
        el("td", {}, slot.name, el("div", { class: "muted mono" }, slot.gpu_id)),
        el("td", {}, memoryBar(a)),
        el("td", {}, a && a.utilisation != null ? a.utilisation + "%" : "–"),
        el("td", {}, models(a)),
      );
    }
    rows.push(row);
  });
  return rows;
}

function callRow(call) {
  const host = call.host_id == null ? call.hostname : call.hostname + " (host_id " + call.host_id + ")";
  return el("tr", { "data-call-id": String(call.id) },
    el("td", {}, String(call.id)), el("td", {}, badge(call.severity)), el("td", {}, host),
    el("td", {}, call.reason), el("td", {}, call.detail), el("td", {}, String(call.count)),
    el("td", { class: "mono" }, call.opened_at));
}

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function draw(hosts, calls) {
  const hostBody = document.querySelector("#hosts tbody");
  hostBody.replaceChildren(...hosts.flatMap(hostRows));
  document.getElementById("no-hosts").hidden = hosts.length > 0;
  const callBody = document.querySelector("#calls tbody");
  callBody.replaceChildren(...calls.map(callRow));
  document.getElementById("no-calls").hidden = calls.length > 0;
  const online = hosts.filter((h) => h.state === "online").length;
  const slots = hosts.reduce((n, h) => n + h.slots.length, 0);
  document.getElementById("summary").textContent =
    hosts.length + " host(s), " + online + " online, " + slots + " GPU slot(s), " + calls.length + " open call(s)";
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const [hosts, calls] = await Promise.all([getJson("/v1/hosts"), getJson("/v1/calls")]);
    draw(hosts, calls);
    updated.textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (error) {
    updated.textContent = "cannot reach the Leader: " + error.message;
  }
}

refresh();
setInterval(refresh, POLL_MS);
