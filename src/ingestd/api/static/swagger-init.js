// Starts Swagger UI on /docs. A file of its own, not an inline script: the page's
// Content-Security-Policy allows scripts from this origin only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    showExtensions: true,
    tryItOutEnabled: false,
    // Never ask a validator on another host to check the document.
    validatorUrl: null,
  });
});
