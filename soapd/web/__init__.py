"""``soapd web``: a read-only ASGI app with status, targets, target and frame pages.

The pages (Jinja2 templates) and their JSON endpoints (``/api/...``) read the
database through :class:`~soapd.store.readonly.ReadOnlyStore`, so the web
server can never change or block the daemon's state. Lightcurves are drawn in
the browser with Plotly's gl2d bundle vendored in ``soapd/web/vendor/``, served
by soapd (no CDN). See :func:`soapd.web.app.create_app`.
"""

from soapd.web.app import create_app

__all__ = ["create_app"]
