// vgmake report: sort the variants table; pick a variant out everywhere
// (chart lines, table row) while a legend entry is hovered or focused.
(function () {
  "use strict";
  var table = document.getElementById("variants-table");
  if (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var key = function (row) { return row.cells[column].getAttribute("data-value") || ""; };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          // Missing values sort last either way.
          if (x === "" || y === "") return (x === "") - (y === "");
          var nx = Number(x), ny = Number(y);
          var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y, undefined, { numeric: true });
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }
  function pick(variant) {
    document.body.classList.toggle("picking", variant !== null);
    var marked = document.querySelectorAll("[data-variant]");
    Array.prototype.forEach.call(marked, function (el) {
      el.classList.toggle("hl", variant !== null && el.getAttribute("data-variant") === variant);
    });
  }
  var keys = document.querySelectorAll(".legend button, svg .series");
  Array.prototype.forEach.call(keys, function (el) {
    var variant = el.getAttribute("data-variant");
    el.addEventListener("mouseenter", function () { pick(variant); });
    el.addEventListener("mouseleave", function () { pick(null); });
    el.addEventListener("focus", function () { pick(variant); });
    el.addEventListener("blur", function () { pick(null); });
  });
})();
