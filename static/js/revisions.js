// Revisions: the job page's package filter and the Jobs tab's choice of two revisions to compare.
(function () {
  "use strict";

  // <div data-package-filter="TABLE-ID"> holds a text box, a manager select and a
  // "requested only" box; rows carry data-manager and data-requested.
  function applyFilter(panel) {
    var table = document.getElementById(panel.getAttribute("data-package-filter"));
    if (!table) return;
    var text = (panel.querySelector("[data-filter-text]").value || "").trim().toLowerCase();
    var manager = panel.querySelector("[data-filter-manager]").value;
    var requestedOnly = panel.querySelector("[data-filter-requested]").checked;
    var shown = 0;
    table.querySelectorAll("tbody tr").forEach(function (row) {
      var visible = (!manager || row.getAttribute("data-manager") === manager) &&
        (!requestedOnly || row.getAttribute("data-requested") === "true") &&
        (!text || row.textContent.toLowerCase().indexOf(text) !== -1);
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    panel.querySelector("[data-filter-shown]").textContent = String(shown);
  }

  function onFilterInput(event) {
    var panel = event.target.closest && event.target.closest("[data-package-filter]");
    if (panel) applyFilter(panel);
  }
  document.addEventListener("input", onFilterInput);
  document.addEventListener("change", onFilterInput);

  // The Jobs tab: "Compare selected" works once exactly two rows are ticked. The hint's words,
  // in the page's language, are the form's data attributes (templates/specs/_jobs.html).
  function updateCompare() {
    var form = document.querySelector("[data-compare-select]");
    if (!form) return;
    var ticked = document.querySelectorAll('input[form="compare-form"][name="rev"]:checked').length;
    form.querySelector("button").disabled = ticked !== 2;
    form.querySelector("[data-compare-hint]").textContent = ticked === 2
      ? form.getAttribute("data-compare-ready")
      : form.getAttribute("data-compare-ticked").replace("{n}", String(ticked));
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches('input[form="compare-form"]')) updateCompare();
  });
  document.addEventListener("DOMContentLoaded", updateCompare);
  // A polled job row is swapped in unticked.
  document.addEventListener("htmx:afterSwap", updateCompare);
})();
