# pretix settings for the Fortress lab: production settings + pretix's own test-only DebugFlagMiddleware,
# so a request with ?_debug_flag=skip-locking skips the quota locks (a per-request "defence off" switch),
# and, with FORTRESS_SKIP_LOCKING=1 in the environment, every request does (the experiments' vulnerable
# variant: pretix without its quota locks, as shops that check availability and then write do).
#
# The flag is pretix's own: `pretix.base.services.locking.lock_objects` returns without taking its Postgres
# advisory locks when `skip-locking` is in `pretix.testutils.middleware.debugflags_var`.
import os

from django.core.exceptions import MiddlewareNotUsed
from pretix.settings import *  # noqa
from pretix.testutils.middleware import debugflags_var


class FortressSkipLockingMiddleware:
    """Adds `skip-locking` to the request's debug flags when FORTRESS_SKIP_LOCKING is 1; absent otherwise."""

    def __init__(self, get_response):
        if os.environ.get("FORTRESS_SKIP_LOCKING") != "1":
            raise MiddlewareNotUsed("FORTRESS_SKIP_LOCKING is not 1")
        self.get_response = get_response

    def __call__(self, request):
        token = debugflags_var.set(debugflags_var.get() | {"skip-locking"})
        try:
            return self.get_response(request)
        finally:
            debugflags_var.reset(token)


MIDDLEWARE.insert(0, 'pretix.testutils.middleware.DebugFlagMiddleware')  # noqa: F405
# After DebugFlagMiddleware, which sets the flags afresh on every request.
MIDDLEWARE.insert(1, 'fortress_settings.FortressSkipLockingMiddleware')  # noqa: F405
