// The live tail: server-sent events from /invocations/stream, newest row first.
"use strict";
(function () {
  var table = document.getElementById("tail");
  if (!table || typeof EventSource === "undefined") return;
  var body = table.querySelector("tbody");
  var state = document.getElementById("tail-state");
  var prefix = document.body.getAttribute("data-prefix");
  var MAX_ROWS = 500;
  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function when(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  }
  var source = new EventSource(table.getAttribute("data-stream"));
  source.addEventListener("open", function () { state.textContent = "live"; table.setAttribute("data-live", "1"); });
  source.addEventListener("error", function () { state.textContent = "reconnecting…"; });
  source.addEventListener("invocation", function (ev) {
    var r = JSON.parse(ev.data);
    var tr = document.createElement("tr");
    if (r.outcome !== "ok") tr.className = "bad";
    tr.classList.add("new");
    tr.appendChild(cell(when(r.started_ms)));
    var link = document.createElement("a");
    link.href = prefix + "/invocations/" + encodeURIComponent(r.request_id);
    link.textContent = r.request_id;
    var td = document.createElement("td");
    td.appendChild(link);
    tr.appendChild(td);
    tr.appendChild(cell(r.function));
    tr.appendChild(cell(r.trigger));
    tr.appendChild(cell(r.duration_ms < 100 ? r.duration_ms.toFixed(2) + " ms" : r.duration_ms.toFixed(0) + " ms", "num"));
    tr.appendChild(cell(r.outcome));
    tr.appendChild(cell(r.cold ? "cold" : ""));
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  });
})();
