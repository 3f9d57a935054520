// The template editor: the placeholder helper and the live preview.
// Progressive enhancement: without this file the placeholders are listed
// for copying and the Preview button shows the changes at desktop width.
// Loaded as a file (the Content-Security-Policy allows no inline script).
"use strict";

(() => {
  const form = document.querySelector("form[data-preview-url]");
  if (!form) return;

  // ---------------------------------------------------------------- placeholders
  // The field the cursor was last in; the HTML body until another is used.
  let lastField = form.querySelector("[data-placeholder-target]");
  form.addEventListener("focusin", (event) => {
    if (event.target.matches("[data-placeholder-target]")) lastField = event.target;
  });

  const insert = (text) => {
    if (!lastField) return;
    const start = lastField.selectionStart ?? lastField.value.length;
    const end = lastField.selectionEnd ?? start;
    lastField.setRangeText(text, start, end, "end");
    lastField.focus();
    lastField.dispatchEvent(new Event("input", { bubbles: true }));
  };

  for (const button of document.querySelectorAll("button[data-insert]")) {
    // A press must not move the focus (and so the cursor) away first.
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", () => insert(button.dataset.insert));
  }

  // ---------------------------------------------------------------- live preview
  // The form is posted, with its CSRF token, into each sandboxed frame: the
  // rendered message is served with its own sandboxing policy, never
  // written into this page.
  const frames = Array.from(document.querySelectorAll("iframe[data-live-preview]"));
  const status = document.getElementById("preview-status");
  const previewUrl = form.dataset.previewUrl;

  const refresh = () => {
    const action = form.getAttribute("action");
    for (const frame of frames) {
      form.setAttribute("action", previewUrl);
      form.setAttribute("target", frame.name);
      HTMLFormElement.prototype.submit.call(form);
    }
    form.setAttribute("action", action);
    form.removeAttribute("target");
    if (status) status.textContent = "Showing your changes (not saved yet).";
  };

  let timer = null;
  const later = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 700);
  };
  form.addEventListener("input", later);
  // Fields of the form placed elsewhere on the page (form="…").
  for (const field of document.querySelectorAll(`[form="${form.id}"]`)) {
    field.addEventListener("input", later);
  }

  const button = document.getElementById("preview-button");
  if (button) {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      window.clearTimeout(timer);
      refresh();
    });
  }
})();
