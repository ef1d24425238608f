"""The resident pages (scan a socket, pay, watch, stop, receipt): see docs/resident-pages.md.

    app.include_router(web_router)

They call the public JSON API of the app they are included in, over HTTP in
the same process, so the API must be included too.
"""

from api.web.routes import router as web_router

__all__ = ["web_router"]
