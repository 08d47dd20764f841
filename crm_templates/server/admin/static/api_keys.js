// The copy button of the page that shows a new API key once (admin/api_key_created.html).
// Without JavaScript the button stays hidden and the read-only field can be copied by hand.
(function () {
  "use strict";
  var button = document.getElementById("copy-key");
  if (!button || !navigator.clipboard) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  var status = document.getElementById("copy-status");
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(
      function () { status.textContent = "Copied to the clipboard."; },
      function () {
        field.select();
        status.textContent = "Could not copy: the key is selected, copy it with your keyboard.";
      }
    );
  });
})();
