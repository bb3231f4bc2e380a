// Processing page: poll the job's status JSON, show progress by stage with % and ETA; go to the result when done.
(function () {
  var box = document.getElementById("processing");
  var url = box.dataset.statusUrl;
  var STAGES = ["decoding", "detecting", "rendering"];
  var failures = 0;
  spot.rememberJob(box.dataset.jobId, box.dataset.name);

  var retry = document.getElementById("retry-button");

  function render(s) {
    if (s.state === "done" && s.result_url) { window.location.replace(s.result_url); return false; }
    if (s.state === "failed" || s.state === "interrupted") {
      var interrupted = s.state === "interrupted";
      document.getElementById("progress-block").hidden = true;
      document.getElementById("error-reason").textContent = s.error || "Unknown error.";
      document.getElementById("error-title").textContent = interrupted ? "Processing was interrupted" : "This video could not be processed";
      document.getElementById("error-block").hidden = false;
      document.getElementById("job-verb").textContent = interrupted ? "Interrupted:" : "Could not analyse";
      retry.hidden = !s.can_retry;
      return false;
    }
    document.getElementById("error-block").hidden = true;
    document.getElementById("progress-block").hidden = false;
    var stateText = document.getElementById("state-text");
    if (s.state === "queued") {
      stateText.textContent = "Waiting for its turn" + (s.queue_position ? " (" + s.queue_position + " in the queue)" : "") + "\u2026" +
        (s.live_jobs ? " A live feed holds " + (s.live_jobs === 1 ? "a worker" : s.live_jobs + " workers") + " until it is stopped (the Live page)." : "");
    } else {
      stateText.textContent = s.stage ? ({ decoding: "Decoding the video\u2026", detecting: "Detecting actions\u2026", rendering: "Rendering the annotated video\u2026" }[s.stage] || s.stage) : "Starting\u2026";
    }
    var pct = Math.max(0, Math.min(100, s.percent || 0));
    document.getElementById("overall-bar").value = pct;
    document.getElementById("percent").textContent = Math.floor(pct) + "%";
    var eta = document.getElementById("eta");
    eta.textContent = s.state === "running" && s.eta_s != null ? "about " + spot.duration(s.eta_s) + " left" : "";
    var current = STAGES.indexOf(s.stage);
    STAGES.forEach(function (name, i) {
      var li = document.querySelector('.stage[data-stage="' + name + '"]');
      var st = (s.stages || {})[name] || { done: 0, total: 0 };
      var frac = st.total ? Math.min(1, st.done / st.total) : 0;
      if (current > i && st.total) frac = 1;
      li.querySelector("progress").value = Math.round(100 * frac);
      li.querySelector(".stage-pct").textContent = st.total ? Math.floor(100 * frac) + "%" : "\u2013";
      li.classList.toggle("active", i === current);
      li.classList.toggle("complete", frac >= 1 && i !== current);
    });
    return true;
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 404) throw new Error("gone");
        if (r.status === 401) throw new Error("token");
        return r.json();
      })
      .then(function (s) { failures = 0; if (render(s)) setTimeout(poll, 700); })
      .catch(function (err) {
        if (err.message === "gone" || err.message === "token") {
          render({ state: "failed", can_retry: false, error: err.message === "gone"
            ? "This job no longer exists (old jobs are removed)."
            : "This server needs its access token: open the link you were given again." });
          return;
        }
        failures += 1;
        document.getElementById("state-text").textContent = "Lost contact with the server; retrying\u2026";
        setTimeout(poll, Math.min(10000, 1000 * failures));
      });
  }
  retry.addEventListener("click", function () {
    retry.disabled = true;
    fetch(box.dataset.retryUrl, { method: "POST", headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) { if (!r.ok) throw new Error(body.error || "HTTP " + r.status); return body; });
      })
      .then(function (s) { retry.disabled = false; document.getElementById("job-verb").textContent = "Analysing"; render(s); setTimeout(poll, 700); })
      .catch(function (err) { retry.disabled = false; document.getElementById("error-reason").textContent = "Could not start it again (" + err.message + ")."; });
  });
  poll();
})();
