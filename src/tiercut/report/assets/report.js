/* tiercut report: pan and zoom, the overview strip, colouring by plan, node search.
   Plain JavaScript, no library; the page works without it (static pictures). */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";

  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

  /* Client (pointer) coordinates -> the svg's user coordinates. */
  function userPoint(svg, clientX, clientY) {
    var m = svg.getScreenCTM();
    if (!m) { return { x: 0, y: 0 }; }
    var p = svg.createSVGPoint();
    p.x = clientX; p.y = clientY;
    var q = p.matrixTransform(m.inverse());
    return { x: q.x, y: q.y };
  }

  /* Round ticks over [lo, hi]: steps of 1, 2 or 5 times a power of ten. */
  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { return [lo]; }
    var raw = (hi - lo) / count, pow = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * pow; }).filter(function (s) { return s >= raw; })[0];
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { out.push(v); }
    return out;
  }

  function formatSeconds(s) {
    var a = Math.abs(s);
    if (a === 0) { return "0 s"; }
    if (a >= 1) { return +s.toPrecision(3) + " s"; }
    if (a >= 1e-3) { return +(s * 1e3).toPrecision(3) + " ms"; }
    if (a >= 1e-6) { return +(s * 1e6).toPrecision(3) + " µs"; }
    return +(s * 1e9).toPrecision(3) + " ns";
  }

  /* Pan and zoom one svg.panzoom: "xy" (the graph) or "x" (timelines, zoom along time only). */
  function PanZoom(svg) {
    this.svg = svg;
    this.viewport = svg.querySelector("g.viewport");
    this.axis = svg.getAttribute("data-zoom") || "xy";
    this.k = 1; this.tx = 0; this.ty = 0;
    this.origin = parseFloat(this.viewport.getAttribute("data-origin") || "0");
    this.listeners = [];
    if (this.axis === "x") {
      this.plotW = parseFloat(svg.getAttribute("data-plot-w"));
      this.total = parseFloat(svg.getAttribute("data-total"));
      this.axisY = parseFloat(svg.getAttribute("data-axis-y"));
      this.axisGroup = svg.querySelector("g.axis");
    } else {
      this.width = parseFloat(svg.getAttribute("data-width"));
      this.height = parseFloat(svg.getAttribute("data-height"));
    }
    this.bind();
  }

  PanZoom.prototype.viewSize = function () {
    var r = this.svg.getBoundingClientRect();
    return { w: r.width, h: r.height };
  };

  PanZoom.prototype.limits = function () {
    if (this.axis === "x") { return { lo: 1, hi: 4000 }; }
    var v = this.viewSize();
    var fit = Math.min(v.w / this.width, v.h / this.height) || 1;
    return { lo: Math.min(fit, 1) * 0.5, hi: 6 };
  };

  PanZoom.prototype.apply = function () {
    if (this.axis === "x") {
      this.tx = clamp(this.tx, this.plotW * (1 - this.k), 0);
      this.viewport.setAttribute("transform",
        "translate(" + (this.origin + this.tx).toFixed(3) + ",0) scale(" + this.k.toFixed(5) + ",1)");
      this.drawAxis();
    } else {
      this.viewport.setAttribute("transform",
        "translate(" + this.tx.toFixed(2) + "," + this.ty.toFixed(2) + ") scale(" + this.k.toFixed(5) + ")");
      this.svg.classList.toggle("far", this.k < 0.45);
    }
    for (var i = 0; i < this.listeners.length; i++) { this.listeners[i](this); }
  };

  /* Zoom by factor f about the point (x, y) in the svg's user coordinates. */
  PanZoom.prototype.zoomAt = function (f, x, y) {
    var lim = this.limits(), k2 = clamp(this.k * f, lim.lo, lim.hi);
    if (this.axis === "x") {
      var px = x - this.origin;
      this.tx = px - (px - this.tx) * (k2 / this.k);
    } else {
      this.tx = x - (x - this.tx) * (k2 / this.k);
      this.ty = y - (y - this.ty) * (k2 / this.k);
    }
    this.k = k2;
    this.apply();
  };

  PanZoom.prototype.centre = function () {
    var v = this.viewSize();
    return this.axis === "x" ? { x: this.origin + this.plotW / 2, y: 0 } : { x: v.w / 2, y: v.h / 2 };
  };

  /* Show the content point (cx, cy) in the middle of the view (graph only). */
  PanZoom.prototype.lookAt = function (cx, cy, k) {
    var v = this.viewSize();
    if (k) { this.k = clamp(k, this.limits().lo, this.limits().hi); }
    this.tx = v.w / 2 - cx * this.k;
    this.ty = v.h / 2 - cy * this.k;
    this.apply();
  };

  PanZoom.prototype.fit = function () {
    if (this.axis === "x") { this.k = 1; this.tx = 0; this.apply(); return; }
    var v = this.viewSize();
    if (!v.w || !v.h) { return; }
    this.k = Math.min(v.w / this.width, v.h / this.height);
    this.tx = (v.w - this.width * this.k) / 2;
    this.ty = (v.h - this.height * this.k) / 2;
    this.apply();
  };

  /* The first view of the graph: as large as its height allows (at most 1:1), from its start. */
  PanZoom.prototype.home = function () {
    if (this.axis === "x") { this.fit(); return; }
    var v = this.viewSize();
    if (!v.w || !v.h) { return; }
    this.k = Math.min(1, v.h / this.height);
    this.tx = this.width * this.k < v.w ? (v.w - this.width * this.k) / 2 : 0;
    this.ty = (v.h - this.height * this.k) / 2;
    this.apply();
  };

  PanZoom.prototype.drawAxis = function () {
    var g = this.axisGroup;
    if (!g) { return; }
    while (g.firstChild) { g.removeChild(g.firstChild); }
    var lo = (-this.tx) / (this.k * this.plotW) * this.total;
    var hi = (this.plotW - this.tx) / (this.k * this.plotW) * this.total;
    var base = document.createElementNS(SVGNS, "line");
    base.setAttribute("x1", this.origin); base.setAttribute("x2", this.origin + this.plotW);
    base.setAttribute("y1", this.axisY); base.setAttribute("y2", this.axisY);
    g.appendChild(base);
    var ticks = niceTicks(lo, hi, 6);
    for (var i = 0; i < ticks.length; i++) {
      var x = this.origin + this.tx + ticks[i] / this.total * this.plotW * this.k;
      if (x < this.origin - 0.5 || x > this.origin + this.plotW + 0.5) { continue; }
      var tick = document.createElementNS(SVGNS, "line");
      tick.setAttribute("x1", x); tick.setAttribute("x2", x);
      tick.setAttribute("y1", this.axisY); tick.setAttribute("y2", this.axisY + 4);
      var text = document.createElementNS(SVGNS, "text");
      text.setAttribute("x", x); text.setAttribute("y", this.axisY + 16);
      text.setAttribute("text-anchor", "middle");
      text.textContent = formatSeconds(ticks[i]);
      g.appendChild(tick); g.appendChild(text);
    }
    var label = document.createElementNS(SVGNS, "text");
    label.setAttribute("class", "axis-label");
    label.setAttribute("x", this.origin + this.plotW); label.setAttribute("y", this.axisY + 30);
    label.setAttribute("text-anchor", "end");
    label.textContent = g.getAttribute("data-label") + (this.k > 1.001 ? " (×" + this.k.toPrecision(3) + ")" : "");
    g.appendChild(label);
  };

  PanZoom.prototype.bind = function () {
    var self = this, svg = this.svg, drag = null;
    svg.addEventListener("wheel", function (e) {
      e.preventDefault();
      var p = userPoint(svg, e.clientX, e.clientY);
      if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
        self.tx -= (e.deltaX || e.deltaY);
        self.apply();
        return;
      }
      var unit = e.deltaMode === 1 ? 16 : (e.deltaMode === 2 ? 400 : 1);
      self.zoomAt(Math.exp(-e.deltaY * unit * 0.0015), p.x, p.y);
    }, { passive: false });
    svg.addEventListener("pointerdown", function (e) {
      if (e.button !== 0) { return; }
      drag = { p: userPoint(svg, e.clientX, e.clientY), tx: self.tx, ty: self.ty, id: e.pointerId, moved: false };
    });
    svg.addEventListener("pointermove", function (e) {
      if (!drag || e.pointerId !== drag.id) { return; }
      var p = userPoint(svg, e.clientX, e.clientY);
      var dx = p.x - drag.p.x, dy = p.y - drag.p.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) { return; }
      if (!drag.moved) { drag.moved = true; svg.classList.add("dragging"); svg.setPointerCapture(e.pointerId); }
      self.tx = drag.tx + dx;
      if (self.axis !== "x") { self.ty = drag.ty + dy; }
      self.apply();
    });
    function end(e) {
      if (!drag || e.pointerId !== drag.id) { return; }
      if (drag.moved && svg.hasPointerCapture(e.pointerId)) { svg.releasePointerCapture(e.pointerId); }
      drag = null;
      svg.classList.remove("dragging");
    }
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    svg.addEventListener("dblclick", function (e) {
      var p = userPoint(svg, e.clientX, e.clientY);
      self.zoomAt(e.shiftKey ? 0.5 : 2, p.x, p.y);
    });
    svg.addEventListener("keydown", function (e) {
      var c = self.centre(), step = 60;
      if (e.key === "+" || e.key === "=") { self.zoomAt(1.25, c.x, c.y); }
      else if (e.key === "-" || e.key === "_") { self.zoomAt(0.8, c.x, c.y); }
      else if (e.key === "0") { self.fit(); }
      else if (e.key === "ArrowLeft") { self.tx += step; self.apply(); }
      else if (e.key === "ArrowRight") { self.tx -= step; self.apply(); }
      else if (e.key === "ArrowUp" && self.axis !== "x") { self.ty += step; self.apply(); }
      else if (e.key === "ArrowDown" && self.axis !== "x") { self.ty -= step; self.apply(); }
      else { return; }
      e.preventDefault();
    });
  };

  /* The overview strip under the graph: shows the visible window; a click or drag moves the view there. */
  function bindMinimap(mini, pz) {
    var win = mini.querySelector("rect.window"), dragging = false;
    function update() {
      var v = pz.viewSize();
      win.setAttribute("x", (-pz.tx / pz.k).toFixed(1));
      win.setAttribute("y", (-pz.ty / pz.k).toFixed(1));
      win.setAttribute("width", (v.w / pz.k).toFixed(1));
      win.setAttribute("height", (v.h / pz.k).toFixed(1));
    }
    function go(e) {
      var p = userPoint(mini, e.clientX, e.clientY);
      pz.lookAt(p.x, p.y);
    }
    mini.addEventListener("pointerdown", function (e) { dragging = true; mini.setPointerCapture(e.pointerId); go(e); });
    mini.addEventListener("pointermove", function (e) { if (dragging) { go(e); } });
    mini.addEventListener("pointerup", function (e) { dragging = false; mini.releasePointerCapture(e.pointerId); });
    pz.listeners.push(update);
    update();
  }

  /* The toolbar above a graph: zoom buttons and the node search. */
  function bindToolbar(bar, pz) {
    bar.addEventListener("click", function (e) {
      var button = e.target.closest("button[data-action]");
      if (!button) { return; }
      var c = pz.centre(), action = button.getAttribute("data-action");
      if (action === "zoom-in") { pz.zoomAt(1.5, c.x, c.y); }
      else if (action === "zoom-out") { pz.zoomAt(1 / 1.5, c.x, c.y); }
      else if (action === "fit") { pz.fit(); }
      else if (action === "reset") { pz.zoomAt(1 / pz.k, c.x, c.y); }
    });
    var input = bar.querySelector("input.node-search"), out = bar.querySelector(".search-result");
    if (!input) { return; }
    var nodes = Array.prototype.slice.call(pz.svg.querySelectorAll("g.node"));
    var matches = [], at = -1;
    function show() {
      nodes.forEach(function (n) { n.classList.remove("found"); });
      if (!matches.length) { return; }
      var node = matches[at], box = node.getBBox(), t = node.transform.baseVal.consolidate();
      var x = (t ? t.matrix.e : 0) + box.width / 2, y = (t ? t.matrix.f : 0) + box.height / 2;
      matches.forEach(function (n) { n.classList.add("found"); });
      pz.lookAt(x, y, Math.max(pz.k, 1));
      out.textContent = (at + 1) + " of " + matches.length + ": " + node.getAttribute("data-node");
    }
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      matches = q ? nodes.filter(function (n) { return n.getAttribute("data-node").toLowerCase().indexOf(q) >= 0; }) : [];
      var exact = matches.filter(function (n) { return n.getAttribute("data-node").toLowerCase() === q; });
      if (exact.length) { matches = exact.concat(matches.filter(function (n) { return exact.indexOf(n) < 0; })); }
      at = matches.length ? 0 : -1;
      out.textContent = q ? (matches.length ? "" : "no node matches") : "";
      show();
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && matches.length) { at = (at + 1) % matches.length; show(); e.preventDefault(); }
    });
  }

  /* Colour a case's graph by another plan (or upload stage) and show that plan's timeline and links. */
  function choosePlan(caseEl, key) {
    var holder = caseEl.querySelector("script.case-data");
    if (!holder) { return; }
    var data = JSON.parse(holder.textContent), devices = data.options[key];
    if (!devices) { return; }
    caseEl.querySelectorAll("svg.graph g.node").forEach(function (n) {
      var i = +n.getAttribute("data-i");
      n.setAttribute("class", n.getAttribute("class").replace(/\bd\d+\b/g, "").replace(/\s+/g, " ").trim() + " d" + devices[i]);
    });
    caseEl.querySelectorAll("svg.minimap rect.mm").forEach(function (n) {
      n.setAttribute("class", "mm d" + devices[+n.getAttribute("data-i")]);
    });
    caseEl.querySelectorAll("svg.graph path.edge").forEach(function (e) {
      var s = +e.getAttribute("data-s"), t = +e.getAttribute("data-t");
      e.classList.toggle("cut", devices[s] !== devices[t]);
    });
    caseEl.querySelectorAll(".per-plan").forEach(function (p) { p.hidden = p.getAttribute("data-plan") !== key; });
    caseEl.querySelectorAll("tr.pick").forEach(function (r) { r.classList.toggle("selected", r.getAttribute("data-plan") === key); });
    var select = caseEl.querySelector("select.plan-select");
    if (select && select.value !== key) { select.value = key; }
  }

  function init() {
    var zoomers = {};
    document.querySelectorAll("svg.panzoom").forEach(function (svg) {
      var pz = new PanZoom(svg);
      zoomers[svg.id] = pz;
      pz.home();
    });
    document.querySelectorAll("svg.minimap").forEach(function (mini) {
      var pz = zoomers[mini.getAttribute("data-for")];
      if (pz) { bindMinimap(mini, pz); }
    });
    document.querySelectorAll(".toolbar[data-for]").forEach(function (bar) {
      var pz = zoomers[bar.getAttribute("data-for")];
      if (pz) { bindToolbar(bar, pz); }
    });
    document.querySelectorAll("section.case").forEach(function (caseEl) {
      var select = caseEl.querySelector("select.plan-select");
      if (select) {
        select.addEventListener("change", function () { choosePlan(caseEl, select.value); });
        choosePlan(caseEl, select.value);
      }
      caseEl.querySelectorAll("tr.pick").forEach(function (row) {
        row.addEventListener("click", function () { choosePlan(caseEl, row.getAttribute("data-plan")); });
      });
    });
    window.addEventListener("resize", function () {
      Object.keys(zoomers).forEach(function (id) { zoomers[id].apply(); });
    });
    document.documentElement.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
