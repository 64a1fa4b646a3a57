// Forms that change a lot or cannot be undone ask first: a form with
// data-confirm="message" submits only once the reader agrees to the message, which
// should state what will happen and to how many items. The page stays usable without
// script (the server still checks everything).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form && form.dataset ? form.dataset.confirm : null;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
