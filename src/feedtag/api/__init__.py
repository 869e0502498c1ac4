"""The HTTP API: cameras, events, tags, stats, media, a live event stream, metrics, health.

:func:`feedtag.api.app.create_app` builds the FastAPI app over an engine's control
interface (:class:`~feedtag.runtime.control.EngineControl`) and the store. Access is denied
by default: every route declares who may call it (:mod:`feedtag.api.access`) and the app
refuses to build when one does not. See ``docs/api.md``.
"""
