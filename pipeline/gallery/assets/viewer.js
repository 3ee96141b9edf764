// artmator gallery viewer: scrubs a turntable sprite (drag / arrow keys / slider), plays it, swaps in
// expression stills. Data comes from the page's <script type="application/json"> block (read with
// textContent + JSON.parse); all text goes into the DOM through textContent, never as markup.
(function () {
  "use strict";

  var dataNode = document.getElementById("viewer-data");
  if (!dataNode) return;
  var data = JSON.parse(dataNode.textContent);

  var stage = document.getElementById("stage");
  var poster = document.getElementById("poster");
  var sprite = document.getElementById("sprite");
  var still = document.getElementById("still");
  var play = document.getElementById("play");
  var scrub = document.getElementById("scrub");
  var status = document.getElementById("status");
  var exprButtons = Array.prototype.slice.call(document.querySelectorAll("[data-expression]"));

  var count = Math.max(1, data.frames | 0);
  var frame = Math.min(count - 1, Math.max(0, data.start | 0));
  var direction = 1;
  var playing = false;
  var expression = -1;
  var lastTick = 0;
  var carried = 0;

  function clampOrWrap(i) {
    if (data.wrap) return ((i % count) + count) % count;
    return Math.min(count - 1, Math.max(0, i));
  }

  function describe() {
    if (expression >= 0) return data.title + " \u2014 " + data.expressions[expression].name;
    var yaw = data.yaw_deg && data.yaw_deg.length === count ? data.yaw_deg[frame] : null;
    var turn = yaw === null ? "frame " + (frame + 1) + " of " + count : "yaw " + Math.round(yaw) + "\u00b0";
    return data.title + " \u2014 " + turn;
  }

  // Screen readers: the stage is a slider whose value (the yaw) is read when the user moves it; the live
  // status line speaks only on discrete actions (play, pause, an expression), never once per frame.
  function announce(text) {
    status.textContent = text;
  }

  function render() {
    var col = frame % data.columns;
    var row = Math.floor(frame / data.columns);
    // Percentages of the sprite's own size: the sprite is `columns` stage-widths wide.
    sprite.style.transform = "translate(" + (-100 * col / data.columns) + "%," + (-100 * row / data.rows) + "%)";
    stage.setAttribute("data-frame", String(frame));
    scrub.value = String(frame);
    if (!playing) syncValue();
  }

  function syncValue() {
    stage.setAttribute("aria-valuenow", String(frame));
    stage.setAttribute("aria-valuetext", describe());
  }

  function showFrame(i) {
    if (expression >= 0) selectExpression(-1);
    frame = clampOrWrap(i);
    render();
  }

  function selectExpression(index) {
    expression = index;
    exprButtons.forEach(function (b) {
      b.setAttribute("aria-pressed", String(Number(b.getAttribute("data-expression")) === index));
    });
    if (index >= 0) {
      setPlaying(false);
      still.setAttribute("src", data.expressions[index].src);
      still.setAttribute("alt", data.title + " \u2014 " + data.expressions[index].name);
    }
    still.hidden = index < 0;
    sprite.hidden = index >= 0;
    stage.setAttribute("data-expression", String(index));
    render();
    if (index >= 0) announce(describe());
  }

  function tick(now) {
    if (!playing) return;
    var step = 1000 / data.fps;
    carried += lastTick ? now - lastTick : 0;
    lastTick = now;
    while (carried >= step) {
      carried -= step;
      var next = frame + direction;
      if (!data.wrap && (next < 0 || next >= count)) {
        direction = -direction; // ping-pong, like the shared videos
        next = frame + direction;
      }
      frame = clampOrWrap(next);
    }
    render();
    window.requestAnimationFrame(tick);
  }

  function setPlaying(on) {
    if (on === playing || count < 2) return;
    playing = on;
    play.setAttribute("aria-pressed", String(on));
    play.textContent = on ? "Pause" : "Play";
    if (on) {
      if (expression >= 0) selectExpression(-1);
      lastTick = 0;
      carried = 0;
      announce("Playing the turntable");
      window.requestAnimationFrame(tick);
    } else {
      syncValue();
      announce("Paused \u2014 " + describe());
    }
  }

  // Drag: Pointer Events cover mouse, pen and touch; capture keeps the drag alive outside the stage.
  var drag = null;
  stage.addEventListener("pointerdown", function (e) {
    if (e.button !== 0) return;
    setPlaying(false);
    drag = { id: e.pointerId, x: e.clientX, frame: frame };
    stage.setPointerCapture(e.pointerId);
    stage.classList.add("dragging");
    e.preventDefault();
  });
  stage.addEventListener("pointermove", function (e) {
    if (!drag || e.pointerId !== drag.id) return;
    // One full drag across the stage sweeps the whole turntable.
    var pxPerFrame = Math.max(2, stage.clientWidth / count);
    var moved = Math.round((e.clientX - drag.x) / pxPerFrame);
    if (drag.frame + moved !== frame) showFrame(drag.frame + moved);
  });
  function endDrag(e) {
    if (!drag || e.pointerId !== drag.id) return;
    drag = null;
    stage.classList.remove("dragging");
  }
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);

  stage.addEventListener("keydown", function (e) {
    var keys = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 };
    if (e.key in keys) {
      setPlaying(false);
      showFrame(frame + keys[e.key]);
    } else if (e.key === "Home") {
      showFrame(0);
    } else if (e.key === "End") {
      showFrame(count - 1);
    } else if (e.key === " ") {
      setPlaying(!playing);
    } else {
      return;
    }
    e.preventDefault();
  });

  scrub.addEventListener("input", function () {
    setPlaying(false);
    showFrame(Number(scrub.value));
  });
  play.addEventListener("click", function () { setPlaying(!playing); });
  exprButtons.forEach(function (b) {
    b.addEventListener("click", function () { selectExpression(Number(b.getAttribute("data-expression"))); });
  });

  // Enhance only once the sprite has loaded, so the poster stays up if it cannot.
  function enable() {
    sprite.style.width = (100 * data.columns) + "%";
    sprite.hidden = false;
    poster.classList.add("placeholder");
    [play, scrub].concat(exprButtons).forEach(function (el) { el.disabled = false; });
    document.body.classList.add("interactive");
    render();
  }
  if (sprite.complete && sprite.naturalWidth > 0) enable();
  else sprite.addEventListener("load", enable, { once: true });
})();
