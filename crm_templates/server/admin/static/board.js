// Pipeline boards (issue 12, item 4): drag a card to another column, or use its "Move to"
// form, and the card moves without a reload. Without this script the form posts and the page
// reloads. The move is POST /admin/entries/<id>/stage with Accept: application/json and the
// CSRF token; on failure the card goes back and the error is shown. Moves are announced in
// the #board-status live region. No dependencies, no inline code (the CSP forbids it).
(function () {
  "use strict";

  var board = document.querySelector("[data-board]");
  var status = document.getElementById("board-status");
  if (!board || !status || !window.fetch) {
    return;
  }
  var dragged = null;

  function say(message, isError) {
    status.textContent = message;
    status.classList.toggle("board-status--error", Boolean(isError));
  }

  function columnOf(node) {
    return node.closest("[data-stage]");
  }

  function cardsOf(column) {
    return column.querySelector("[data-cards]");
  }

  function syncEmpty(column) {
    var empty = column.querySelector(".board-empty");
    if (empty) {
      empty.hidden = cardsOf(column).children.length > 0;
    }
  }

  // Column heads, counts and "N more" links come from the server again after a move, so the
  // totals are the store's, formatted as the server formats them.
  function refreshFigures() {
    return fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-refresh][id]").forEach(function (old) {
          var replacement = fresh.getElementById(old.id);
          if (replacement) {
            old.replaceWith(document.importNode(replacement, true));
          }
        });
      })
      .catch(function () {
        /* the figures stay as they were; the move itself succeeded */
      });
  }

  function move(card, target) {
    var from = columnOf(card);
    if (!target || target === from) {
      return;
    }
    var form = card.querySelector("form.board-move");
    var select = form.querySelector("select[name=stage]");
    var hadFocus = form.contains(document.activeElement);
    var title = card.getAttribute("data-title");
    var fromName = from.getAttribute("data-stage-name");
    var toName = target.getAttribute("data-stage-name");
    var nextSibling = card.nextElementSibling;
    var body = new URLSearchParams(new FormData(form));
    body.set("stage", target.getAttribute("data-stage"));

    cardsOf(target).prepend(card); // the newest update goes first, as the server orders them
    syncEmpty(from);
    syncEmpty(target);
    if (hadFocus) {
      select.focus();
    }
    card.setAttribute("aria-busy", "true");
    say("Moving “" + title + "” to " + toName + "…");

    fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "X-CSRFToken": form.querySelector("[name=csrf_token]").value,
      },
    })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return null;
          })
          .then(function (data) {
            if (!response.ok || !data || !data.ok) {
              throw new Error((data && data.error) || "the server answered " + response.status);
            }
            return data;
          });
      })
      .then(function () {
        select.value = target.getAttribute("data-stage");
        card.removeAttribute("aria-busy");
        say("Moved “" + title + "” from " + fromName + " to " + toName + ".");
        return refreshFigures();
      })
      .catch(function (error) {
        var list = cardsOf(from);
        list.insertBefore(card, nextSibling && nextSibling.parentNode === list ? nextSibling : null);
        syncEmpty(from);
        syncEmpty(target);
        select.value = from.getAttribute("data-stage");
        card.removeAttribute("aria-busy");
        if (hadFocus) {
          select.focus();
        }
        say("Could not move “" + title + "”: " + error.message, true);
      });
  }

  board.addEventListener("submit", function (event) {
    var form = event.target.closest("form.board-move");
    if (!form) {
      return;
    }
    event.preventDefault();
    var card = form.closest(".board-card");
    var stage = form.querySelector("select[name=stage]").value;
    var target = null;
    board.querySelectorAll("[data-stage]").forEach(function (column) {
      if (column.getAttribute("data-stage") === stage) {
        target = column;
      }
    });
    if (target === columnOf(card)) {
      say("“" + card.getAttribute("data-title") + "” is already at " + target.getAttribute("data-stage-name") + ".");
      return;
    }
    move(card, target);
  });

  board.addEventListener("dragstart", function (event) {
    var card = event.target.closest && event.target.closest(".board-card");
    if (!card) {
      return;
    }
    dragged = card;
    card.classList.add("board-dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.getAttribute("data-entry"));
  });

  board.addEventListener("dragend", function () {
    if (dragged) {
      dragged.classList.remove("board-dragging");
    }
    dragged = null;
    board.querySelectorAll(".board-drop").forEach(function (column) {
      column.classList.remove("board-drop");
    });
  });

  board.addEventListener("dragover", function (event) {
    var column = dragged && columnOf(event.target);
    if (!column) {
      return;
    }
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    board.querySelectorAll(".board-drop").forEach(function (other) {
      if (other !== column) {
        other.classList.remove("board-drop");
      }
    });
    column.classList.add("board-drop");
  });

  board.addEventListener("drop", function (event) {
    var column = dragged && columnOf(event.target);
    if (!column) {
      return;
    }
    event.preventDefault();
    column.classList.remove("board-drop");
    var card = dragged;
    dragged = null;
    card.classList.remove("board-dragging");
    move(card, column);
  });
})();
