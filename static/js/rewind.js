// Rewind's own script: the CSRF header for htmx, and confirmation before destructive forms.
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });
  // Keep a job's log pinned to its newest line while the reader is at the bottom.
  var pinned = true;
  document.addEventListener("scroll", function (event) {
    var log = event.target;
    if (log.id === "log") {
      pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }
  }, true);
  document.addEventListener("htmx:oobAfterSwap", function () {
    var log = document.getElementById("log");
    if (log && pinned) {
      log.scrollTop = log.scrollHeight;
    }
  });
  // A live job page refused by the websocket caps (close code 1008) says why instead of staying silent.
  document.addEventListener("htmx:wsClose", function (event) {
    var closed = event.detail && event.detail.event;
    if (!closed || closed.code !== 1008 || document.getElementById("live-refused")) {
      return;
    }
    var note = document.createElement("p");
    note.id = "live-refused";
    note.className = "flash flash-error";
    note.textContent = "Live updates are off: " + (closed.reason || "too many live job pages are open") + ".";
    var main = document.getElementById("main");
    main.insertBefore(note, main.firstChild);
  });
  // Forms marked data-swap-errors show the refusal fragment (a stale toggle, a missing reason) in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (event.detail.elt.hasAttribute("data-swap-errors") && status >= 400 && status < 600 && status !== 401 && status !== 403) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // A swapped-in row gives keyboard focus back to its button.
  document.addEventListener("htmx:afterSwap", function () {
    var next = document.querySelector("[data-focus-after-swap]");
    if (next) {
      next.removeAttribute("data-focus-after-swap");
      next.focus();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);
})();
