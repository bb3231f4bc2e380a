// Upload page: drag-and-drop or picker, checks before sending, a resumable upload with its progress (XHR), then the
// processing page.
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

  // The video goes up as a resumable upload: POST /api/uploads (its name, size, options, labels: all checked before
  // a byte of it is sent), then PUT pieces of chunkBytes from the offset the server has. When the connection drops,
  // the page asks the server how much it has (GET) and goes on from there, waiting 1, 2, 4 ... 30 s between tries.
  var uploadsUrl = form.dataset.uploads;
  var chunkBytes = Number(form.dataset.chunkBytes) || 8 * 1024 * 1024;
  var MAX_TRIES = 8;  // dropped connections in a row before giving up
  var upload = null;  // the server's answer to POST /api/uploads: {upload_url, size, ...}

  function request(method, url, body, headers, onLoad, onError, onProgress) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Accept", "application/json");
    Object.keys(headers || {}).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
    if (onProgress) xhr.upload.addEventListener("progress", onProgress);
    xhr.addEventListener("load", function () {
      var parsed = {};
      try { parsed = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
      onLoad(xhr.status, parsed);
    });
    xhr.addEventListener("error", onError);
    xhr.send(body);
  }

  function showProgress(sent) {
    var pct = Math.floor(100 * sent / chosen.size);
    bar.value = pct;
    text.textContent = pct + "% \u00b7 " + spot.humanSize(sent) + " of " + spot.humanSize(chosen.size);
  }

  function sendFrom(offset, failures) {
    var end = Math.min(offset + chunkBytes, chosen.size);
    showProgress(offset);
    request("PUT", upload.upload_url, chosen.slice(offset, end),
      { "Upload-Offset": String(offset), "Content-Type": "application/octet-stream" },
      function (status, body) {
        if (status === 202 && body.url) { done(body); return; }
        if (status === 200 && typeof body.offset === "number") { sendFrom(body.offset, 0); return; }
        if (status === 409 && typeof body.offset === "number" && failures < MAX_TRIES) { sendFrom(body.offset, failures + 1); return; }
        if ((status === 409 || status === 502 || status === 503 || status === 504) && failures < MAX_TRIES) { retry(failures); return; }
        giveUp(body.error || ("The upload was refused (HTTP " + status + ")."));
      },
      function () { retry(failures); },
      function (ev) { if (ev.lengthComputable) showProgress(offset + ev.loaded); });
  }

  function retry(failures) {
    if (failures >= MAX_TRIES) {
      fail("The upload failed: the connection to the server was lost " + MAX_TRIES + " times in a row. Try again later.");
      return;
    }
    var wait = Math.min(30, Math.pow(2, failures));
    text.textContent = "Connection lost \u2014 going on in " + wait + " s (try " + (failures + 1) + " of " + MAX_TRIES + ")\u2026";
    window.setTimeout(function () {
      request("GET", upload.upload_url, null, null, function (status, body) {
        if (status === 200 && typeof body.offset === "number") sendFrom(body.offset, failures + 1);
        else if (status === 404) fail(body.error || "The server no longer has this upload: send the video again.");
        else retry(failures + 1);
      }, function () { retry(failures + 1); });
    }, wait * 1000);
  }

  function done(body) {
    upload = null;
    spot.rememberJob(body.job_id, chosen.name);
    bar.value = 100;
    text.textContent = "Uploaded \u2014 starting\u2026";
    window.location.assign(body.url);
  }

  function giveUp(message) {  // refused: the server's part of the upload goes too
    if (upload) request("DELETE", upload.upload_url, null, null, function () {}, function () {});
    fail(message);
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!chosen) { showError("Choose a video file first."); return; }
    var problem = check(chosen);
    if (problem) { showError(problem); return; }
    showError("");
    var data = new FormData(form);  // the options and the labels; the video follows in pieces
    data.delete("video");
    data.set("name", chosen.name);
    data.set("size", String(chosen.size));
    button.disabled = true;
    progressBox.hidden = false;
    bar.value = 0;
    text.textContent = "Checking\u2026";
    request("POST", uploadsUrl, data, null, function (status, body) {
      if (status === 201 && body.upload_url) { upload = body; sendFrom(body.offset || 0, 0); return; }
      fail(body.error || ("The upload was refused (HTTP " + status + ")."));
    }, function () { fail("The upload failed: the server could not be reached."); });
  });

  function fail(message) {
    upload = null;
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
