// Shared by every page: the theme toggle (remembered in localStorage) and small formatting helpers.
(function () {
  var root = document.documentElement;
  var toggle = document.getElementById("theme-toggle");
  function label() {
    var next = root.getAttribute("data-theme") === "dark" ? "light" : "dark";
    toggle.setAttribute("aria-label", "Switch to " + next + " theme");
  }
  if (toggle) {
    label();
    toggle.addEventListener("click", function () {
      var next = root.getAttribute("data-theme") === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("spot-theme", next); } catch (e) { /* storage disabled */ }
      label();
    });
  }
})();

window.spot = {
  humanSize: function (bytes) {
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return i === 0 ? bytes + " bytes" : bytes.toFixed(1).replace(/\.0$/, "") + " " + units[i];
  },
  duration: function (seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + s + " s";
    return s + " s";
  },
  rememberJob: function (id, name) {
    try {
      var jobs = JSON.parse(localStorage.getItem("spot-jobs") || "[]").filter(function (j) { return j.id !== id; });
      jobs.unshift({ id: id, name: name, at: Date.now() });
      localStorage.setItem("spot-jobs", JSON.stringify(jobs.slice(0, 8)));
    } catch (e) { /* storage disabled */ }
  }
};
