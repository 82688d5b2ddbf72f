// piigate console: the security team's live feed. Events arrive over Server-Sent Events from
// /security/feed already described in words; each becomes a line at the top of the list, built
// with textContent only (never markup from the event).
import {say} from "/static/console.js";

const MAX_LINES = 200;
const BADGES = new Set(["allow", "step_up", "deny", "ok", "warn", "bad", "pending", "high"]);

const feed = document.getElementById("feed");
const empty = document.getElementById("feed-empty");

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// One event line, the same structure as the page's own (templates/_events.html).
function line(event) {
  const item = element("li", "event arrived");
  item.dataset.seq = String(event.seq);
  const head = element("div", "event-head");
  const time = element("time", "", String(event.when || ""));
  time.dateTime = String(event.at || "");
  head.append(time);
  if (BADGES.has(event.badge)) {
    head.append(element("span", "badge " + event.badge, String(event.badge_text || "")));
  }
  if (typeof event.subject === "string" && event.subject) {
    const link = element("a", "subject", event.subject);
    link.href = "/security/subjects/" + encodeURIComponent(event.subject);
    head.append(link);
  }
  item.append(head, element("p", "headline", String(event.headline || "")));
  const details = Array.isArray(event.details) ? event.details : [];
  if (details.length) {
    const list = element("ul", "details");
    for (const detail of details) list.append(element("li", "", String(detail)));
    item.append(list);
  }
  return item;
}

function connect() {
  const shown = new Set(Array.from(feed.children, (item) => item.dataset.seq));
  const source = new EventSource(feed.dataset.stream);
  source.addEventListener("open", () => say("feed-status", "Live: new events appear at the top."));
  source.addEventListener("message", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    const seq = String(event.seq);
    if (shown.has(seq)) return;
    shown.add(seq);
    feed.prepend(line(event));
    while (feed.children.length > MAX_LINES) {
      shown.delete(feed.lastElementChild.dataset.seq);
      feed.lastElementChild.remove();
    }
    empty.classList.add("hidden");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      say("feed-status", "The live feed stopped. Reload the page (you may need to sign in again).");
    } else {
      say("feed-status", "Connection lost: reconnecting…");
    }
  });
}

if (feed && feed.dataset.stream) connect();
