// piigate console, audit page: follows a running chain verification, then shows its result.
import {api} from "/static/console.js";

const box = document.getElementById("progress");

async function follow() {
  const answer = await api("GET", "/security/audit/progress").catch(() => null);
  if (!answer || !answer.ok || !answer.body) return; // the Refresh link still works
  const {running, checked, total} = answer.body;
  if (!running) { window.location.reload(); return; }
  const bar = document.getElementById("progress-bar");
  bar.max = Math.max(total, 1);
  bar.value = checked;
  document.getElementById("progress-text").textContent = `${checked} of ${total} events checked`;
  setTimeout(follow, 1000);
}

if (box && box.dataset.running) setTimeout(follow, 1000);
