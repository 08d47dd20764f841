// Inline editing without a page load (issue 12, item 3). Without this script the forms post
// and the server answers with the page again; with it, the form posts in the background
// (Accept: application/json) and the value, or the server's error, is swapped in place.
(function () {
  "use strict";

  function setVersion(entryId, version) {
    document.querySelectorAll("form[data-entry]").forEach(function (form) {
      if (form.getAttribute("data-entry") !== entryId) return;
      var input = form.querySelector('input[name="version"]');
      if (input) input.value = String(version);
    });
  }

  function showError(form, message) {
    var error = form.querySelector(".entry-error");
    var input = form.querySelector('[name="value"]');
    if (error) error.textContent = message || "";
    var target = form.querySelector("fieldset") || input;
    if (!target) return;
    if (message) {
      target.setAttribute("aria-invalid", "true");
      if (error && error.id) target.setAttribute("aria-describedby", error.id);
    } else {
      target.removeAttribute("aria-invalid");
      target.removeAttribute("aria-describedby");
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("entry-value-form")) return;
    event.preventDefault();
    var button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("application/json") === -1) return { status: response.status, data: null };
        return response.json().then(function (data) {
          return { status: response.status, data: data };
        });
      })
      .then(function (result) {
        var cell = form.closest(".entry-value");
        if (result.data && result.data.ok) {
          var shown = cell && cell.querySelector(".entry-value-shown");
          // The server renders the value with the same renderers as the page (safe HTML).
          if (shown) shown.innerHTML = result.data.html || '<span class="entry-none">—</span>';
          setVersion(form.getAttribute("data-entry"), result.data.version);
          showError(form, "");
          if (cell) cell.classList.remove("has-error");
          var details = form.closest("details");
          if (details) {
            details.open = false;
            var summary = details.querySelector("summary");
            if (summary) summary.focus();
          }
        } else {
          if (cell) cell.classList.add("has-error");
          showError(form, (result.data && result.data.error) || "The value was not saved (HTTP " + result.status + ").");
        }
      })
      .catch(function () {
        showError(form, "The value was not saved: the server could not be reached.");
      })
      .finally(function () {
        if (button) button.disabled = false;
      });
  });
})();
