// The API docs: Swagger UI drawing /openapi.json (its files come from the swagger-ui-bundle package).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
