/* Resident pages: live refresh and a confirmation before stopping.
   Every page works without this file; it only saves the resident a reload.
   - [data-live] boxes fetch their ?part=live fragment every data-every ms and swap it in,
     until the fragment says data-final="1"; paused while the page is hidden.
   - forms with data-confirm ask first; forms with data-live-submit post in the
     background and swap in the answer; the pay form disables its button once sent. */
(function () {
  "use strict";

  function trouble(on) {
    var note = document.getElementById("trouble");
    if (note) { note.hidden = !on; }
  }

  function isFinal(box) {
    var root = box.querySelector("[data-final]");
    return !!root && root.getAttribute("data-final") === "1";
  }

  function afterSwap(box) {
    var root = box.querySelector("[data-payable]");
    if (!root) { return; }
    var payable = root.getAttribute("data-payable") === "1";
    var form = document.getElementById("pay");
    if (form) {
      form.hidden = !payable;
    } else if (payable) {
      window.location.reload();  // the socket came free: show the choices
    }
  }

  function Live(box) {
    this.box = box;
    this.url = box.getAttribute("data-live");
    this.every = parseInt(box.getAttribute("data-every"), 10) || 2000;
    this.timer = null;
    this.busy = false;
  }
  Live.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    if (!isFinal(this.box)) {
      this.timer = setTimeout(function () { self.tick(); }, this.every);
    }
  };
  Live.prototype.swap = function (html) {
    this.box.innerHTML = html;
    afterSwap(this.box);
  };
  Live.prototype.tick = function () {
    var self = this;
    if (document.hidden || this.busy) { return; }
    this.busy = true;
    fetch(this.url, { cache: "no-store", credentials: "same-origin" })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.text();
      })
      .then(function (html) { self.swap(html); trouble(false); })
      .catch(function () { trouble(true); })
      .then(function () { self.busy = false; self.schedule(); });
  };
  Live.prototype.submit = function (form) {
    var self = this;
    var url = new URL(form.getAttribute("action"), window.location.href);
    url.searchParams.set("part", "live");
    var button = form.querySelector("button");
    if (button) { button.disabled = true; }
    clearTimeout(this.timer);
    this.busy = true;
    fetch(url.toString(), {
      method: "POST",
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(form))
    })
      .then(function (resp) { return resp.text(); })
      .then(function (html) { self.swap(html); trouble(false); })
      .catch(function () { trouble(true); if (button) { button.disabled = false; } })
      .then(function () { self.busy = false; self.schedule(); });
  };

  var lives = [];

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-live]");
    for (var i = 0; i < boxes.length; i++) {
      var live = new Live(boxes[i]);
      boxes[i].ebsLive = live;
      lives.push(live);
      live.schedule();
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { return; }
    for (var i = 0; i < lives.length; i++) {
      if (!isFinal(lives[i].box)) { lives[i].tick(); }
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var box = form.closest("[data-live]");
    if (form.hasAttribute("data-live-submit") && box && box.ebsLive) {
      event.preventDefault();
      box.ebsLive.submit(form);
      return;
    }
    var busyText = form.getAttribute("data-busy-text");
    if (busyText) {
      var button = form.querySelector("button[type=submit]");
      if (button) {
        // after the browser has taken the submission: a disabled button is not sent
        setTimeout(function () { button.disabled = true; button.textContent = busyText; }, 0);
      }
    }
  });

  // Back from the pay page (page cache): the pay button must work again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    var button = document.getElementById("pay-button");
    if (button) { button.disabled = false; }
  });
})();
