// The console's only script: live regions re-fetched every second, and "select all on this
// page" for checkbox lists. Plain JS, no dependency: the pages work without it.
"use strict";
(function () {
  var PERIOD = 1000;
  function refresh(region) {
    if (document.hidden) { return schedule(region); }
    fetch(region.dataset.live, { credentials: "same-origin", headers: { "X-Console-Live": "1" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) { window.location.reload(); return null; }
        if (!response.ok) { return null; }
        if (response.headers.get("X-Console-Settled") === "1") { region.removeAttribute("data-live"); }
        return response.text();
      })
      .then(function (html) { if (html !== null) { region.innerHTML = html; } })
      .catch(function () { /* the next round tries again */ })
      .then(function () { if (region.dataset.live) { schedule(region); } });
  }
  function schedule(region) { window.setTimeout(function () { refresh(region); }, PERIOD); }
  document.querySelectorAll("[data-live]").forEach(schedule);

  document.querySelectorAll("input[data-select-all]").forEach(function (box) {
    box.hidden = false;
    box.addEventListener("change", function () {
      document.querySelectorAll("input[name='" + box.dataset.selectAll + "']").forEach(function (item) {
        item.checked = box.checked;
      });
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
})();
