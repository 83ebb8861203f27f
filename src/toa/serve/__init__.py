"""`toa serve`: TOA behind an OpenAI-compatible endpoint (see `toa.serve.app`).

Any OpenAI client asks for model ``toa`` (the configured strategy) or ``toa:<strategy>`` and gets
the best answer of a search over the configured agents, with ``usage`` summed over every internal
generation; an agent's own name passes straight through to it. Every search is stored in the
serve directory like a run's prompt, so `toa export` and `toa report` turn the traffic into data.
"""

from toa.serve.app import build_app, check_bind, serve
from toa.serve.protocol import MODEL, SearchRequest, parse_search_request
from toa.serve.service import SERVE_KIND, ServeLimits, ServeService

__all__ = [
    "MODEL",
    "SERVE_KIND",
    "SearchRequest",
    "ServeLimits",
    "ServeService",
    "build_app",
    "check_bind",
    "parse_search_request",
    "serve",
]
