// soapd web: page refresh and sortable tables. No inline scripts (the CSP forbids them).
(function () {
  "use strict";

  function stamp(text) {
    var el = document.getElementById("updated");
    if (el) el.textContent = text;
  }

  function clock() {
    return new Date().toISOString().slice(11, 19) + " UTC";
  }

  // ---------------------------------------------------------------- sorting
  function sortKey(cell, kind) {
    var v = cell ? cell.getAttribute("data-value") : "";
    if (kind === "num") {
      var x = parseFloat(v);
      return isNaN(x) ? Infinity : x;
    }
    return (v || "").toLowerCase();
  }

  function sortTable(table, col, dir) {
    var th = table.tHead.rows[0].cells[col];
    var kind = th.getAttribute("data-sort") || "text";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a.cells[col], kind), y = sortKey(b.cells[col], kind);
      if (x < y) return -dir;
      if (x > y) return dir;
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
      c.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }

  function setUpSorting(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table.sortable"), function (table) {
      var key = "soapd-sort-" + (table.id || "table");
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        th.tabIndex = 0;
        th.classList.add("sort-head");
        function go() {
          var saved = JSON.parse(sessionStorage.getItem(key) || "null");
          var dir = saved && saved.col === col ? -saved.dir : 1;
          sessionStorage.setItem(key, JSON.stringify({ col: col, dir: dir }));
          sortTable(table, col, dir);
        }
        th.addEventListener("click", go);
        th.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
        });
      });
      var saved = JSON.parse(sessionStorage.getItem(key) || "null");
      if (saved) sortTable(table, saved.col, saved.dir);
    });
  }

  // ---------------------------------------------------------------- refresh
  function refresh() {
    fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) {
          main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
          setUpSorting(main);
        }
        stamp("updated " + clock());
      })
      .catch(function (err) {
        stamp("not updated (" + err.message + "), retrying");
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpSorting(document);
    var every = parseFloat(document.body.getAttribute("data-refresh-s") || "");
    if (every > 0) {
      stamp("updated " + clock() + " · every " + every + " s");
      window.setInterval(refresh, every * 1000);
    }
  });
})();
