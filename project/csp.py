"""The example site's Content-Security-Policy header (Django 5.2 has no built-in CSP).

Every page of the site passes this policy: scripts are ES modules loaded from the site
(the ``{% tasklight_client %}`` config is ``<script type="application/json">``, which is
data and never executed), styles are stylesheets (the client sets ``element.style``
from script, which CSP allows), and the socket is same-origin (CSP Level 3 lets
``'self'`` match ``ws:``/``wss:`` on the page's host and port). On Django 6.0 the same
policy can be given to ``SECURE_CSP`` and ``django.middleware.csp.ContentSecurityPolicyMiddleware``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin


def header_value(policy: dict[str, list[str]]) -> str:
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in policy.items())


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Add ``Content-Security-Policy`` (settings.CONTENT_SECURITY_POLICY, directive to
    sources) to every response that has none yet (a view may set its own). Sync and
    async, like Django's own middleware."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self.value = header_value(settings.CONTENT_SECURITY_POLICY)

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.value
        return response
