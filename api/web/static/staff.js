/* Staff board: live updates without reloads, and small conveniences.
   Every page works without this file (reload for news).
   - The board listens to its server-sent events (data-events): event "shed" carries a
     shed's fragment (<section id="shed-...">), "alarms" the open-alarm list; each
     replaces the element with the same id. EventSource reconnects by itself.
   - <select data-autosubmit> submits its form on change (the filters).
   - forms with data-confirm ask first (remote stop). */
(function () {
  "use strict";

  function swap(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var fresh = tpl.content.firstElementChild;
    if (!fresh || !fresh.id) { return; }
    var old = document.getElementById(fresh.id);
    if (!old) { return; }
    // keep a note being typed into an alarm's form
    var typing = document.activeElement;
    if (typing && old.contains(typing) && typing.tagName === "INPUT") { return; }
    old.replaceWith(fresh);
  }

  function note(ok) {
    var el = document.getElementById("live-note");
    if (!el) { return; }
    el.textContent = el.getAttribute(ok ? "data-live-ok" : "data-live-lost");
    el.classList.toggle("lost", !ok);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var board = document.querySelector("[data-events]");
    if (board && window.EventSource) {
      var source = new EventSource(board.getAttribute("data-events"));
      source.addEventListener("open", function () { note(true); });
      source.addEventListener("error", function () { note(false); });
      source.addEventListener("shed", function (e) { swap(e.data); note(true); });
      source.addEventListener("alarms", function (e) { swap(e.data); });
      source.addEventListener("denied", function () { source.close(); note(false); });
      window.addEventListener("pagehide", function () { source.close(); });
      window.__boardEvents = source;
    }
    var selects = document.querySelectorAll("select[data-autosubmit]");
    for (var i = 0; i < selects.length; i++) {
      selects[i].addEventListener("change", function (e) { e.target.form.submit(); });
    }
  });

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
