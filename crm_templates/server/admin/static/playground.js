/* The template playground's live preview (issue 12, item 7). Without this script the form's
   buttons post the whole page; with it, typing in the source (after a pause), choosing a
   customer or choosing a page posts the form to data-render-url and swaps in the preview,
   the diagnostics and the numbered source. The CSRF token travels in the form's own field. */
(function () {
  "use strict";
  var form = document.getElementById("playground-form");
  if (!form || !window.fetch || !window.FormData || !window.URLSearchParams) return;
  var endpoint = form.getAttribute("data-render-url");
  var source = document.getElementById("pg-source");
  var customer = document.getElementById("pg-customer");
  var page = document.getElementById("pg-page");
  var results = document.getElementById("pg-results");
  var lines = document.getElementById("pg-lines");
  var status = document.getElementById("pg-status");
  var DELAY = 400; // ms after the last keystroke
  var timer = null;
  var latest = 0;

  function say(text, isError) {
    status.textContent = "";
    var span = document.createElement("span");
    if (isError) span.className = "admin-error";
    span.textContent = text;
    status.appendChild(span);
  }

  function refresh(action) {
    var body = new URLSearchParams(new FormData(form));
    body.set("action", action);
    var mine = ++latest;
    form.setAttribute("aria-busy", "true");
    fetch(endpoint, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (mine !== latest) return; // a newer request is on its way
        if (!data.ok) { say(data.error || "The preview could not be refreshed.", true); return; }
        if (typeof data.source === "string") source.value = data.source;
        results.innerHTML = data.results;
        lines.innerHTML = data.lines;
        say("Preview updated.", false);
      })
      .catch(function () {
        if (mine === latest) say("The preview could not be refreshed; use the Render button.", true);
      })
      .then(function () { if (mine === latest) form.removeAttribute("aria-busy"); });
  }

  source.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () { refresh("render"); }, DELAY);
  });
  customer.addEventListener("change", function () { refresh("render"); });
  page.addEventListener("change", function () { window.clearTimeout(timer); refresh("load"); });
})();
