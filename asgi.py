"""ASGI entry point of the example site: HTTP through Django, WebSockets through Channels.

Wired as docs/integration.md tells any host to wire it.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.routing import websocket_application, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application(AuthMiddlewareStack(URLRouter(websocket_urlpatterns()))),
    }
)

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise pause delivery to every socket (docs/performance.md).
import gc  # noqa: E402

gc.collect()
gc.freeze()
# Each frame allocates a few short-lived containers; collect the young generation less
# often so that cycles are looked for in batches rather than every few hundred frames.
gc.set_threshold(20_000, 20, 20)
