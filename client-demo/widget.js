/* socketsvc chat widget: the one-tag embed. A classic script, no build step, no dependencies
 * outside this service.
 *
 * Embed it with ONE tag; everything else comes from the origin that served this file:
 *
 *     <script src="https://chat.example.com/widget.js" defer></script>
 *
 * Options (all optional):
 *   data-open="true" on the tag, or ?open=1 on the page's URL: open the panel right away;
 *   ?transport=polling (or websocket) on the page's URL: force one Socket.IO transport.
 * A page script may also call window.SocketsvcWidget.open() / .close() (calls made before the
 * widget has loaded are kept and made once it has).
 *
 * This file only finds out where it was loaded from and imports the widget's native ES modules
 * from there (browsers fetch them with CORS): widget-app.js (the widget), conversation.js and
 * format.js (shared with the agent console), outbox.js and drafts.js (streamed bot replies).
 * All are requested at once, so the widget costs one round trip more than this script. The Socket.IO client is loaded only when the
 * chat starts. See docs/client-demo.md.
 */
(function () {
  "use strict";

  if (window.__socketsvcWidgetLoaded) return; // the tag was included twice
  window.__socketsvcWidgetLoaded = true;

  // document.currentScript is only set while this script runs: read it now.
  var script = document.currentScript;
  if (!script) {
    var tags = document.querySelectorAll('script[src*="widget.js"]');
    script = tags[tags.length - 1] || null;
  }
  var ORIGIN = new URL(script && script.src ? script.src : "/", window.location.href).origin;

  var calls = []; // open()/close() before the widget is there: replayed by mount()
  window.SocketsvcWidget = {
    open: function () {
      calls.push("open");
    },
    close: function () {
      calls.push("close");
    },
  };

  var MODULES = ["widget-app.js", "conversation.js", "format.js", "outbox.js", "drafts.js"];
  Promise.all(
    MODULES.map(function (name) {
      return import(ORIGIN + "/" + name);
    }),
  ).then(
    function (modules) {
      modules[0].mount({ origin: ORIGIN, script: script, calls: calls });
    },
    function (err) {
      // The service is unreachable (or refuses the modules): no widget on this page.
      console.warn("socketsvc widget could not be loaded from " + ORIGIN + ":", err);
    },
  );
})();
