// The console's own script: small helpers that work without inline JavaScript
// (the Content-Security-Policy allows only scripts served from /_console/static).
"use strict";
document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var base = form.getAttribute("data-goto");
  if (!base) return;
  ev.preventDefault();
  var name = (form.querySelector("input[name=name]").value || "").trim();
  if (name) window.location.href = base + encodeURIComponent(name);
});
// an htmx request refused for a lost session or a CSRF failure shows its message
document.addEventListener("htmx:responseError", function (ev) {
  var target = ev.detail.target;
  if (target && ev.detail.xhr) target.innerHTML = ev.detail.xhr.responseText;
});
