// Image Builder: the little the pages need beyond htmx.
(function () {
  "use strict";

  // Every state-changing htmx request carries the CSRF token (Flask-WTF reads X-CSRFToken).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && event.detail.verb !== "get") {
      event.detail.headers["X-CSRFToken"] = meta.content;
    }
  });

  // A poller whose resource is gone (the spec or job was deleted elsewhere) stops polling.
  document.addEventListener("htmx:responseError", function (event) {
    var elt = event.detail.elt;
    var trigger = elt.getAttribute("hx-trigger") || "";
    if (event.detail.xhr.status === 404 && trigger.indexOf("every") !== -1) {
      elt.remove();
    }
  });

  // Copy-to-clipboard buttons: <button data-copy="text">.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on a non-local host has no Clipboard API.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  // What the button says afterwards, in the page's language (data attributes of <body>, base.html).
  function bodyLabel(name, fallback) {
    return document.body.getAttribute(name) || fallback;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var label = button.textContent;
    copyText(button.getAttribute("data-copy")).then(
      function () { button.textContent = bodyLabel("data-copied-label", "Copied"); button.classList.add("copied"); },
      function () { button.textContent = bodyLabel("data-copy-failed-label", "Select and copy"); }
    );
    setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1500);
  });

  // A checkbox with data-reveals="ID" shows that element while it is ticked.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[type=checkbox][data-reveals]")) return;
    var target = document.getElementById(box.getAttribute("data-reveals"));
    if (target) target.hidden = !box.checked;
  });

  // Delete buttons open the one confirmation <dialog> of the page, filled in for that item.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-delete-url]");
    var dialog = document.getElementById("delete-dialog");
    if (button && dialog) {
      dialog.querySelector("form").action = button.getAttribute("data-delete-url");
      dialog.querySelector('[data-fill="name"]').textContent = button.getAttribute("data-delete-name");
      dialog.querySelector('[data-fill="what"]').textContent = button.getAttribute("data-delete-what");
      dialog.showModal();
      return;
    }
    var close = event.target.closest("[data-close-dialog]");
    if (close) close.closest("dialog").close();
  });
})();
