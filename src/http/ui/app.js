// The /ui dashboard: asks for a bearer token once, then polls GET /v1/dashboard every second
// and renders what it answers. Every piece of data enters the DOM as text (textContent or a
// text node), never as markup. The token lives in this tab's sessionStorage only.
"use strict";

const TOKEN_KEY = "arbiter.dashboard.token";
const POLL_MS = 1000;
const REQUEST_TIMEOUT_MS = 3000;
// A view older than this is marked stale even if no request has failed yet.
const STALE_AFTER_MS = 3500;

const state = {
  token: null,
  timer: null,
  lastOk: 0,
  lastError: "",
};

// Builds an element; strings among `children` become text nodes.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

function setConnection(kind, text) {
  const badge = byId("connection");
  badge.dataset.state = kind;
  badge.textContent = text;
  document.body.dataset.connection = kind;
  byId("dashboard").classList.toggle("stale", kind !== "live");
}

function when(rfc3339) {
  if (!rfc3339) return "—";
  return String(rfc3339).replace("T", " ").replace("Z", " UTC");
}

// The time of day only, for timeline steps (the full stamp is the element's title).
function clock(rfc3339) {
  if (!rfc3339) return "—";
  const time = String(rfc3339).split("T")[1] || String(rfc3339);
  return time.replace("Z", " UTC");
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

function nodeLabel(member) {
  return member ? `node ${member.node_id} · ${member.region}` : "—";
}

// ---- rendering ------------------------------------------------------------------------------

function renderHeader(d) {
  const status = d.status;
  const members = status.voters.concat(status.learners);
  const leader = members.find((m) => m.node_id === status.leader_id);
  const leaderText = byId("leader");
  if (status.leader_id === null || status.leader_id === undefined) {
    leaderText.textContent = "none known (election in progress?)";
  } else {
    leaderText.textContent = leader ? nodeLabel(leader) : `node ${status.leader_id}`;
  }
  leaderText.dataset.leaderId = status.leader_id ?? "";
  byId("term").textContent = String(status.term);
  byId("node").textContent = `${nodeLabel(status)} (${status.role.toLowerCase()})`;

  const note = byId("follower-note");
  if (d.isLeader) {
    note.hidden = true;
    note.replaceChildren();
  } else {
    note.hidden = false;
    const parts = [
      `This is ${nodeLabel(status)}, a ${status.role.toLowerCase()}: its view may trail the ` +
        "leader's by a moment, and probe verdicts are kept by the leader only. ",
    ];
    if (d.leaderHttpAddr) {
      const href = `${location.protocol}//${d.leaderHttpAddr}/ui`;
      parts.push(el("a", { href, text: "Open the leader's dashboard" }), ".");
    }
    note.replaceChildren(...parts);
  }
}

function renderMembers(d) {
  const status = d.status;
  const rows = [];
  const add = (member, voter) => {
    const isLeader = member.node_id === status.leader_id;
    const isSelf = member.node_id === status.node_id;
    const role = isLeader ? "leader" : voter ? "voter" : "learner";
    rows.push(
      el(
        "tr",
        { class: [isLeader ? "leader" : "", isSelf ? "self" : ""].join(" ").trim() },
        el("td", {}, `node ${member.node_id}`, isSelf ? el("span", { class: "tag", text: "this node" }) : null),
        el("td", { text: member.region }),
        el("td", {}, el("span", { class: `role role-${role}`, text: role })),
        el("td", { class: "addr", text: member.http_addr || "—" }),
        el("td", { class: "addr", text: member.grpc_addr || "—" }),
      ),
    );
  };
  status.voters.forEach((m) => add(m, true));
  status.learners.forEach((m) => add(m, false));
  byId("members").replaceChildren(...rows);

  const placement = byId("placement");
  if (status.preferred_leader_region) {
    const where =
      status.leader_in_preferred_region === true
        ? "the leader is there"
        : status.leader_in_preferred_region === false
          ? "the leader is elsewhere (it will be moved)"
          : "no leader known";
    placement.textContent =
      `Preferred leader region: ${status.preferred_leader_region}; ${where}. ` +
      `Planned leader moves: ${status.leader_moves}.`;
  } else {
    placement.textContent = "No preferred leader region: leadership stays where elections put it.";
  }
}

function renderRegions(d) {
  const verdicts = new Map();
  for (const v of d.verdicts || []) {
    if (!verdicts.has(v.region)) verdicts.set(v.region, []);
    verdicts.get(v.region).push(v);
  }
  const cards = d.regions.regions.map((r) => {
    const health = r.state || "UNKNOWN";
    const weight = r.trafficWeightPercentage;
    const bar = el("div", { class: "bar weight" }, el("div", { class: "fill" }));
    bar.firstChild.style.width = `${Math.max(0, Math.min(100, weight || 0))}%`;
    const verdictList = el("ul", { class: "verdicts" });
    if (d.verdicts === null || d.verdicts === undefined) {
      verdictList.append(el("li", { class: "muted", text: "verdicts: on the leader only" }));
    } else if (!verdicts.has(r.region)) {
      verdictList.append(el("li", { class: "muted", text: "no probe reports" }));
    } else {
      for (const v of verdicts.get(r.region)) {
        const detail = [];
        if (v.dependency) detail.push(`${v.dependency} (${v.serviceClass})`);
        if (v.failing.length) detail.push(`failing at ${v.failing.join(", ")}`);
        if (v.silent.length) detail.push(`silent: ${v.silent.join(", ")}`);
        verdictList.append(
          el(
            "li",
            {},
            el("span", { class: `verdict verdict-${v.verdict}`, text: v.verdict.replace("_", " ") }),
            detail.length ? ` ${detail.join("; ")}` : "",
          ),
        );
      }
    }
    const facts = el("dl", { class: "region-facts" });
    const fact = (name, value) => {
      if (value) facts.append(el("div", {}, el("dt", { text: name }), el("dd", { text: value })));
    };
    fact("Down since", r.downSince && when(r.downSince));
    fact("Healthy since", r.healthySince && when(r.healthySince));
    fact("Cooldown until", r.cooldownUntil && when(r.cooldownUntil));
    return el(
      "article",
      { class: `card health-${health.toLowerCase()}`, "data-region": r.region },
      el(
        "header",
        {},
        el("h3", { text: r.region, title: r.region }),
        el("span", { class: "health", text: health }),
      ),
      el(
        "div",
        { class: "weight-row" },
        el("span", { text: "Traffic" }),
        bar,
        el("span", { class: "num", text: weight === null ? "not set" : `${weight}%` }),
      ),
      facts,
      verdictList,
    );
  });
  byId("regions").replaceChildren(...cards);
}

function renderTimeline(d) {
  byId("events-count").textContent =
    d.eventsTotal === 0
      ? "No failover has happened."
      : `Newest ${d.events.length} of ${d.eventsTotal} failovers.`;
  const items = d.events.map((e) => {
    const steps = el("ol", { class: "steps" });
    for (const entry of e.timelineLogs) {
      steps.append(
        el(
          "li",
          {},
          el("time", { text: clock(entry.at), title: when(entry.at) }),
          el("span", { class: "step", text: entry.step }),
          el("span", { class: "detail", text: entry.detail }),
        ),
      );
    }
    const loss =
      `data-loss estimate: ${e.uncommittedDataLossEstimateWrites} writes, ` +
      `${e.uncommittedDataLossEstimateBytes} bytes`;
    return el(
      "li",
      { class: `event status-${e.eventStatus.toLowerCase()}`, "data-failover-id": e.failoverId },
      el(
        "header",
        {},
        el("span", { class: "status", text: e.eventStatus }),
        el("strong", { class: "route", text: `${e.failedRegion} → ${e.destinationRegion}` }),
        el("span", { class: "muted id", text: e.failoverId }),
      ),
      el(
        "p",
        { class: "meta" },
        `${e.failoverType.replace("_", " ").toLowerCase()} by `,
        el("span", { class: "who", text: e.initiatedBy }),
        `, started ${when(e.createdAt)}`,
        e.completedAt ? `, finished ${when(e.completedAt)}` : ", in progress",
      ),
      el("p", { class: "meta muted", text: loss }),
      steps,
    );
  });
  byId("timeline").replaceChildren(...items);
}

function renderLeases(d) {
  const rows = d.leases.map((l) =>
    el(
      "tr",
      {},
      el("td", { class: "name", text: l.resource, title: l.resource }),
      el("td", {}, el("span", { class: `lease lease-${l.state.toLowerCase()}`, text: l.state })),
      el("td", { class: "name", text: l.holder ?? "—", title: l.holder ?? "" }),
      el("td", { text: l.region ?? "—" }),
      el("td", { class: "num", text: l.token ?? "—" }),
      el("td", { class: "num", text: duration(l.ttlMs) }),
      el("td", { class: "num", text: d.isLeader ? duration(l.mayHoldForMs) : "leader only" }),
    ),
  );
  if (rows.length === 0) {
    rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted", text: "No live lease." })));
  }
  byId("leases").replaceChildren(...rows);
  byId("leases-count").textContent =
    d.leasesTotal > d.leases.length
      ? `Showing the first ${d.leases.length} of ${d.leasesTotal} live leases, by resource name.`
      : `${d.leasesTotal} live lease${d.leasesTotal === 1 ? "" : "s"}.`;
}

function renderLinks(d) {
  const rows = d.links.map((link) => {
    const target = link.rpoTargetMs;
    const lag = link.replicationLagMs;
    const ratio = target > 0 ? lag / target : lag > 0 ? 1 : 0;
    const level = link.rpoViolated ? "over" : ratio >= 0.8 ? "near" : "ok";
    const bar = el("div", { class: `bar lag lag-${level}` }, el("div", { class: "fill" }));
    bar.firstChild.style.width = `${Math.min(100, ratio * 100)}%`;
    return el(
      "div",
      { class: `link lag-${level}` },
      el("span", { class: "route", text: `${link.sourceRegion} → ${link.targetRegion}` }),
      el("span", { class: "mode", text: link.replicationMode }),
      bar,
      el("span", { class: "num", text: `${duration(lag)} / ${target === 0 ? "0 (sync)" : duration(target)}` }),
      el("span", {
        class: "muted",
        text: `${link.isLinkActive ? "active" : "inactive"}, heartbeat ${when(link.lastHeartbeatAt)}`,
      }),
    );
  });
  if (rows.length === 0) rows.push(el("p", { class: "muted", text: "No replication link declared." }));
  byId("links").replaceChildren(...rows);
}

function render(d) {
  renderHeader(d);
  renderMembers(d);
  renderRegions(d);
  renderTimeline(d);
  renderLeases(d);
  renderLinks(d);
}

// ---- polling --------------------------------------------------------------------------------

function showLogin(message) {
  byId("login").hidden = false;
  byId("dashboard").hidden = true;
  byId("sign-out").hidden = true;
  const error = byId("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  byId("token").focus();
}

function showDashboard() {
  byId("login").hidden = true;
  byId("dashboard").hidden = false;
  byId("sign-out").hidden = false;
}

function stopPolling() {
  if (state.timer !== null) clearTimeout(state.timer);
  state.timer = null;
}

async function poll() {
  state.timer = null;
  const token = state.token;
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch("/v1/dashboard", {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
      credentials: "omit",
      signal: abort.signal,
    });
    if (token !== state.token) return; // signed out meanwhile
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      stopPolling();
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      setConnection("unauthorized", response.status === 401 ? "unauthorized" : "forbidden");
      showLogin(`The node refused the token (${response.status}): ${body.error || "no reason given"}`);
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    render(data);
    state.lastOk = Date.now();
    state.lastError = "";
    showDashboard();
    setConnection("live", "live");
  } catch (error) {
    if (token !== state.token) return;
    state.lastError = error.name === "AbortError" ? "no answer" : error.message;
    setConnection("disconnected", `disconnected: ${state.lastError}`);
  } finally {
    clearTimeout(timeout);
    if (token === state.token && state.token !== null && state.timer === null) {
      state.timer = setTimeout(poll, POLL_MS);
    }
    updateAge();
  }
}

// The "Updated" field, and the stale mark for a view that stopped refreshing.
function updateAge() {
  if (!state.lastOk) return;
  const age = Date.now() - state.lastOk;
  byId("updated").textContent =
    `${new Date(state.lastOk).toLocaleTimeString()} (${age < 1500 ? "just now" : `${Math.round(age / 1000)} s ago`})`;
  const badge = byId("connection");
  if (age > STALE_AFTER_MS && badge.dataset.state === "live") setConnection("stale", "stale");
}

function start(token) {
  stopPolling();
  state.token = token;
  setConnection("connecting", "connecting…");
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byId("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    start(token);
  });
  byId("sign-out").addEventListener("click", () => {
    stopPolling();
    state.token = null;
    state.lastOk = 0;
    sessionStorage.removeItem(TOKEN_KEY);
    setConnection("idle", "not connected");
    showLogin("");
  });
  setInterval(updateAge, 1000);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) start(saved);
  else showLogin("");
});
