// The console's only script: live refresh from server-sent events, and "select all" boxes.
// Regions marked data-live are re-read from the server (same URL) at most once a second
// after the database reports a change; nothing else on the page is touched, so a filter
// being typed or a form being filled is left alone.
(function () {
  "use strict";

  var MIN_INTERVAL_MS = 1000;
  var lastRefresh = 0;
  var pending = null;
  var refreshing = false;

  function setStatus(text, state) {
    var el = document.getElementById("live-status");
    if (el) {
      el.textContent = text;
      el.setAttribute("data-state", state);
    }
  }

  function regions(doc) {
    var found = {};
    var nodes = doc.querySelectorAll("[data-live][id]");
    for (var i = 0; i < nodes.length; i++) {
      found[nodes[i].id] = nodes[i];
    }
    return found;
  }

  function refresh() {
    pending = null;
    if (refreshing) {
      schedule();
      return;
    }
    var current = regions(document);
    if (Object.keys(current).length === 0) {
      return;
    }
    refreshing = true;
    lastRefresh = Date.now();
    fetch(window.location.href, {
      headers: { "X-Live-Refresh": "1" },
      credentials: "same-origin",
      cache: "no-store"
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = regions(new DOMParser().parseFromString(html, "text/html"));
        Object.keys(current).forEach(function (id) {
          // A region being worked in (focused, or with boxes ticked) is left as it is.
          var busy =
            current[id].contains(document.activeElement) ||
            current[id].querySelector("input[type=checkbox]:checked") !== null;
          if (fresh[id] && !busy) {
            current[id].replaceWith(document.importNode(fresh[id], true));
          }
        });
        wireSelectAll(document);
        setStatus("live · updated " + new Date().toLocaleTimeString(), "live");
      })
      .catch(function () {
        setStatus("live · refresh failed", "error");
      })
      .then(function () {
        refreshing = false;
      });
  }

  function schedule() {
    if (pending !== null) {
      return;
    }
    var wait = Math.max(0, lastRefresh + MIN_INTERVAL_MS - Date.now());
    pending = window.setTimeout(refresh, wait);
  }

  function connect() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource) {
      setStatus("static", "off");
      return;
    }
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      setStatus("live", "live");
    });
    source.addEventListener("change", schedule);
    source.addEventListener("error", function () {
      setStatus("reconnecting…", "error");
    });
  }

  function wireSelectAll(root) {
    var boxes = root.querySelectorAll("input[data-select-all]");
    for (var i = 0; i < boxes.length; i++) {
      boxes[i].addEventListener("change", function (event) {
        var form = event.target.closest("form");
        var items = form ? form.querySelectorAll("input[name=job_id][type=checkbox]") : [];
        for (var j = 0; j < items.length; j++) {
          items[j].checked = event.target.checked;
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireSelectAll(document);
    connect();
  });
})();
