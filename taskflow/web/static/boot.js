// Runs before the first paint: apply the saved theme so the page never flashes.
(function () {
  "use strict";
  var theme = null;
  try {
    theme = window.localStorage.getItem("tf-theme");
  } catch (e) {
    theme = null;
  }
  if (theme !== "dark" && theme !== "light") {
    theme = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  document.documentElement.setAttribute("data-theme", theme);
})();
