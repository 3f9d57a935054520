// Sluice web UI: progressive enhancement only. Every page works without
// this file; the server checks everything again. Loaded as a file (the
// Content-Security-Policy allows no inline script).
"use strict";

// <form data-confirm="Question?">: ask before submitting a destructive action.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
