// artmator gallery index: search and filters over the whole catalogue, from the static search index
// (index-data.js: `window.artmatorIndex`, the same rows as index.json), loaded on first use. Without JS the
// paged static index (index.html, index-2.html, ...) is the whole story. Text goes into the DOM through
// textContent only; painting ids are checked against the pipeline's id rule before they become links.
(function () {
  "use strict";

  var form = document.getElementById("search");
  var grid = document.getElementById("grid");
  var counter = document.getElementById("results-count");
  if (!form || !grid || !counter) return;
  var SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
  var fields = {
    q: document.getElementById("q"), artist: document.getElementById("artist"),
    from: document.getElementById("from"), to: document.getElementById("to"), flag: document.getElementById("flag")
  };
  var staticCards = Array.prototype.slice.call(grid.children);
  var staticPager = document.querySelector("nav.pager");
  var unavailable = document.querySelector(".unavailable");
  var rows = null;          // [{id, title, artist, date, year, flags, text}]
  var pageSize = 60;
  var matches = [];
  var page = 0;
  var loading = false;
  var announceTimer = 0;

  form.hidden = false;
  form.addEventListener("submit", function (e) { e.preventDefault(); update(); });

  function load() {
    if (rows || loading) return;
    loading = true;
    var script = document.createElement("script");
    script.src = "index-data.js";
    script.onload = function () {
      var data = window.artmatorIndex || { fields: [], items: [] };
      var at = {};
      data.fields.forEach(function (name, i) { at[name] = i; });
      pageSize = data.page_size || pageSize;
      rows = data.items.map(function (item) {
        var row = { id: String(item[at.id]), title: String(item[at.title] || ""),
                    artist: String(item[at.artist] || ""), date: String(item[at.date] || ""),
                    year: typeof item[at.year] === "number" ? item[at.year] : null, flags: item[at.flags] || [],
                    media: String(item[at.media] || "") };
        row.text = (row.id + " " + row.title + " " + row.artist + " " + row.date).toLowerCase();
        row.artistLower = row.artist.toLowerCase();
        return row;
      });
      update();
    };
    script.onerror = function () { counter.textContent = "Search is not available (index-data.js did not load)."; };
    document.head.appendChild(script);
  }

  function criteria() {
    var from = fields.from.value === "" ? null : Number(fields.from.value);
    var to = fields.to.value === "" ? null : Number(fields.to.value);
    return {
      terms: fields.q.value.toLowerCase().split(/\s+/).filter(Boolean),
      artist: fields.artist.value.trim().toLowerCase(), from: from, to: to, flag: fields.flag.value
    };
  }

  function active(c) {
    return c.terms.length || c.artist || c.from !== null || c.to !== null || c.flag;
  }

  function keep(row, c) {
    for (var i = 0; i < c.terms.length; i++) if (row.text.indexOf(c.terms[i]) < 0) return false;
    if (c.artist && row.artistLower.indexOf(c.artist) < 0) return false;
    if ((c.from !== null || c.to !== null) && row.year === null) return false;
    if (c.from !== null && row.year < c.from) return false;
    if (c.to !== null && row.year > c.to) return false;
    if (c.flag === "-" && row.flags.length) return false;
    if (c.flag && c.flag !== "-" && row.flags.indexOf(c.flag) < 0) return false;
    return true;
  }

  function card(row) {
    var li = document.createElement("li");
    li.className = "card";
    li.setAttribute("data-painting", row.id);
    var a = document.createElement("a");
    var base = "p/" + encodeURIComponent(row.id) + "/";
    a.href = base + "index.html";
    var img = document.createElement("img");
    img.src = base + row.media.split("/").map(encodeURIComponent).join("/") + "thumb.webp";
    img.alt = "";
    img.loading = "lazy";
    img.decoding = "async";
    var title = document.createElement("span");
    title.className = "title";
    title.textContent = row.title;
    a.appendChild(img);
    a.appendChild(title);
    li.appendChild(a);
    [["artist", row.artist], ["date", row.date]].forEach(function (pair) {
      if (!pair[1]) return;
      var span = document.createElement("span");
      span.className = pair[0];
      span.textContent = pair[1];
      li.appendChild(span);
    });
    return li;
  }

  function pager() {
    var nav = document.getElementById("results-pager");
    if (!nav) {
      nav = document.createElement("nav");
      nav.id = "results-pager";
      nav.className = "pager";
      nav.setAttribute("aria-label", "Result pages");
      grid.parentNode.insertBefore(nav, grid.nextSibling);
    }
    while (nav.firstChild) nav.removeChild(nav.firstChild);
    var pages = Math.max(1, Math.ceil(matches.length / pageSize));
    nav.hidden = pages <= 1;
    [["\u2190 Previous", -1], ["Next \u2192", 1]].forEach(function (spec) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = spec[0];
      button.disabled = page + spec[1] < 0 || page + spec[1] >= pages;
      button.setAttribute("data-step", String(spec[1]));
      button.addEventListener("click", function () { show(page + spec[1]); grid.scrollIntoView(); });
      nav.appendChild(button);
    });
    var where = document.createElement("span");
    where.className = "pager-where";
    where.textContent = "Page " + (page + 1) + " of " + pages;
    nav.appendChild(where);
  }

  function show(number) {
    page = number;
    while (grid.firstChild) grid.removeChild(grid.firstChild);
    matches.slice(page * pageSize, (page + 1) * pageSize).forEach(function (row) {
      if (SAFE_ID.test(row.id)) grid.appendChild(card(row));
    });
    pager();
  }

  function restore() {
    while (grid.firstChild) grid.removeChild(grid.firstChild);
    staticCards.forEach(function (el) { grid.appendChild(el); });
    var nav = document.getElementById("results-pager");
    if (nav) nav.hidden = true;
    if (staticPager) staticPager.hidden = false;
    if (unavailable) unavailable.hidden = false;
    document.body.classList.remove("searching");
  }

  // The live region speaks the number of results once typing pauses, not at every keystroke.
  function announce(text) {
    window.clearTimeout(announceTimer);
    announceTimer = window.setTimeout(function () { counter.textContent = text; }, 400);
  }

  function update() {
    var c = criteria();
    if (!active(c)) {
      restore();
      announce("");
      return;
    }
    if (!rows) {
      load();
      return;
    }
    matches = rows.filter(function (row) { return keep(row, c); });
    if (staticPager) staticPager.hidden = true;
    if (unavailable) unavailable.hidden = true;
    document.body.classList.add("searching");
    show(0);
    announce(matches.length === 1 ? "1 painting matches" : matches.length + " paintings match");
  }

  Object.keys(fields).forEach(function (name) {
    var el = fields[name];
    el.addEventListener("focus", load);
    el.addEventListener(el.tagName === "SELECT" ? "change" : "input", update);
  });
})();
