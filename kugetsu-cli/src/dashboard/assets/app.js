// kugetsu dashboard: keeps the token, follows the event stream, swaps in the fresh state and
// sends the actions. Text from the server is set with textContent; only /fragment (rendered
// and escaped by kugetsu) is set as HTML. The token lives in this tab's session storage only
// (never a cookie: cookies are shared with every other port of this host), so a reload, which
// loads the page without it, finds it here.
"use strict";
(function () {
  var KEY = "kugetsu-token";
  var url = new URL(location.href);
  var fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  var token = sessionStorage.getItem(KEY) || "";
  var q = "?token=" + encodeURIComponent(token);
  var $ = function (id) { return document.getElementById(id); };

  function say(text, bad) {
    var el = $("said");
    el.textContent = text;
    el.className = bad ? "bad" : "";
  }

  var refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch("/fragment", { headers: { Authorization: "Bearer " + token }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { $("live").innerHTML = html; })
      .catch(function (e) { say("cannot refresh: " + e, true); })
      .finally(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.ok) { say(path.replace("/api/", "") + ": done"); }
        else { say((j && j.error) || ("HTTP " + r.status), true); }
        refresh();
        return r.ok;
      });
    }).catch(function (e) { say(String(e), true); });
  }

  var logStream = null;
  function openLog(name) {
    if (logStream) { logStream.close(); }
    $("logview").hidden = false;
    $("logname").textContent = name;
    var pre = $("logtext");
    pre.textContent = "";
    logStream = new EventSource("/api/logs/" + encodeURIComponent(name) + "/events" + q);
    logStream.addEventListener("line", function (ev) {
      pre.appendChild(document.createTextNode(ev.data + "\n"));
      pre.scrollTop = pre.scrollHeight;
    });
    $("logview").scrollIntoView();
  }

  function start() {
    if (!token) {
      $("conn").textContent = "no token";
      say("open the address `kugetsu dashboard` printed (it carries the token)", true);
      return;
    }
    var events = new EventSource("/api/events" + q);
    events.addEventListener("hello", function () { $("conn").textContent = "live"; $("conn").className = "badge live"; refresh(); });
    events.addEventListener("change", refresh);
    events.onerror = function () { $("conn").textContent = "reconnecting"; $("conn").className = "badge"; };

    document.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-action]");
      if (!b) { return; }
      var a = b.getAttribute("data-action");
      if (a === "stop") { b.disabled = true; post("/api/stop", { issue_ref: b.getAttribute("data-ref") }); }
      else if (a === "retry") { post("/api/queue/retry", { id: b.getAttribute("data-id") }); }
      else if (a === "clear") { post("/api/queue/clear", {}); }
      else if (a === "log") { openLog(b.getAttribute("data-log")); }
      else if (a === "pick") {
        var f = $("issue-form");
        f.elements.issue_ref.value = b.getAttribute("data-ref");
        f.elements.message.focus();
      }
    });
    $("logclose").addEventListener("click", function () {
      if (logStream) { logStream.close(); logStream = null; }
      $("logview").hidden = true;
    });
    $("delegate-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = ev.target;
      post("/api/delegate", { message: f.elements.message.value }).then(function (ok) { if (ok) { f.reset(); } });
    });
    $("issue-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = ev.target;
      var to = (ev.submitter && ev.submitter.getAttribute("data-to")) || "enqueue";
      post("/api/" + to, { issue_ref: f.elements.issue_ref.value, message: f.elements.message.value })
        .then(function (ok) { if (ok) { f.elements.message.value = ""; } });
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
