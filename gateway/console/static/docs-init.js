// Starts the Swagger UI at /docs (served from the gateway; the CSP forbids inline script).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  oauth2RedirectUrl: `${window.location.origin}/docs/oauth2-redirect`,
  persistAuthorization: false,
});
// People sign in with the authorization code + PKCE as the console's public client.
window.ui.initOAuth({ clientId: "console", usePkceWithAuthorizationCodeGrant: true });
