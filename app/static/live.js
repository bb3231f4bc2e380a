// Live page: the form starts a live job (POST /api/live); a job's page polls its status for the events written
// since the last poll (?after=N), adds them to the timeline and the list, and stops or removes the job.
(function () {
  var ACTIVE = ["running", "stopping"];

  function json(response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      if (!response.ok && response.status !== 202) {
        var err = new Error(body.error || "HTTP " + response.status);
        err.field = body.field;
        err.status = response.status;
        throw err;
      }
      return body;
    });
  }

  // ---- the form
  var form = document.getElementById("live-form");
  if (form) {
    var start = document.getElementById("live-start");
    var formError = document.getElementById("live-form-error");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      start.disabled = true;
      formError.hidden = true;
      fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" }
      })
        .then(json)
        .then(function (body) { window.location.assign(body.url); })
        .catch(function (err) {
          formError.textContent = err.message;
          formError.hidden = false;
          start.disabled = false;
          var field = err.field && form.querySelector('[name="' + err.field + '"]');
          if (field) field.focus();
        });
    });
  }

  // ---- a live job
  var box = document.getElementById("live");
  if (!box) return;
  var statusUrl = box.dataset.statusUrl;
  var timeline = document.getElementById("live-timeline");
  var list = document.getElementById("live-events");
  var stateText = document.getElementById("live-state");
  var errorText = document.getElementById("live-error");
  var noteText = document.getElementById("live-note");
  var stopButton = document.getElementById("live-stop");
  var removeButton = document.getElementById("live-remove");
  var next = 0, span = 60, failures = 0, polling = false;
  var events = [];  // {time_s, mark}

  function clock(seconds) {
    var m = Math.floor(seconds / 60), s = seconds - 60 * m;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  function place(event) { event.mark.style.left = (100 * Math.min(1, event.time_s / span)) + "%"; }

  function grow(time_s) {  // the timeline spans whole minutes, the latest action at most 90 % along
    var wanted = Math.max(60, 60 * Math.ceil(time_s / 0.9 / 60));
    if (wanted <= span) return;
    span = wanted;
    document.getElementById("timeline-end").textContent = clock(span).replace(/\.0$/, "");
    events.forEach(place);
  }

  function add(e) {
    var label = String(e.label), lower = label.toLowerCase();
    var mark = document.createElement("span");
    mark.className = "mark";
    mark.dataset.label = label;
    mark.title = lower + " at " + e.time;
    timeline.appendChild(mark);
    var event = { time_s: Number(e.time_s), mark: mark };
    events.push(event);
    grow(event.time_s);
    place(event);

    var li = document.createElement("li");
    var row = document.createElement("div");
    row.className = "event live-event";
    row.dataset.label = label;
    row.dataset.frame = e.frame;
    function cell(cls, text, title) {
      var span = document.createElement("span");
      span.className = cls;
      if (text != null) span.textContent = text;
      if (title) span.title = title;
      if (cls === "swatch") span.dataset.label = label;
      row.appendChild(span);
      return span;
    }
    cell("swatch");
    cell("ev-time", clock(Number(e.time_s)), "time in the feed");
    cell("ev-label", lower);
    if (e.team) cell("team-badge team-" + e.team, e.team, e.team + " team");
    else cell("ev-team");
    cell("ev-score muted", Number(e.score).toFixed(2), "score");
    cell("ev-delay muted", e.delay_s != null ? "+" + Number(e.delay_s).toFixed(1) + " s" : "",
      "written this long after its frame arrived");
    li.appendChild(row);
    list.insertBefore(li, list.firstChild);  // the newest first
  }

  function render(s) {
    var count = s.num_events || 0;
    var actions = count + " action" + (count === 1 ? "" : "s");
    var text = {
      running: s.stage === "loading" ? "Loading the model\u2026" : "Watching the feed: " + actions + " so far",
      stopping: "Stopping: the last seconds are being finished\u2026",
      stopped: "Stopped: " + actions + ".",
      done: "The feed ended: " + actions + ".",
      failed: "Failed after " + actions + ".",
      interrupted: "Interrupted after " + actions + "."
    }[s.state] || s.state;
    stateText.textContent = text;
    box.dataset.state = s.state;
    errorText.textContent = s.error || "";
    errorText.hidden = !s.error;
    noteText.textContent = s.note || "";
    noteText.hidden = !s.note;
    var active = ACTIVE.indexOf(s.state) >= 0;
    stopButton.hidden = !active;
    stopButton.disabled = s.state === "stopping";
    removeButton.hidden = active;
    document.getElementById("no-events").hidden = events.length > 0;
    var files = s.files || {};
    document.getElementById("download-csv").parentNode.hidden = !files["events.csv"];
    document.getElementById("download-jsonl").parentNode.hidden = !files["events.jsonl"];
    document.getElementById("downloads-note").hidden = !active;
    var summary = document.getElementById("live-summary");
    if (s.summary && !active) {
      var d = s.summary.delay_s;
      summary.textContent = spot.duration(s.summary.stream_s || 0) + " of the feed watched, " + actions +
        (d ? "; written " + d.median.toFixed(1) + " s after the frame (median), 95 % within " + d.p95.toFixed(1) + " s" : "") +
        (s.summary.gaps && s.summary.gaps.length ? "; " + s.summary.gaps.length + " gap(s) in the feed" : "") + ".";
      summary.hidden = false;
    }
    return active;
  }

  function poll() {
    polling = true;
    fetch(statusUrl + "?after=" + next, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(json)
      .then(function (s) {
        failures = 0;
        (s.events || []).forEach(add);
        next = s.next;
        if (render(s)) setTimeout(poll, 1000);
        else polling = false;
      })
      .catch(function (err) {
        if (err.status === 404 || err.status === 401) {
          polling = false;
          stateText.textContent = err.status === 404
            ? "This live job no longer exists."
            : "This server needs its access token: open the link you were given again.";
          stopButton.hidden = true;
          return;
        }
        failures += 1;
        stateText.textContent = "Lost contact with the server; retrying\u2026";
        setTimeout(poll, Math.min(10000, 1000 * failures));
      });
  }

  stopButton.addEventListener("click", function () {
    stopButton.disabled = true;
    stateText.textContent = "Stopping: the last seconds are being finished\u2026";
    fetch(statusUrl, { method: "DELETE", headers: { Accept: "application/json" } })
      .then(json)
      .then(function () { if (!polling) poll(); })
      .catch(function (err) { stopButton.disabled = false; errorText.textContent = "Could not stop it (" + err.message + ")."; errorText.hidden = false; });
  });

  removeButton.addEventListener("click", function () {
    removeButton.disabled = true;
    fetch(statusUrl, { method: "DELETE", headers: { Accept: "application/json" } })
      .then(json)
      .then(function () { window.location.assign(box.dataset.startUrl); })
      .catch(function (err) { removeButton.disabled = false; errorText.textContent = "Could not remove it (" + err.message + ")."; errorText.hidden = false; });
  });

  poll();
})();
