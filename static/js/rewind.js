// Rewind's own script: the CSRF header for htmx, confirmation before destructive forms, local times.
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
  // A live event that replaces the part holding the focus (the Cancel button, gone once the job ends) hands the
  // focus to the job's state, where a keyboard or screen-reader user reads how it ended, not to the page's top.
  var focusLost = false;
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var part = event.detail && event.detail.target;
    focusLost = focusLost || Boolean(part && part !== document.body && part.contains(document.activeElement));
  });
  document.addEventListener("htmx:oobAfterSwap", function () {
    var state = document.getElementById("job-state");
    if (focusLost && state && (!document.activeElement || document.activeElement === document.body)) {
      state.focus({ preventScroll: true }); // a reader at the log's end stays there
    }
    focusLost = focusLost && (!document.activeElement || document.activeElement === document.body);
  });
  // A refused form comes back with its field marked invalid and the reason beside it: the focus goes there, not
  // to the top of the page many Tab presses away. A refusal whose way on is a panel of its own (the schema gate's
  // plan, with its button) takes the focus the same way, so the next Tab is that panel's first field.
  document.addEventListener("DOMContentLoaded", function () {
    var invalid = document.querySelector('main [aria-invalid="true"]') ||
      document.querySelector("main [data-focus-on-load]");
    if (invalid && (!document.activeElement || document.activeElement === document.body)) {
      invalid.focus();
    }
  });
  // A note at the top of the page, made once by its id and reworded after: tone "error" or "warn"; a note
  // with a role is read out by screen readers when it appears or changes.
  function topNote(id, tone, role) {
    var note = document.getElementById(id);
    if (!note) {
      note = document.createElement("p");
      note.id = id;
      note.className = "flash flash-" + tone;
      if (role) {
        note.setAttribute("role", role);
      }
      var main = document.getElementById("main");
      main.insertBefore(note, main.firstChild);
    }
    return note;
  }
  // A live job page refused by the websocket caps (close code 1008) says why instead of staying silent.
  document.addEventListener("htmx:wsClose", function (event) {
    var closed = event.detail && event.detail.event;
    if (!closed || closed.code !== 1008 || document.getElementById("live-refused")) {
      return;
    }
    topNote("live-refused", "error").textContent =
      "Live updates are off: " + (closed.reason || "too many live job pages are open") + ".";
  });
  // A live job page whose connection dropped, or whose Rewind worker is restarting, says so until it is back.
  // These are the close codes after which htmx's websocket extension reconnects by itself.
  var RECONNECTING = [1006, 1011, 1012, 1013];
  document.addEventListener("htmx:wsClose", function (event) {
    var closed = event.detail && event.detail.event;
    if (!closed || RECONNECTING.indexOf(closed.code) < 0 || document.getElementById("live-reconnecting")) {
      return;
    }
    topNote("live-reconnecting", "warn", "status").textContent =
      "Live updates paused: reconnecting. Until then this page may be behind the job.";
  });
  document.addEventListener("htmx:wsOpen", function () {
    var note = document.getElementById("live-reconnecting");
    if (note) {
      note.remove();
    }
  });
  // A part that follows by itself (templates/_live.html, the jobs list) and gets no answer says since when it
  // has not been updated: in an incident, a page that silently stopped updating reads as "all is still well".
  // Such requests carry X-Rewind-Background; the event's element may be another once a swap replaced it.
  var lastUpdate = new Date();
  function polling(event) {
    var config = event.detail && event.detail.requestConfig;
    return Boolean(config && config.headers && config.headers["X-Rewind-Background"]);
  }
  function liveFailed(event, why) {
    if (!polling(event)) {
      return;
    }
    var clock = pad(lastUpdate.getHours()) + ":" + pad(lastUpdate.getMinutes()) + ":" + pad(lastUpdate.getSeconds());
    topNote("live-stale", "warn", "status").textContent = "Not updated since " + clock + ": " + why + ". Trying again.";
  }
  document.addEventListener("htmx:sendError", function (event) {
    liveFailed(event, "Rewind did not answer");
  });
  document.addEventListener("htmx:responseError", function (event) {
    liveFailed(event, "Rewind answered " + event.detail.xhr.status);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (polling(event) && event.detail.successful) {
      lastUpdate = new Date();
      var note = document.getElementById("live-stale");
      if (note) {
        note.remove();
      }
    }
  });
  // A part that follows by itself is replaced whole: the link or button a keyboard user was on would go with it,
  // and the next Tab would start again from the top of the page. Focus moves to the same control in the new part
  // (same kind, link and words; else the one at the same place), without scrolling.
  // Kept per part: two parts refreshing at the same moment (the dashboard's cards and its recent activity) swap one
  // after the other, and the second must not drop what the first noted.
  var FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";
  var refocus = {};
  function noteFocus(part) {
    var active = document.activeElement;
    if (!part || !part.id || !active || active === part || !part.contains(active)) {
      return;
    }
    refocus[part.id] = {
      at: Array.prototype.indexOf.call(part.querySelectorAll(FOCUSABLE), active),
      key: active.tagName + " " + (active.getAttribute("href") || "") + " " + active.textContent.trim(),
    };
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (polling(event)) {
      noteFocus(event.detail.target);
    }
  });
  // Parts that come back with another part's refresh (hx-select-oob: the overview's actions with its state) are
  // replaced whole too: marked data-keep-focus, they keep the keyboard user's place the same way.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var part = event.detail && event.detail.target;
    if (part && part.hasAttribute && part.hasAttribute("data-keep-focus")) {
      noteFocus(part);
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    var noted = refocus;
    refocus = {};
    for (var id in noted) {
      var was = noted[id];
      var part = document.getElementById(id);
      if (!part || (document.activeElement && document.activeElement !== document.body)) {
        continue;
      }
      var controls = part.querySelectorAll(FOCUSABLE);
      var next = null;
      for (var i = 0; i < controls.length && !next; i++) {
        var c = controls[i];
        if (c.tagName + " " + (c.getAttribute("href") || "") + " " + c.textContent.trim() === was.key) {
          next = c;
        }
      }
      next = next || controls[Math.min(was.at, controls.length - 1)];
      if (next) {
        next.focus({ preventScroll: true });
      }
    }
  });
  // Forms marked data-swap-errors show the refusal fragment (a stale toggle, a missing reason) in place.
  // The event fires on the swap target (a form's "closest tr"), so ask the element that sent the request.
  // A whole error page (a security token gone stale, a target gone from the targets file, an error) is no
  // fragment: swapped in, it put a second top bar inside the table and the flag's row was gone.
  function wholePage(xhr) {
    return /^\s*<(!doctype|html)/i.test(xhr.responseText || "");
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    var sender = event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt;
    if (sender && sender.hasAttribute("data-swap-errors") && status >= 400 && status < 600 && status !== 401 &&
        status !== 403 && !wholePage(event.detail.xhr)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // A request the person made (a button's POST, a search typed: not a part loading or following by itself)
  // answered with an error that is not swapped in says so at the top of the page, in the answer's own words, and
  // leaves the part that asked as it was: before, the button seemed to do nothing. (401 sends to the sign-in page
  // by itself.) Each such note belongs to the control that was refused (its address, and its data-refusal-key
  // when one address serves many rows, as a flag's toggle does): that control's next success clears it, nothing
  // else. A part's own load has no event of the person's behind it (isTrusted is false, or there is none).
  function changeKey(event) {
    var config = event.detail && event.detail.requestConfig;
    var asked = config && (config.verb !== "get" || (config.triggeringEvent && config.triggeringEvent.isTrusted));
    if (!asked || polling(event)) {
      return null;
    }
    var form = config.elt && config.elt.closest ? config.elt.closest("form") : null;
    return config.path.split("?")[0] + "#" + ((form && form.getAttribute("data-refusal-key")) || "");
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    var key = changeKey(event);
    if (event.detail.shouldSwap || xhr.status < 400 || xhr.status === 401 || !key) {
      return;
    }
    var said = xhr.getResponseHeader("X-Rewind-Refusal");
    var words = said ? decodeURIComponent(said) : "The request failed (HTTP " + xhr.status + ").";
    if (!said && xhr.responseText && xhr.responseText.length < 500 && !/</.test(xhr.responseText)) {
      words += " " + xhr.responseText.trim();
    }
    var note = topNote("request-refused", "error", "alert");
    note.textContent = words;
    note.setAttribute("data-refusal-for", key);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    var key = changeKey(event);
    if (!xhr || !key) {
      return;
    }
    var target = event.detail.target;
    if (xhr.status >= 400) { // a refusal swapped into a note of its own (a flag the table could not take)
      if (target && target.hasAttribute("data-refusal-note")) {
        target.setAttribute("data-refusal-for", key);
      }
      return;
    }
    if (xhr.status < 200 || xhr.status >= 300) {
      return;
    }
    document.querySelectorAll("[data-refusal-for]").forEach(function (note) {
      if (note.getAttribute("data-refusal-for") !== key) {
        return;
      }
      if (note.hasAttribute("data-refusal-note")) {
        note.replaceChildren();
        note.removeAttribute("data-refusal-for");
      } else {
        note.remove();
      }
    });
  });
  // A swapped-in row gives keyboard focus back to its button.
  document.addEventListener("htmx:afterSwap", function () {
    var next = document.querySelector("[data-focus-after-swap]");
    if (next) {
      next.removeAttribute("data-focus-after-swap");
      next.focus();
    }
  });
  // What the kill switch turns off, as this page shows the ticked flags (data-on): the question counts and names
  // only those that are on, and says which ticked ones are off already. Null: nothing is chosen, and nothing is
  // asked; the server says so (and records the refusal).
  function chosenFlags(form) {
    var tag = form.elements.tag && form.elements.tag.value;
    if (tag) {
      return { chosen: "every flag tagged " + tag, note: "" };
    }
    var on = [], off = [];
    for (var i = 0; i < form.elements.length; i++) {
      var box = form.elements[i];
      if (box.name === "flag" && box.checked) {
        (box.getAttribute("data-on") === "0" ? off : on).push(box.value);
      }
    }
    if (!on.length && !off.length) {
      return null;
    }
    var already = off.length ? off.join(", ") + (off.length === 1 ? " is" : " are") + " already off." : "";
    if (!on.length) {
      return { chosen: "the ticked flags", note: "This page shows every one of them off already (" + off.join(", ") +
        "): nothing changes unless one was turned on since." };
    }
    return { chosen: (on.length === 1 ? "1 flag: " : on.length + " flags: ") + on.join(", "), note: already };
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && form.elements.target) {
      // A form with a target chooser names the chosen target in its question: "Stop production?".
      question = question.split("{target}").join(form.elements.target.value || "the target");
    }
    if (question && question.indexOf("{chosen}") >= 0) {
      // The kill switch names what goes off: the ticked flags (their boxes belong to the form), or a tag.
      var chosen = chosenFlags(form);
      question = chosen && question.split("{chosen}").join(chosen.chosen) + (chosen.note ? " " + chosen.note : "");
    }
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);
  // Times arrive as UTC in <time datetime="…Z">; show them in the browser's zone, the date only when
  // it is not today, and keep the UTC time as the hover title the server wrote. Without script every
  // time reads as UTC, and so does every [data-zone] label and time field: the page never mixes zones.
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }
  function stamp(when, local) {
    var y = local ? when.getFullYear() : when.getUTCFullYear();
    var parts = local
      ? [when.getMonth() + 1, when.getDate(), when.getHours(), when.getMinutes(), when.getSeconds()]
      : [when.getUTCMonth() + 1, when.getUTCDate(), when.getUTCHours(), when.getUTCMinutes(), when.getUTCSeconds()];
    return { day: y + "-" + pad(parts[0]) + "-" + pad(parts[1]),
             clock: pad(parts[2]) + ":" + pad(parts[3]), seconds: ":" + pad(parts[4]) };
  }
  // The zone by its name where the browser knows it, with its offset now: a name holds across summer time.
  function zoneName() {
    var minutes = -new Date().getTimezoneOffset();
    var name = "";
    try {
      name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      name = "";
    }
    var utc = /^(Etc\/)?(UTC|GMT|Universal|Zulu)$/.test(name);
    if (minutes === 0 && (utc || !name)) {
      return "UTC";
    }
    var offset = "UTC" + offsetOf(new Date());
    return name && !utc ? name + ", " + offset : offset;
  }
  // "+05:30": the browser's offset from UTC at that moment (summer time included), as ISO 8601 writes it.
  function offsetOf(when) {
    var minutes = -when.getTimezoneOffset();
    return (minutes < 0 ? "-" : "+") + pad(Math.floor(Math.abs(minutes) / 60)) + ":" + pad(Math.abs(minutes) % 60);
  }
  // A time field the server reads as UTC (data-utc): with script, the person types and sees local time,
  // and what is sent is turned back to UTC (the formdata event, so the field itself keeps what was typed).
  // Anything else typed ("15 minutes ago") goes as it is. A field marked data-offset too is sent as typed with
  // the browser's offset ("2026-11-27 23:00+05:30", "10:00+05:30" for today), so the server's refusal can say
  // the time as typed, in this zone, and a time without a date is today here, not in UTC.
  var PLAIN_TIME = /^(\d{4})-(\d{2})-(\d{2})([T ])(\d{2}):(\d{2})(:\d{2})?([+-]\d{2}:\d{2}|Z)?$/i;
  var CLOCK = /^(\d{1,2}):(\d{2})(:\d{2})?([+-]\d{2}:\d{2}|Z)?$/i;
  function shifted(value, toUtc) {
    var m = PLAIN_TIME.exec((value || "").trim());
    if (!m || (toUtc && m[8])) {
      return null;
    }
    var args = [+m[1], +m[2] - 1, +m[3], +m[5], +m[6], m[7] ? +m[7].slice(1) : 0];
    var offset = /^[+-]/.test(m[8] || "") ? (m[8][0] === "-" ? -1 : 1) * (+m[8].slice(1, 3) * 60 + +m[8].slice(4)) : 0;
    var when = toUtc
      ? new Date(args[0], args[1], args[2], args[3], args[4], args[5])
      : new Date(Date.UTC(args[0], args[1], args[2], args[3], args[4], args[5]) - offset * 60000);
    if (isNaN(when.getTime())) {
      return null;
    }
    var s = stamp(when, !toUtc);
    return s.day + m[4] + s.clock + (m[7] ? s.seconds : "");
  }
  function withOffset(value) {
    var text = (value || "").trim();
    var m = PLAIN_TIME.exec(text), c = CLOCK.exec(text), when = null;
    if (m && !m[8]) {
      when = new Date(+m[1], +m[2] - 1, +m[3], +m[5], +m[6], m[7] ? +m[7].slice(1) : 0);
    } else if (c && !c[4]) {
      var now = new Date();
      when = new Date(now.getFullYear(), now.getMonth(), now.getDate(), +c[1], +c[2], c[3] ? +c[3].slice(1) : 0);
    }
    return when && !isNaN(when.getTime()) ? text + offsetOf(when) : null;
  }
  // What the server wrote back into a field (a refused form's own value): UTC, or as sent with an offset.
  function fromServer(value) {
    var c = CLOCK.exec((value || "").trim());
    return c ? c[1] + ":" + c[2] + (c[3] || "") : shifted(value, false);
  }
  function localise(root) {
    var today = new Date().toDateString();
    var scope = root || document;
    var nodes = scope.querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var when = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(when.getTime())) {
        continue;
      }
      var s = stamp(when, true);
      nodes[i].textContent = when.toDateString() === today ? s.clock + s.seconds : s.day + " " + s.clock + s.seconds;
      nodes[i].setAttribute("data-local", "1");
    }
    // Option text cannot hold a <time>: its "… UTC" is rewritten in place.
    var options = scope.querySelectorAll("[data-utc-time]:not([data-local])");
    for (var j = 0; j < options.length; j++) {
      var at = new Date(options[j].getAttribute("data-utc-time"));
      if (isNaN(at.getTime())) {
        continue;
      }
      var u = stamp(at, false), l = stamp(at, true);
      options[j].textContent = options[j].textContent.replace(
        u.day + " " + u.clock + u.seconds + " UTC", l.day + " " + l.clock + l.seconds);
      options[j].setAttribute("data-local", "1");
    }
    var zones = scope.querySelectorAll("[data-zone]");
    for (var k = 0; k < zones.length; k++) {
      zones[k].textContent = zoneName();
    }
    var fields = scope.querySelectorAll("input[data-utc]:not([data-local])");
    for (var n = 0; n < fields.length; n++) {
      // Only the server's own value is UTC: one the browser put back (going back to the page) is as typed.
      var local = fields[n].value === fields[n].defaultValue ? fromServer(fields[n].value) : null;
      if (local !== null) {
        fields[n].value = local;
      }
      fields[n].setAttribute("data-local", "1");
    }
  }
  // A running step's duration ([data-elapsed]: seconds when the server drew it) counts on between its events;
  // counted from when this page first saw the cell, so the browser's clock need not agree with the server's.
  function tick() {
    var cells = document.querySelectorAll("[data-elapsed]");
    var now = Date.now();
    for (var i = 0; i < cells.length; i++) {
      var cell = cells[i];
      if (!cell.hasAttribute("data-seen-at")) {
        cell.setAttribute("data-seen-at", String(now));
      }
      var seconds = parseFloat(cell.getAttribute("data-elapsed")) + (now - +cell.getAttribute("data-seen-at")) / 1000;
      if (!isNaN(seconds)) {
        cell.textContent = seconds.toFixed(1) + " s";
      }
    }
  }
  setInterval(tick, 1000);
  document.addEventListener("formdata", function (event) {
    var fields = event.target.querySelectorAll("input[data-utc][data-local][name]");
    for (var i = 0; i < fields.length; i++) {
      var sent = fields[i].hasAttribute("data-offset") ? withOffset(fields[i].value) : shifted(fields[i].value, true);
      if (sent !== null) {
        event.formData.set(fields[i].name, sent);
      }
    }
  }, true);
  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
  });
  document.addEventListener("htmx:load", function (event) {
    localise(event.target);
  });
})();
