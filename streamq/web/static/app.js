// streamq dashboard: optional niceties; every page and action works without this file.
(function () {
  "use strict";
  // "Select all" checkboxes tick every row's checkbox in the same form.
  document.querySelectorAll("input.select-all").forEach(function (box) {
    box.addEventListener("change", function () {
      box.form.querySelectorAll('input[type=checkbox][name=id]').forEach(function (c) {
        c.checked = box.checked;
      });
    });
  });
  // Buttons with data-confirm ask first (purges also have a confirmation page).
  document.querySelectorAll("button[data-confirm]").forEach(function (b) {
    b.addEventListener("click", function (e) {
      if (!window.confirm(b.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  // Auto-refresh, remembered per browser; never while a form field has focus.
  var box = document.getElementById("auto-refresh");
  if (!box) { return; }
  box.checked = window.localStorage.getItem("streamq.refresh") === "1";
  box.addEventListener("change", function () {
    window.localStorage.setItem("streamq.refresh", box.checked ? "1" : "0");
  });
  window.setInterval(function () {
    var busy = document.activeElement && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)
      && document.activeElement !== box;
    var ticked = document.querySelector('input[name=id]:checked');
    if (box.checked && !busy && !ticked) { window.location.reload(); }
  }, 5000);
})();
