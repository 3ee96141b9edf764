// artmator gallery: the painting's head as a real 3D mesh (mesh.glb) that turns freely in WebGL (three.js).
// Bundled with three.js into pipeline/gallery/assets/mesh-viewer.js (`npm run build`), a classic script, so
// the page needs no module loading, no import map and no request outside the site.
//
// The page stays usable without it: the turntable sprite (viewer.js) is the fallback wherever there is no
// mesh, no WebGL, or no http(s) (browsers refuse fetch() on file:// pages). Text goes into the DOM through
// textContent only.
import { Box3, Color, PerspectiveCamera, Scene, SRGBColorSpace, Sphere, WebGLRenderer } from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

(function () {
  "use strict";

  var dataNode = document.getElementById("viewer-data");
  var holder = document.getElementById("model3d");
  var button = document.getElementById("mode-3d");
  var note = document.getElementById("model3d-note");
  if (!dataNode || !holder || !button) return;
  var data = JSON.parse(dataNode.textContent);
  if (!data.mesh) return;

  function say(text) {
    if (note) note.textContent = text;
  }

  if (!/^https?:$/.test(window.location.protocol)) {
    say("3D model: serve the gallery over http(s) to turn the mesh here; the turntable above is its render.");
    return;
  }

  var FOV_DEG = 12;   // a long lens, as the renders use: little perspective distortion on a face
  var renderer;
  try {
    renderer = new WebGLRenderer({ antialias: true, alpha: false });
  } catch (err) {
    say("3D model: this browser has no WebGL; the turntable above is its render.");
    return;
  }
  renderer.outputColorSpace = SRGBColorSpace;
  renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
  var canvas = renderer.domElement;
  canvas.className = "model3d-canvas";
  canvas.setAttribute("tabindex", "0");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", data.title + " \u2014 3D model: drag or use the arrow keys to turn it");

  var scene = new Scene();
  scene.background = new Color(0xdddddd);
  // The mesh is in the renders' world frame (y up, frontal camera on +z): the camera starts on +z, looking at
  // the mesh's centre from where its bounding sphere fills the view (`frame`).
  var camera = new PerspectiveCamera(FOV_DEG, 1, 0.001, 100);
  var controls = new OrbitControls(camera, canvas);
  controls.enablePan = false;
  controls.enableDamping = false;
  controls.addEventListener("change", draw);

  function frame(object) {
    var sphere = new Box3().setFromObject(object).getBoundingSphere(new Sphere());
    var distance = sphere.radius / Math.sin((FOV_DEG * Math.PI) / 360);
    controls.target.copy(sphere.center);
    camera.position.set(sphere.center.x, sphere.center.y, sphere.center.z + distance);
    camera.near = distance / 100;
    camera.far = distance * 100;
    controls.minDistance = distance * 0.4;
    controls.maxDistance = distance * 2.5;
    camera.updateProjectionMatrix();
    controls.update();
    controls.saveState();
  }
  // Vertical swipes scroll the page on phones; horizontal drags turn the head (OrbitControls sets "none").
  canvas.style.touchAction = "pan-y";

  var drawPending = false;
  function draw() {
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(function () {
      drawPending = false;
      renderer.render(scene, camera);
    });
  }

  function resize() {
    var side = Math.max(1, holder.clientWidth);
    renderer.setSize(side, side, false);
    camera.aspect = 1;
    camera.updateProjectionMatrix();
    draw();
  }

  canvas.addEventListener("keydown", function (e) {
    var step = Math.PI / 18;
    if (e.key === "ArrowLeft") controls.rotateLeft(step);
    else if (e.key === "ArrowRight") controls.rotateLeft(-step);
    else if (e.key === "ArrowUp") controls.rotateUp(step);
    else if (e.key === "ArrowDown") controls.rotateUp(-step);
    else if (e.key === "Home") controls.reset();
    else return;
    controls.update();
    e.preventDefault();
  });

  var modeButtons = Array.prototype.slice.call(document.querySelectorAll("[data-expression]"));
  var stage = document.getElementById("stage");
  var controlsRow = document.querySelector(".controls");

  function show3d(on) {
    holder.hidden = !on;
    if (stage) stage.hidden = on;
    if (controlsRow) controlsRow.hidden = on;
    button.setAttribute("aria-pressed", String(on));
    if (on) {
      modeButtons.forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
      resize();
    }
    document.body.classList.toggle("mode-3d", on);
  }

  button.addEventListener("click", function () { show3d(true); });
  modeButtons.forEach(function (b) { b.addEventListener("click", function () { show3d(false); }); });
  window.addEventListener("resize", function () { if (!holder.hidden) resize(); });

  // Expressions: the GLB holds one morph target per expression still (names in mesh.extras.targetNames, which
  // GLTFLoader turns into morphTargetDictionary). A slider per target blends it in real time, 0..100 %.
  function morphControls(object) {
    var meshes = [];
    object.traverse(function (o) { if (o.morphTargetDictionary && o.morphTargetInfluences) meshes.push(o); });
    if (!meshes.length) return;
    var names = Object.keys(meshes[0].morphTargetDictionary);
    if (!names.length) return;
    var group = document.createElement("div");
    group.className = "morphs";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Expressions of the 3D model");
    names.forEach(function (name) {
      var label = document.createElement("label");
      var text = document.createElement("span");
      text.textContent = name;
      var input = document.createElement("input");
      input.type = "range";
      input.min = "0";
      input.max = "100";
      input.value = "0";
      input.setAttribute("data-morph", name);
      input.setAttribute("aria-valuetext", "0 %");
      input.addEventListener("input", function () {
        var weight = Number(input.value) / 100;
        meshes.forEach(function (m) {
          var index = m.morphTargetDictionary[name];
          if (index !== undefined) m.morphTargetInfluences[index] = weight;
        });
        input.setAttribute("aria-valuetext", input.value + " %");
        draw();
      });
      label.appendChild(text);
      label.appendChild(input);
      group.appendChild(label);
    });
    holder.appendChild(group);
  }

  function fail(reason) {
    say("3D model could not be shown (" + reason + "); the turntable above is its render.");
    document.body.classList.add("mesh-failed");
  }

  window.fetch(data.mesh, { credentials: "same-origin" }).then(function (response) {
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.arrayBuffer();
  }).then(function (buffer) {
    new GLTFLoader().parse(buffer, "", function (gltf) {
      scene.add(gltf.scene);
      frame(gltf.scene);
      holder.appendChild(canvas);
      morphControls(gltf.scene);
      button.hidden = false;
      button.disabled = false;
      say("");
      show3d(true);
      document.body.classList.add("mesh-ready");
    }, function (err) { fail(String(err && err.message || err)); });
  }).catch(function (err) { fail(String(err && err.message || err)); });
})();
