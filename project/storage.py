"""Static files storage: hashed, compressed names for long caching (served by WhiteNoise)."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Also rewrites ES module imports (``from "./tasklight.js"``) to hashed names.

    Without this, the hashed dashboard.js would import the unhashed tasklight.js, which
    is served with a short cache lifetime and is not busted when it changes.
    """

    support_js_module_import_aggregation = True
