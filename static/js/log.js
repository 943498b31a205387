// The build log on the job page (templates/builds/job.html). The server renders the log in
// steps (app/builds/logview.py); this adds the lines each long poll brings to their step,
// asks again after a 204 (at once, or after Retry-After), follows the end until the reader
// scrolls up, shows each step's duration, and opens a failed job at its error line and a
// shared #L120 link at its line.
(function () {
  "use strict";

  var follow = true;

  function logBox() { return document.getElementById("log"); }
  function steps(box) { return box.querySelectorAll(":scope > details.log-step"); }

  function seconds(text) {
    if (text < 60) return text.toFixed(1) + " s";
    return Math.floor(text / 60) + " min " + Math.round(text % 60) + " s";
  }

  // A step lasts until the next step begins (a build step: the next one of the worker's
  // own steps), the last one until the job ended.
  function showDurations(box) {
    var all = steps(box);
    var poller = document.getElementById("log-poller");
    var ended = poller && poller.dataset.ended ? parseFloat(poller.dataset.ended) : NaN;
    for (var i = 0; i < all.length; i++) {
      var start = parseFloat(all[i].dataset.started), end = ended;
      var sub = all[i].classList.contains("log-substep");
      for (var j = i + 1; j < all.length; j++) {
        if (sub || !all[j].classList.contains("log-substep")) { end = parseFloat(all[j].dataset.started); break; }
      }
      if (!isNaN(start) && !isNaN(end)) {
        all[i].querySelector(".step-time").textContent = seconds(Math.max(0, end - start));
      }
    }
  }

  function openAt(id, highlight) {
    var line = document.getElementById(id);
    if (!line) return;
    var step = line.closest("details");
    if (step) step.open = true;
    if (highlight) line.classList.add("log-error");
    line.scrollIntoView({ block: "center" });
    follow = false;
  }

  function openFailure() {
    var poller = document.getElementById("log-poller");
    if (poller && poller.dataset.errorLine) openAt("L" + poller.dataset.errorLine, true);
  }

  function toEnd(box) { if (follow) box.scrollTop = box.scrollHeight; }

  // New lines from a poll: those that continue the current step go into it, new steps after.
  function addLines(incoming) {
    var box = logBox();
    var all = steps(box);
    var current = all.length ? all[all.length - 1] : null;
    var into = current ? current.querySelector(".step-lines") : box;
    var began = false;
    while (incoming.firstChild) {
      var node = incoming.firstChild;
      if (node.nodeType === 1 && node.matches("details.log-step")) {
        box.appendChild(node);
        into = node.querySelector(".step-lines");
        began = true;
      } else {
        into.appendChild(node);
      }
    }
    // The step that was running closes when the next begins, unless the reader toggled it.
    if (began && current && !current.dataset.toggled) current.open = false;
    showDurations(box);
    openFailure();
    toEnd(box);
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "log-incoming") addLines(event.detail.target);
  });

  // A 204 is "nothing new yet": ask again (at once after a long poll's timeout, later when the
  // server had no waiting slot free). A failed request is tried again after a pause; a 404
  // (the job was deleted) stops.
  document.addEventListener("htmx:afterRequest", function (event) {
    var poller = event.detail.elt;
    if (!poller || poller.id !== "log-poller") return;
    var xhr = event.detail.xhr;
    var status = xhr ? xhr.status : 0;
    if (status === 200 || status === 404) return;
    var delay = 5;
    if (status === 204) {
      var header = xhr.getResponseHeader("Retry-After");
      delay = header === null ? 1 : Number(header) || 0;
    }
    setTimeout(function () {
      if (document.body.contains(poller)) htmx.trigger(poller, "log:again");
    }, delay * 1000);
  });

  document.addEventListener("click", function (event) {
    var summary = event.target.closest("#log details.log-step > summary");
    if (summary) summary.parentElement.dataset.toggled = "1";
  });

  // The log follows new output until the reader scrolls up; scrolling back down resumes.
  document.addEventListener("scroll", function (event) {
    var box = event.target;
    if (box.id !== "log") return;
    follow = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    var box = logBox();
    if (!box) return;
    showDurations(box);
    if (/^#L\d+$/.test(location.hash)) {
      openAt(location.hash.slice(1), false);
    } else {
      openFailure();
      toEnd(box);
    }
  });
})();
