"""The API's routers: health, plans, runs, meta (skills, catalog, audit, me) and the dashboard pages."""
