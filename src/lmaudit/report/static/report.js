// lmaudit report: paginated, sortable, filterable sample browsers.
// Rows come from JSON inside the page and are written with textContent only: a document's
// text, a model output or an id is always shown as text, never parsed as markup.
"use strict";
(function () {
  var PAGE = 25;

  function show(value, kind) {
    if (value === null || value === undefined) return kind === "text" ? "" : "n/a";  // no error, no note: blank
    if (kind === "bool") return value ? "yes" : "no";
    if (typeof value !== "number") return String(value);
    if (kind === "pct") {  // as the report's own figures: a share that is not 0 or 1 never reads 0.0% or 100.0%
      var p = (100 * value).toFixed(1);
      if (value !== 0 && Number(p) === 0) p = String(Number((100 * value).toPrecision(2)));
      for (var d = 2; value !== 1 && Number(p) === 100 && d < 12; d++) p = (100 * value).toFixed(d);
      return p + "%";
    }
    if (kind === "num") {
      if (Number.isInteger(value)) return value.toLocaleString("en");
      var a = Math.abs(value);
      if (a !== 0 && (a < 1e-3 || a >= 1e6)) return value.toExponential(2);
      var digits = 4, text = String(Number(value.toPrecision(digits)));
      while (Math.abs(Number(text)) === 1 && a !== 1 && digits < 12) text = String(Number(value.toPrecision(++digits)));
      return text;  // as the report's own figures: 0.99996 is not 1
    }
    return String(value);
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function browser(holder) {
    var data = JSON.parse(document.getElementById(holder.getAttribute("data-table")).textContent);
    var cols = data.columns, all = data.rows.map(function (r, i) { return {cells: r, index: i}; });
    var sortCol = cols.findIndex(function (c) { return c.key === data.sort; });
    var descending = data.descending, query = "", page = 0, rows = all;

    var controls = el("div", undefined, "controls");
    var filter = el("input");
    filter.type = "search";
    filter.placeholder = "filter by text";
    filter.setAttribute("aria-label", "filter rows");
    var prev = el("button", "previous"), next = el("button", "next"), where = el("span", "", "where");
    controls.append(filter, prev, where, next);
    var table = el("table", undefined, "sample-table"), head = el("thead"), body = el("tbody");
    var tr = el("tr");
    cols.forEach(function (c, j) {
      var th = el("th", c.label);
      th.setAttribute("role", "button");
      th.title = "sort by " + c.label;
      th.addEventListener("click", function () {
        descending = sortCol === j ? !descending : c.kind !== "text";
        sortCol = j;
        update();
      });
      tr.append(th);
    });
    head.append(tr);
    table.append(head, body);
    holder.append(controls, table);

    function compare(a, b) {
      var x = a.cells[sortCol], y = b.cells[sortCol];
      if (x === y) return a.index - b.index;
      if (x === null) return 1;  // n/a last, whichever the direction
      if (y === null) return -1;
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      var order = x < y ? -1 : 1;
      return descending ? -order : order;
    }

    function update() {
      var q = query.toLowerCase();
      rows = all.filter(function (r) {
        return !q || r.cells.some(function (v, j) { return cols[j].kind === "text" && v !== null && String(v).toLowerCase().indexOf(q) >= 0; });
      });
      if (sortCol >= 0) rows.sort(compare);
      var pages = Math.max(1, Math.ceil(rows.length / PAGE));
      page = Math.min(page, pages - 1);
      body.textContent = "";
      rows.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {
        var line = el("tr");
        r.cells.forEach(function (v, j) { line.append(el("td", show(v, cols[j].kind), cols[j].kind)); });
        body.append(line);
      });
      where.textContent = "page " + (page + 1) + " of " + pages + " (" + rows.length.toLocaleString("en") + " rows)";
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
      Array.prototype.forEach.call(head.querySelectorAll("th"), function (th, j) {
        th.setAttribute("aria-sort", j === sortCol ? (descending ? "descending" : "ascending") : "none");
      });
    }

    filter.addEventListener("input", function () { query = filter.value; page = 0; update(); });
    prev.addEventListener("click", function () { page -= 1; update(); });
    next.addEventListener("click", function () { page += 1; update(); });
    update();
  }

  Array.prototype.forEach.call(document.querySelectorAll("div.samples[data-table]"), browser);
})();
