// Progressive enhancement only: every page works without this file.
// Move keyboard focus to a page's message (an error, or what was just done), so a keyboard
// or screen-reader user hears the outcome of their last action first.
document.addEventListener("DOMContentLoaded", function () {
  var message = document.getElementById("error") || document.getElementById("done");
  if (message) {
    message.setAttribute("tabindex", "-1");
    message.focus();
  }
});
