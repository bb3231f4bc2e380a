// Upload page: drag-and-drop or picker, checks before sending, upload progress (XHR), then the processing page.
(function () {
  var form = document.getElementById("upload-form");
  var input = document.getElementById("video-input");
  var zone = document.getElementById("dropzone");
  var info = document.getElementById("file-info");
  var errorBox = document.getElementById("upload-error");
  var button = document.getElementById("upload-button");
  var progressBox = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-bar");
  var text = document.getElementById("upload-text");
  var threshold = document.getElementById("threshold");
  var thresholdValue = document.getElementById("threshold-value");
  var maxBytes = Number(form.dataset.maxBytes) || Infinity;  // empty: no limit
  var extensions = form.dataset.extensions.split(",");
  var chosen = null;

  function showError(message) { errorBox.textContent = message; errorBox.hidden = !message; }

  function check(file) {
    var dot = file.name.lastIndexOf(".");
    var ext = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
    if (extensions.indexOf(ext) < 0) return "\u201c" + file.name + "\u201d is not a supported video: use one of " + extensions.join(" ") + ".";
    if (file.size > maxBytes) return "\u201c" + file.name + "\u201d is " + spot.humanSize(file.size) + ", over the upload limit of " + spot.humanSize(maxBytes) + ".";
    if (file.size === 0) return "\u201c" + file.name + "\u201d is empty.";
    return "";
  }

  function choose(file) {
    chosen = file || null;
    if (!chosen) { info.hidden = true; return; }
    info.textContent = chosen.name + " \u2014 " + spot.humanSize(chosen.size);
    info.hidden = false;
    showError(check(chosen));
  }

  if (threshold) threshold.addEventListener("input", function () { thresholdValue.textContent = Number(threshold.value).toFixed(2); });
  var perClass = document.getElementById("model-thresholds");  // checked: the model's per-class thresholds
  if (perClass && threshold) perClass.addEventListener("change", function () { threshold.disabled = perClass.checked; });
  input.addEventListener("change", function () { choose(input.files[0]); });
  // Choosing the actions (or the team) of a reel makes the annotated video a highlight reel.
  var annotated = document.getElementById("annotated");
  var reel = document.getElementById("reel-choice");
  if (reel && annotated) reel.addEventListener("change", function () {
    var chosen = reel.querySelector("input:checked") || (reel.querySelector("select") || {}).value;
    if (chosen) annotated.value = "highlights";
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); if (!input.disabled) zone.classList.add("dragover"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.remove("dragover"); });
  });
  zone.addEventListener("drop", function (e) {
    if (input.disabled || !e.dataTransfer.files.length) return;
    try { input.files = e.dataTransfer.files; } catch (err) { /* old browsers: keep our own reference */ }
    choose(e.dataTransfer.files[0]);
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!chosen) { showError("Choose a video file first."); return; }
    var problem = check(chosen);
    if (problem) { showError(problem); return; }
    showError("");
    var data = new FormData(form);
    data.set("video", chosen, chosen.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);  // the JSON API (POST /api/jobs); form.action serves browsers without JS
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (ev) {
      if (!ev.lengthComputable) return;
      var pct = Math.floor(100 * ev.loaded / ev.total);
      bar.value = pct;
      text.textContent = pct + "% \u00b7 " + spot.humanSize(ev.loaded) + " of " + spot.humanSize(ev.total);
    });
    xhr.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
      if (xhr.status === 202 && body.url) {
        spot.rememberJob(body.job_id, chosen.name);
        text.textContent = "Uploaded \u2014 starting\u2026";
        window.location.assign(body.url);
        return;
      }
      fail(body.error || ("The upload was refused (HTTP " + xhr.status + ")."));
    });
    xhr.addEventListener("error", function () { fail("The upload failed: the connection to the server was lost."); });
    button.disabled = true;
    progressBox.hidden = false;
    bar.value = 0;
    xhr.send(data);
  });

  function fail(message) {
    showError(message);
    button.disabled = false;
    progressBox.hidden = true;
  }

  // The videos this browser uploaded (ids live only here, never listed by the server).
  try {
    var jobs = JSON.parse(localStorage.getItem("spot-jobs") || "[]");
    var list = document.getElementById("recent-list");
    jobs.forEach(function (job) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "/jobs/" + encodeURIComponent(job.id);
      a.textContent = job.name;
      var when = document.createElement("span");
      when.className = "muted small";
      when.textContent = new Date(job.at).toLocaleString();
      li.appendChild(a); li.appendChild(when); list.appendChild(li);
    });
    document.getElementById("recent-jobs").hidden = jobs.length === 0;
  } catch (e) { /* storage disabled */ }
})();
