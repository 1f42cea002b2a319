/* Starts Swagger UI on /docs (a file, so the page needs no inline script).
 * "Authorize" takes an integrator API key (blk_...), sent as a Bearer token. */
(function () {
  'use strict';
  var el = document.getElementById('swagger-ui');
  window.ui = SwaggerUIBundle({
    url: el.getAttribute('data-spec'),
    dom_id: '#swagger-ui',
    layout: 'BaseLayout',
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
  });
})();
