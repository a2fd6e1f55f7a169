# pretix settings for the Fortress lab: production settings + pretix's own test-only DebugFlagMiddleware,
# so a request with ?_debug_flag=skip-locking skips the quota locks (a per-request "defence off" switch).
from pretix.settings import *  # noqa

MIDDLEWARE.insert(0, 'pretix.testutils.middleware.DebugFlagMiddleware')  # noqa: F405
