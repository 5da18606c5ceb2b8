"""The web dashboard: a small Starlette app over the same store verbs and ops the CLI uses.

Needs the ``web`` extra (``pip install 'streamq[web]'``). Mount :func:`create_app` in any
ASGI application, or run ``streamq dashboard``. Templates and static files ship in the
package: nothing is fetched from the internet.
"""

from streamq.web.app import create_app

__all__ = ["create_app"]
