// Runs in <head> before the page paints: apply the remembered theme (else the system's) to avoid a flash.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("spot-theme"); } catch (e) { /* storage disabled */ }
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-theme", saved === "dark" || saved === "light" ? saved : (dark ? "dark" : "light"));
})();
