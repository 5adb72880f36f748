"""The Cinder v3 HTTP API: app factory, microversions, errors, routers, schemas, views."""
