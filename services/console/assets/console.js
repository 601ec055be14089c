// The console's one script: the overview polls its JSON endpoint and updates
// the figures and the chart in place. Every page works without it.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live) return;
  var url = live.getAttribute("data-live");
  var status = document.getElementById("updated");
  var EVERY_MS = 2000;
  function apply(data) {
    Object.keys(data.fields).forEach(function (key) {
      var el = document.querySelector('[data-field="' + key + '"]');
      if (!el) return;
      el.textContent = data.fields[key].text;
      el.classList.toggle("bad", !!data.fields[key].bad);
    });
    var chart = document.getElementById("chart");
    // Built by the server from numbers only (no text from data in it).
    if (chart && data.chart_svg) chart.innerHTML = data.chart_svg;
    if (status) status.textContent = "as of " + data.generated_at + ", refreshed every 2 s";
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(apply)
      .catch(function (e) {
        if (status) status.textContent = "update failed (" + e.message + "); retrying";
      })
      .then(function () {
        setTimeout(tick, EVERY_MS);
      });
  }
  setTimeout(tick, EVERY_MS);
})();
