// hosts.js refreshes the hosts table: every data-refresh seconds it
// fetches the table body for the same filter and order from
// data-rows-url and swaps it in. The server escapes every value in the
// fragment, as in the page itself.
(function () {
  "use strict";
  var table = document.getElementById("hosts-table");
  if (!table) {
    return;
  }
  var seconds = parseInt(table.getAttribute("data-refresh"), 10);
  var url = table.getAttribute("data-rows-url");
  if (!(seconds > 0) || !url) {
    return;
  }
  var updated = document.getElementById("hosts-updated");
  var count = document.getElementById("hosts-count");
  var empty = document.getElementById("hosts-empty");
  var timer = null;
  var busy = false;

  function say(text, failed) {
    if (!updated) {
      return;
    }
    updated.textContent = text;
    updated.classList.toggle("stale", !!failed);
  }

  function refresh() {
    if (busy) {
      return;
    }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401) {
          window.clearInterval(timer);
          throw new Error("your session has ended; reload the page to log in again");
        }
        if (!resp.ok) {
          throw new Error("the server answered " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        var tpl = document.createElement("template");
        tpl.innerHTML = "<table>" + html + "</table>";
        var body = tpl.content.querySelector("tbody");
        var old = document.getElementById("hosts-rows");
        if (!body || !old) {
          throw new Error("the answer held no table rows");
        }
        old.replaceWith(body);
        var n = body.querySelectorAll("tr.host").length;
        if (count) {
          count.textContent = String(n);
        }
        if (empty) {
          empty.hidden = n > 0;
        }
        var now = new Date();
        if (updated) {
          updated.setAttribute("data-updated", now.toISOString());
        }
        say("updated " + now.toLocaleTimeString(), false);
      })
      .catch(function (err) {
        say("not updated: " + err.message, true);
      })
      .finally(function () {
        busy = false;
      });
  }

  timer = window.setInterval(refresh, seconds * 1000);
})();
