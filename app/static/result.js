// Result page: clicking an action (or a timeline mark) seeks the video; filters by team and class; playhead.
(function () {
  var video = document.getElementById("player");
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".event"));
  var timeline = document.getElementById("timeline");
  var playhead = document.getElementById("playhead");
  var classFilter = document.getElementById("class-filter");
  var teamButtons = Array.prototype.slice.call(document.querySelectorAll("#team-filter .seg"));
  var noMatch = document.getElementById("no-match");
  var team = "";
  var marks = [];
  var box = document.getElementById("result");
  spot.rememberJob(box.dataset.jobId, box.dataset.name);

  function seek(t) {
    if (!video) return;
    video.currentTime = t;
    var p = video.play();
    if (p && p.catch) p.catch(function () { /* autoplay refused: the frame is shown anyway */ });
  }

  function duration() {
    if (video && isFinite(video.duration) && video.duration > 0) return video.duration;
    var last = buttons.length ? Number(buttons[buttons.length - 1].dataset.time) : 0;
    return Math.max(1, last * 1.05);
  }

  function drawMarks() {
    marks.forEach(function (m) { m.remove(); });
    var d = duration();
    marks = buttons.filter(function (b) { return !b.disabled; }).map(function (b) {  // off-reel actions: no mark
      var m = document.createElement("button");
      m.type = "button";
      m.className = "mark";
      m.dataset.label = b.dataset.label;
      m.title = b.dataset.label.toLowerCase() + " at " + b.querySelector(".ev-time").textContent;
      m.setAttribute("aria-label", m.title);
      m.style.left = (100 * Math.min(1, Number(b.dataset.time) / d)) + "%";
      m.addEventListener("click", function (e) { e.stopPropagation(); seek(Number(b.dataset.time)); });
      timeline.appendChild(m);
      b.mark = m;
      return m;
    });
    applyFilters();
  }

  function matches(b) {
    return (!team || b.dataset.team === team) && (!classFilter.value || b.dataset.label === classFilter.value);
  }

  function applyFilters() {
    var shown = 0;
    buttons.forEach(function (b) {
      var ok = matches(b);
      b.parentNode.hidden = !ok;
      if (b.mark) b.mark.classList.toggle("filtered", !ok);
      if (ok) shown += 1;
    });
    if (noMatch) noMatch.hidden = shown > 0 || buttons.length === 0;
  }

  buttons.forEach(function (b) { b.addEventListener("click", function () { seek(Number(b.dataset.time)); }); });
  teamButtons.forEach(function (tb) {
    tb.addEventListener("click", function () {
      team = tb.dataset.team;
      teamButtons.forEach(function (o) { o.classList.toggle("active", o === tb); });
      applyFilters();
    });
  });
  if (classFilter) classFilter.addEventListener("change", applyFilters);
  timeline.addEventListener("click", function (e) {
    var r = timeline.getBoundingClientRect();
    seek(duration() * Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)));
  });

  if (video) {
    video.addEventListener("loadedmetadata", drawMarks);
    video.addEventListener("timeupdate", function () {
      var t = video.currentTime, d = duration();
      playhead.style.left = (100 * Math.min(1, t / d)) + "%";
      var current = null;
      buttons.forEach(function (b) { if (!b.disabled && Number(b.dataset.time) <= t + 0.05) current = b; });
      buttons.forEach(function (b) { b.classList.toggle("current", b === current); });
    });
  }
  drawMarks();
})();
